"""A wheelhouse for a device: edgebench's wheel and binary wheels of the agent's
dependencies for the device's OS, CPU and Python, built on the host, installed offline.

Devices install edgebench without any package index entry for it: the wheel is built
from this source tree, the dependencies are fetched with `pip download --platform ...
--only-binary=:all:` for the device (so nothing is compiled there), and the device runs
`pip install --no-index --find-links DIR 'edgebench-VERSION-py3-none-any.whl[EXTRA]'`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

SOURCE = Path(__file__).resolve().parents[1]
# Left out of the copy the wheel is built from: stale build output would end up in it.
_NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                     "tests", "bench")
OLDEST_MANYLINUX = 17  # manylinux2014


@dataclass(frozen=True)
class Target:
    """A device's OS as pip sees it: Python version, CPU, glibc, and the extra it installs."""

    name: str
    python: str  # "3.11"
    machine: str  # wheel platform machine: aarch64, armv7l, x86_64
    glibc: int  # glibc 2.N of the OS
    extra: str
    description: str

    def platform_tags(self) -> list[str]:
        """Every wheel platform tag the device's pip accepts, newest first."""
        tags = [f"manylinux_2_{minor}_{self.machine}" for minor in range(self.glibc, OLDEST_MANYLINUX - 1, -1)]
        return [*tags, f"manylinux2014_{self.machine}", f"linux_{self.machine}"]


TARGETS = {t.name: t for t in (
    Target("bookworm-aarch64", "3.11", "aarch64", 36, "agent", "Raspberry Pi OS / Debian 12, 64-bit"),
    Target("trixie-aarch64", "3.13", "aarch64", 41, "agent", "Raspberry Pi OS / Debian 13, 64-bit"),
    Target("bookworm-armv7l", "3.11", "armv7l", 36, "agent-32bit",
           "Raspberry Pi OS / Debian 12, 32-bit userland (whatever the kernel)"),
    Target("bookworm-x86_64", "3.11", "x86_64", 36, "agent", "Debian 12 on a PC"),
)}


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be built; the message is one line saying why."""


@dataclass
class Wheelhouse:
    """What was built: the directory, edgebench's own wheel, and every file in it."""

    directory: Path
    wheel: Path
    files: list[str]
    extra: str
    offline: bool = True  # holds every dependency: the device needs no index

    def install_command(self, pip: str = "pip") -> str:
        """The command the device runs in the copied directory."""
        index = "--no-index " if self.offline else ""
        return f"{pip} install {index}--find-links . './{self.wheel.name}[{self.extra}]'"


def build_wheel(dest: Path, source: Path = SOURCE) -> Path:
    """edgebench's wheel (pure Python, one for every device) from a clean copy of `source`."""
    if not (source / "pyproject.toml").exists():
        raise WheelhouseError(f"no pyproject.toml in {source}: build the wheelhouse from a source checkout")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgebench-src-") as scratch:
        copy = Path(scratch) / "src"
        shutil.copytree(source, copy, ignore=_NOT_SOURCE)
        before = set(dest.glob("edgebench-*.whl"))
        _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(copy))
    built = sorted(set(dest.glob("edgebench-*.whl")) - before) or sorted(dest.glob("edgebench-*.whl"))
    if not built:
        raise WheelhouseError("pip wheel built no edgebench wheel")
    return built[-1]


def download_command(target: Target, requirement: str, dest: Path) -> list[str]:
    """`pip download` arguments for binary wheels of `requirement` and its dependencies."""
    command = ["download", "--only-binary=:all:", "--dest", str(dest),
               "--python-version", target.python, "--implementation", "cp",
               "--abi", "cp" + target.python.replace(".", "")]
    for tag in target.platform_tags():
        command += ["--platform", tag]
    return [*command, requirement]


def build(target: Target, dest: Path, source: Path = SOURCE, extra: Optional[str] = None,
          deps: bool = True) -> Wheelhouse:
    """Build edgebench's wheel into `dest` and download the binary wheels `target` needs
    (all of them or fail naming the first one missing; none with `deps=False`)."""
    wheel = build_wheel(dest, source)
    chosen = extra or target.extra
    if deps:
        _pip(*download_command(target, f"{wheel}[{chosen}]", dest))
    return Wheelhouse(directory=dest, wheel=wheel, extra=chosen, offline=deps,
                      files=sorted(p.name for p in dest.iterdir() if p.is_file()))


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--quiet"],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
        raise WheelhouseError((errors[-1] if errors else f"pip {args[0]} failed").removeprefix("ERROR: "))
