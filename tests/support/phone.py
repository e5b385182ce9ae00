"""The emulated phone the Android tests talk to, and the stand-in benchmark_model it runs."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.adb_emulator import AdbEmulator, DeviceSettings, make_device_tree

HERE = Path(__file__).resolve().parent

PHONE_PROPS = {
    "ro.product.name": "kona_emul", "ro.product.model": "Pixel Emul", "ro.product.device": "emul",
    "ro.product.manufacturer": "Google", "ro.board.platform": "kona", "ro.soc.model": "SM8250",
    "ro.build.version.release": "13", "ro.build.version.sdk": "33",
    "ro.product.cpu.abi": "x86_64", "ro.product.cpu.abilist": "x86_64,x86", "ro.serialno": "EMUL0001",
}


def write_stand_in(path: Path) -> Path:
    """The stand-in benchmark_model at `path`, runnable with this Python, not yet executable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    source = (HERE / "fake_benchmark_model.py").read_text().split("\n", 1)[1]
    path.write_text(f"#!{sys.executable}\n{source}")
    path.chmod(0o644)  # the runner must make it executable on the phone itself
    return path


def emulated_phone(tmp_path: Path, **settings) -> AdbEmulator:
    """An emulated phone with a device tree, not yet listening."""
    sandbox = tmp_path / "device"
    make_device_tree(sandbox)
    return AdbEmulator(sandbox, DeviceSettings(props=dict(PHONE_PROPS), **settings))
