"""An arm64 Debian bookworm root with Python 3.11, for running the agent under qemu-user.

Assembled from Debian's own arm64 packages (`apt-get download` + `dpkg -x`, no chroot, no
root filesystem image): the interpreter with its shared libraries, `venv` and the wheels
`ensurepip` installs. Under the root go the files of a captured Raspberry Pi 4
(`/proc/cpuinfo`, `/sys/devices/system/cpu`): qemu-user looks every path up below its
prefix first, and LiteRT's CPU detection crashes on the host's x86 files.

Needs `qemu-user-static`, the arm64 architecture in dpkg (`dpkg --add-architecture arm64
&& apt-get update`) and, for the agent's cell processes, the aarch64 binfmt_misc handler
(`register_binfmt`). `python -m tests.support.arm64_root DIR` assembles a root by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PI4_TREE = ROOT / "tests" / "fixtures" / "pi4_root"
ARCH = "arm64"
# libstdc++: pyzmq, numpy and LiteRT are C++ extensions.
PACKAGES = ("python3.11:arm64", "python3.11-venv:arm64", "libstdc++6:arm64")
# Reached by the recursion but not needed to run Python (package tools, perl, debconf).
SKIP = {"dpkg", "tar", "install-info", "perl-base", "perl", "perl-modules-5.36", "libperl5.36",
        "debconf", "cdebconf", "debconf-2.0", "python3.11-distutils", "mime-support", "python3:any"}
QEMU = "qemu-aarch64-static"
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# The Pi 4's cores, for code that asks the CPU what it can do.
QEMU_CPU = "cortex-a72"
PYTHON = "/usr/bin/python3.11"


class RootUnavailable(RuntimeError):
    """This machine cannot assemble or run an arm64 root; the message says what is missing."""


def check_host() -> None:
    """Raise RootUnavailable unless qemu-user, the arm64 package lists and binfmt are here."""
    if shutil.which(QEMU) is None:
        raise RootUnavailable(f"no {QEMU} (package qemu-user-static)")
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True,
                             text=True, check=False).stdout.split()
    if ARCH not in foreign:
        raise RootUnavailable("dpkg has no arm64 architecture (dpkg --add-architecture arm64 && apt-get update)")
    register_binfmt()


def register_binfmt() -> None:
    """Make the kernel run aarch64 programs through qemu, so that execve (the agent's cell
    processes, console scripts) stays emulated."""
    handler = BINFMT_DIR / "qemu-aarch64"
    if handler.exists():
        if handler.read_text().splitlines()[0] != "enabled":
            raise RootUnavailable(f"{handler} is disabled")
        return
    if not BINFMT_CONF.exists():
        raise RootUnavailable(f"no {BINFMT_CONF} (package qemu-user-static)")
    try:
        if not (BINFMT_DIR / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)],
                           capture_output=True, check=True)
        (BINFMT_DIR / "register").write_text(BINFMT_CONF.read_text().strip())
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RootUnavailable(f"cannot register the aarch64 binfmt_misc handler: {exc}") from None


def package_names() -> list[str]:
    """The arm64 (and architecture-independent) packages Python 3.11 with venv needs."""
    result = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", *PACKAGES],
        capture_output=True, text=True, check=True)
    names = set()
    for line in result.stdout.splitlines():
        if line.startswith(" "):
            continue
        name = line.strip("<>")
        base, _, arch = name.partition(":")
        if base in SKIP:
            continue
        if arch == ARCH and not line.startswith("<"):
            names.add(name)
        elif line.startswith("<") and arch == ARCH and _exists(base):
            names.add(base)  # an architecture-independent package (media-types, *-whl)
    return sorted(names)


def _exists(package: str) -> bool:
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", package],
                           capture_output=True, text=True, check=False)
    return shown.returncode == 0 and "Architecture: all" in shown.stdout


def assemble(root: Path, downloads: Path) -> Path:
    """Download and unpack the packages into `root`, add the Pi's CPU files; the interpreter."""
    check_host()
    downloads.mkdir(parents=True, exist_ok=True)
    os.chmod(downloads, 0o777)  # apt drops to its own user for downloads
    names = package_names()
    subprocess.run(["apt-get", "download", "-qq", *names], cwd=downloads, check=True,
                   capture_output=True, text=True)
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(downloads.glob("*.deb")):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    _pi_cpu_files(root)
    python = root / PYTHON.lstrip("/")
    if not python.exists():
        raise RootUnavailable(f"the packages gave no {PYTHON}")
    return python


def _pi_cpu_files(root: Path) -> None:
    """The captured Pi 4's CPU description, where qemu's path lookup finds it first."""
    (root / "proc").mkdir(exist_ok=True)
    shutil.copy(PI4_TREE / "proc" / "cpuinfo", root / "proc" / "cpuinfo")
    cpu = root / "sys" / "devices" / "system" / "cpu"
    shutil.rmtree(cpu, ignore_errors=True)
    shutil.copytree(PI4_TREE / "sys" / "devices" / "system" / "cpu", cpu, symlinks=True)


def environment(root: Path) -> dict[str, str]:
    """Environment for running the root's programs under qemu-user from this host."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(QEMU_LD_PREFIX=str(root), QEMU_CPU=QEMU_CPU, PYTHONNOUSERSITE="1")
    return env


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.support.arm64_root DIR", file=sys.stderr)
        return 2
    target = Path(argv[0]).resolve()
    try:
        python = assemble(target, target.parent / f"{target.name}-debs")
    except RootUnavailable as exc:
        print(f"arm64 root: {exc}", file=sys.stderr)
        return 1
    print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
