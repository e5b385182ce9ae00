"""`agent install-service`: a hardened systemd unit, its user, directories and config.

The sandbox is as tight as LiteRT, XNNPACK and libzmq allow. Settings left out on purpose:
`ProcSubset=pid` hides /proc/cpuinfo (LiteRT's CompiledModel fails), and narrower system
call sets than `@system-service @resources` break libzmq (it sets thread scheduling).
`MemoryDenyWriteExecute=yes` suits the CPU interpreter and XNNPACK; a JIT-based GPU
driver needs a drop-in that turns it off (and `PrivateDevices=no` for /dev/dri).
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.config import default_config_text
from agent.wire import keys as key_files

UNIT_NAME = "edgebench-agent.service"
UNIT_PATH = Path("/etc/systemd/system") / UNIT_NAME
DEFAULT_USER = "edgebench"
WATCHDOG_S = 30
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
Documentation=https://pypi.org/project/edgebench/
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
{_HARDENING}
[Install]
WantedBy=multi-user.target
"""


def install(options: ServiceOptions, unit_path: Path) -> Iterator[str]:
    """Create the user, directories, key pair and config if absent, then write the unit.

    Yields one line per thing done.
    """
    if not options.exec_start.startswith("/"):
        raise InstallError(f"ExecStart must be an absolute path, not {options.exec_start!r}")
    yield from _ensure_user(options.user)
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
    os.chown(secret, 0, gid)  # readable by the service's group only
    os.chmod(secret, 0o640)
    if not options.config_path.exists():
        options.config_path.write_text(default_config_text(options.data_dir, config_dir))
        yield f"configuration: {options.config_path}"
    unit_path.write_text(unit_text(options))
    yield f"unit: {unit_path}"
    if shutil.which("systemctl") and Path("/run/systemd/system").is_dir():
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    yield (f"next: copy controller public keys into {allowed_dir}, then "
           f"`systemctl enable --now {UNIT_NAME}`")


def _ensure_user(user: str) -> Iterator[str]:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise InstallError(f"user {user} does not exist and useradd is not available")
    nologin = shutil.which("nologin") or "/usr/sbin/nologin"
    result = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", nologin, user], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"useradd {user} failed: {result.stderr.strip()}")
    yield f"user: {user} (system user, no login)"
