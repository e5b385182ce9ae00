"""Installing on a device without an index entry for edgebench: the wheelhouse command,
the extras it resolves, and the `controller` command of an agent-only install."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

from controller import wheelhouse
from tests.support import ROOT


def test_platform_tags_accept_every_manylinux_the_os_can_run():
    tags = wheelhouse.TARGETS["bookworm-aarch64"].platform_tags()
    # ai-edge-litert 2.3 ships manylinux_2_27 wheels; bookworm has glibc 2.36.
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_27_aarch64" in tags
    assert tags[-2:] == ["manylinux2014_aarch64", "linux_aarch64"]
    assert wheelhouse.TARGETS["bookworm-armv7l"].extra == "agent-32bit"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", "wheelhouse", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def test_the_wheel_is_built_from_a_clean_copy_with_the_32bit_extra(tmp_path):
    result = _run("--target", "bookworm-armv7l", "--out", str(tmp_path), "--no-deps")
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("edgebench-*-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "agent/throttle.py" in names and not any(n.startswith("tests/") for n in names)
    assert "Provides-Extra: agent-32bit" in metadata
    assert 'Requires-Dist: edgebench[tflite-runtime]; extra == "agent-32bit"' in metadata
    assert 'Requires-Dist: numpy<2,>=1.21; extra == "tflite-runtime"' in metadata
    assert f"--find-links . './{wheel.name}[agent-32bit]'" in result.stderr


def test_a_target_without_binary_wheels_names_the_missing_one(tmp_path):
    # The public index has no armv7l wheels of numpy < 2: one line saying so, exit 2.
    result = _run("--target", "bookworm-armv7l", "--out", str(tmp_path))
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("controller:")]
    assert "bookworm-armv7l" in line and "numpy" in line


def test_controller_in_an_agent_only_install_says_what_is_missing():
    # The agent extra brings neither rich nor platformdirs.
    code = ("import sys; sys.modules['rich'] = None; sys.modules['platformdirs'] = None\n"
            "from controller.cli import main; sys.exit(main(['devices']))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("controller: this is an agent-only install (rich is missing); "
                                     "the controller needs pip install 'edgebench[controller]'")
