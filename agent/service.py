"""`agent install-service`: a hardened systemd unit, its user, directories and config.

The sandbox is as tight as LiteRT, XNNPACK and libzmq allow. Settings left out on purpose:
`ProcSubset=pid` hides /proc/cpuinfo (LiteRT's CompiledModel fails), and narrower system
call sets than `@system-service @resources` break libzmq (it sets thread scheduling).
`MemoryDenyWriteExecute=yes` suits the CPU interpreter and XNNPACK; a JIT-based GPU
driver needs a drop-in that turns it off (and `PrivateDevices=no` for /dev/dri).

What a Pi's agent needs from the hardware stays reachable inside the sandbox: the
firmware mailbox `/dev/vcio` (vcgencmd; group `video`) and USB devices (phones through
ADB; group `plugdev`, given to them by a udev rule) are bound into the private /dev and
allowed by the device policy. The throttle word itself is read from sysfs, which needs
neither. The CPU governor is not writable under `ProtectKernelTunables=yes`: a job that
asks for one gets a warning on each cell, and every cell records the governor it ran
under; a root-owned tmpfiles.d line sets it at boot instead (see the README).
"""

from __future__ import annotations

import grp
import importlib.metadata
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agent.config import default_config_text
from agent.wire import keys as key_files

UNIT_NAME = "edgebench-agent.service"
UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
SYSUSERS_PATH = Path("/etc/sysusers.d/edgebench.conf")
UDEV_RULE_PATH = Path("/etc/udev/rules.d/51-edgebench-android.rules")
# The README of the installed distribution, written there by `install`.
DOC_PATH = Path("/usr/share/doc/edgebench/README.md")
DEFAULT_USER = "edgebench"
# Groups of the device nodes the agent uses: /dev/vcio (video), phones on USB (plugdev).
DEVICE_GROUPS = ("video", "plugdev")
WATCHDOG_S = 30
# The share of the RAM the service may use (the agent, its cells, their page cache), and
# how much less likely the agent is than an ordinary process to be killed when memory runs out.
MEMORY_MAX = "90%"
OOM_SCORE_ADJUST = -500
# Long enough for the running cell to finish after SIGTERM (a cell is cut at max_secs).
STOP_TIMEOUT_S = 330

_HARDENING = """\
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
PrivateUsers=yes
PrivateMounts=yes
PrivateIPC=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
KeyringMode=private
LockPersonality=yes
MemoryDenyWriteExecute=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RemoveIPC=yes
UMask=0077
# libzmq looks up interfaces over netlink when it binds.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
SystemCallArchitectures=native
# @resources: libzmq sets its threads' scheduling policy.
SystemCallFilter=@system-service @resources
SystemCallFilter=~@privileged @mount @swap @reboot @raw-io @module @obsolete @cpu-emulation @debug
SystemCallErrorNumber=EPERM
"""

_DEVICES = f"""\
# The Pi's firmware mailbox (vcgencmd) and USB devices (phones through ADB), bound into the
# private /dev where they exist and let through the closed device policy.
BindPaths=-/dev/vcio -/dev/bus/usb
DeviceAllow=/dev/vcio rw
DeviceAllow=char-usb_device rw
SupplementaryGroups={" ".join(DEVICE_GROUPS)}
"""

# Any USB device with an ADB interface (class ff, subclass 42, protocol 01), whatever its vendor.
UDEV_RULE = """\
# edgebench agent: Android phones on USB (ADB interface) for the plugdev group.
SUBSYSTEM=="usb", ENV{DEVTYPE}=="usb_device", ENV{ID_USB_INTERFACES}=="*:ff4201:*", MODE="0660", GROUP="plugdev"
"""


class InstallError(RuntimeError):
    """The service could not be installed; the message says what to fix."""


@dataclass
class ServiceOptions:
    """What the unit runs, as whom, and where its files are."""

    user: str = DEFAULT_USER
    config_path: Path = Path("/etc/edgebench/agent.toml")
    data_dir: Path = Path("/var/lib/edgebench")
    exec_start: str = ""
    watchdog_s: int = WATCHDOG_S
    sysusers_path: Path = SYSUSERS_PATH
    udev_rule_path: Path = UDEV_RULE_PATH
    doc_path: Path = DOC_PATH


def default_exec_start() -> str:
    """This installation's agent, as an absolute command line."""
    return f"{shlex.quote(sys.executable)} -m agent"


def unit_text(options: ServiceOptions) -> str:
    """The systemd unit for `options`."""
    data_dir = options.data_dir
    # StateDirectory= creates and owns a directory under /var/lib; anything else is only made writable.
    if data_dir.parent == Path("/var/lib"):
        directories = f"StateDirectory={data_dir.name}\nStateDirectoryMode=0700\n"
    else:
        directories = f"ReadWritePaths={data_dir}\n"
    config_dir = options.config_path.parent
    if config_dir.parent == Path("/etc"):
        directories += f"ConfigurationDirectory={config_dir.name}\n"
    return f"""\
[Unit]
Description=edgebench agent (benchmarks LiteRT models on this device)
Documentation=file:{options.doc_path}
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
NotifyAccess=main
ExecStart={options.exec_start} serve --config {options.config_path}
ExecReload=/bin/kill -HUP $MAINPID
User={options.user}
Group={options.user}
{directories}Restart=on-failure
RestartSec=5
WatchdogSec={options.watchdog_s}
TimeoutStopSec={STOP_TIMEOUT_S}
# SIGTERM to the agent only: it lets the running cell's own process finish.
KillMode=mixed
# Room for every transfer, connection and cell the agent allows at once, and a ceiling.
LimitNOFILE=16384
# Memory: cells are capped by the agent itself (cell_memory_limit_mb); the whole service
# stays below this, where the kernel has the memory controller. When memory runs out the
# kernel picks a cell (each raises its own score), and a killed cell does not stop the unit.
MemoryMax={MEMORY_MAX}
OOMScoreAdjust={OOM_SCORE_ADJUST}
OOMPolicy=continue
{_HARDENING}{_DEVICES}
[Install]
WantedBy=multi-user.target
"""


def install(options: ServiceOptions, unit_path: Path) -> Iterator[str]:
    """Create the user, directories, key pair and config if absent, then write the unit.

    Yields one line per thing done.
    """
    if not options.exec_start.startswith("/"):
        raise InstallError(f"ExecStart must be an absolute path, not {options.exec_start!r}")
    yield from _ensure_user(options)
    uid, gid = pwd.getpwnam(options.user).pw_uid, grp.getgrnam(options.user).gr_gid
    config_dir = options.config_path.parent
    allowed_dir = config_dir / "controllers.d"
    for directory in (config_dir, allowed_dir):
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o755)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    os.chown(options.data_dir, uid, gid)
    os.chmod(options.data_dir, 0o700)
    yield f"directories: {config_dir}, {allowed_dir}, {options.data_dir}"
    secret = config_dir / "agent.key_secret"
    if not secret.exists():
        key_files.generate(config_dir, "agent")
        yield f"agent key pair: {config_dir / 'agent.key'} (public), {secret}"
    os.chown(secret, uid, gid)  # the service's user only: the agent refuses a key others can read
    os.chmod(secret, 0o600)
    if not options.config_path.exists():
        options.config_path.write_text(default_config_text(options.data_dir, config_dir))
        yield f"configuration: {options.config_path}"
    yield from _udev_rule(options.udev_rule_path)
    readme = _readme()
    if readme:
        options.doc_path.parent.mkdir(parents=True, exist_ok=True)
        options.doc_path.write_text(readme)
        yield f"documentation: {options.doc_path}"
    unit_path.write_text(unit_text(options))
    yield f"unit: {unit_path}"
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    yield (f"next: copy controller public keys into {allowed_dir}, then "
           f"`systemctl enable --now {UNIT_NAME}`")


def sysusers_text(user: str) -> str:
    """systemd-sysusers lines for the service's user and the device groups it joins."""
    lines = ["# edgebench agent: its system user and the groups of the devices it reads"]
    lines += [f"g {group} -" for group in DEVICE_GROUPS]
    if user != "root":
        lines.append(f'u {user} - "edgebench agent" /nonexistent')
    return "\n".join(lines) + "\n"


def _ensure_user(options: ServiceOptions) -> Iterator[str]:
    """The user and the device groups, made by systemd-sysusers where missing (and at every
    boot from then on, which also covers a reset /etc)."""
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        raise InstallError("systemd-sysusers is not available (the agent's unit needs systemd)")
    options.sysusers_path.parent.mkdir(parents=True, exist_ok=True)
    options.sysusers_path.write_text(sysusers_text(options.user))
    result = subprocess.run([sysusers, str(options.sysusers_path)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemd-sysusers {options.sysusers_path} failed: {result.stderr.strip()}")
    try:
        pwd.getpwnam(options.user)
    except KeyError:
        raise InstallError(f"user {options.user} does not exist after systemd-sysusers") from None
    yield f"user {options.user}, groups {', '.join(DEVICE_GROUPS)}: {options.sysusers_path}"


def _udev_rule(path: Path) -> Iterator[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(UDEV_RULE)
    yield f"udev rule for phones on USB: {path}"
    udevadm = shutil.which("udevadm")
    if udevadm and Path("/run/udev/control").exists():
        subprocess.run([udevadm, "control", "--reload"], capture_output=True, check=False)
        subprocess.run([udevadm, "trigger", "--subsystem-match=usb", "--action=change"], capture_output=True,
                       check=False)


def _readme() -> Optional[str]:
    try:
        metadata = importlib.metadata.metadata("edgebench")
    except importlib.metadata.PackageNotFoundError:
        return None
    return metadata.get_payload() or metadata.get("Description")
