"""The agent's unit under a real systemd, booted in systemd-nspawn over this machine's root.

The container sees /usr from the host, this Python (bound at /opt/python, outside the
home directories the unit hides) and the source tree. The agent binds an ipc:// socket in
its state directory, which is a host directory, so the test talks to it over CURVE.
The agent runs as its own user, made at boot by systemd-sysusers from install-service's
file, and the container is given what a Raspberry Pi has: the firmware's throttle node
(the captured Pi 4's, at its sysfs path) and a `/dev/vcio` node of group video.
Skipped where systemd-nspawn cannot run (not root, not installed, no container support).
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
import signal
import site
import stat
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from agent import service
from agent.wire import keys as key_files
from agent.wire.protocol import CellSpec
from agent.wire.records import Settings
from controller.client import AgentClient, load_curve_keys
from tests.support.servicekit import MODELS

ROOT = Path(__file__).resolve().parents[2]
PI4 = ROOT / "tests" / "fixtures" / "pi4_root"
THROTTLE_NODE = "/sys/devices/platform/soc/soc:firmware/get_throttled"
BOOT_TIMEOUT_S = 120.0
WATCHDOG_S = 4
AGENT_UID = 977  # the agent's user inside the container
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("systemd-nspawn") is None,
    reason="needs root and systemd-nspawn (package systemd-container)")


class Console:
    """The container's console, line by line, with a wait for a pattern."""

    def __init__(self, process: subprocess.Popen):
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, args=(process.stdout,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            with self._changed:
                self.lines.append(ANSI.sub("", raw.decode("utf-8", "replace")).rstrip())
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<console closed>")
            self._changed.notify_all()

    def wait(self, pattern: str, timeout_s: float, start: int = 0) -> tuple[int, re.Match]:
        """Index and match of the first line from `start` on that matches `pattern`."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for index in range(start, len(self.lines)):
                    found = re.search(pattern, self.lines[index])
                    if found:
                        return index, found
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.lines and self.lines[-1] == "<console closed>"):
                    raise TimeoutError(pattern)
                self._changed.wait(remaining)

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines[-80:])


def _pi_parts(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The sysusers directory, the firmware node's directory and the /dev/vcio node.

    The Pi's groups get their host numbers (Raspberry Pi OS and Debian share them), so the
    node's group means the same inside the container; /dev/vcio is a null device of group
    video, mode 0660, which only a member of video may open.
    """
    sysusers, firmware = tmp_path / "sysusers.d", tmp_path / "firmware"
    sysusers.mkdir()
    firmware.mkdir()
    (sysusers / "00-pi-groups.conf").write_text(
        "".join(f"g {group} {grp.getgrnam(group).gr_gid}\n" for group in service.DEVICE_GROUPS))
    # The service's user with a known number (the first definition wins), to own its key.
    (sysusers / "00-edgebench-uid.conf").write_text(
        f'u {service.DEFAULT_USER} {AGENT_UID} "edgebench agent" /nonexistent\n')
    (sysusers / "edgebench.conf").write_text(service.sysusers_text(service.DEFAULT_USER))
    shutil.copy(PI4 / THROTTLE_NODE.lstrip("/"), firmware / "get_throttled")
    vcio = tmp_path / "vcio"
    os.mknod(vcio, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(vcio, 0, grp.getgrnam("video").gr_gid)
    vcio.chmod(0o660)  # mknod's mode went through the umask
    return sysusers, firmware, vcio


def _tree(tmp_path: Path, config_name: str) -> tuple[Path, Path, Path]:
    """Configuration, state directory and unit directory the container gets."""
    etc, state, system = tmp_path / "etc", tmp_path / "state", tmp_path / "system"
    (etc / "controllers.d").mkdir(parents=True)
    state.mkdir()
    _, secret = key_files.generate(etc, "agent")
    # As install-service does: the service's user alone may read it (the agent refuses more).
    os.chown(secret, AGENT_UID, AGENT_UID)
    public, _ = key_files.generate(tmp_path / "controller", "controller")
    shutil.copy(public, etc / "controllers.d")
    (etc / config_name).write_text(
        'bind = "ipc:///var/lib/edgebench/agent.ipc"\ndata_dir = "/var/lib/edgebench"\n'
        'secret_key = "/etc/edgebench/agent.key_secret"\nallowed_keys_dir = "/etc/edgebench/controllers.d"\n')
    unit = system / "edgebench-agent.service"
    (system / "multi-user.target.wants").mkdir(parents=True)
    result = subprocess.run(
        [sys.executable, "-m", "agent", "install-service", "--dry-run",
         "--config", f"/etc/edgebench/{config_name}", "--watchdog-sec", str(WATCHDOG_S),
         "--exec-start", "/opt/python/bin/python3 -m agent", "--unit-out", str(unit)],
        capture_output=True, text=True, timeout=60, check=True)
    assert unit.exists(), result.stderr
    (system / "multi-user.target.wants" / unit.name).symlink_to(f"../{unit.name}")
    # No login prompt on the console: agetty hangs the console up when it starts, and the
    # agent's processes, which write their log there, then get EIO.
    (system / "console-getty.service").symlink_to("/dev/null")
    # Test-only additions: the agent's log straight on the console (not through journald, so
    # that its lines and systemd's keep their order), and where this (relocated)
    # Python finds its packages and the source tree.
    packages = Path(site.getsitepackages()[0]).relative_to(sys.prefix)
    drop_in = system / f"{unit.name}.d"
    drop_in.mkdir()
    (drop_in / "test.conf").write_text(
        "[Service]\nStandardOutput=tty\nStandardError=tty\nTTYPath=/dev/console\n"
        f"Environment=PYTHONPATH=/opt/edgebench-src:/opt/python/{packages}\n"
        # This Python's libpython, not the system's (its RUNPATH points under /root).
        "Environment=LD_LIBRARY_PATH=/opt/python/lib\n"
        # The Pi firmware's throttle node where the kernel puts it (sysfs itself cannot
        # take a new file, so the service sees it over an empty /sys/devices/platform).
        "TemporaryFileSystem=/sys/devices/platform\n"
        f"BindReadOnlyPaths=/opt/pi-firmware/get_throttled:{THROTTLE_NODE.replace(':', chr(92) + ':')}\n")
    return etc, state, system


def _agent_pid(config_name: str) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if config_name.encode() in cmdline and b" -c " not in cmdline.replace(b"\0", b" "):
                return int(entry.name)
    raise AssertionError(f"no agent process with {config_name}")


def test_agent_service_under_real_systemd(tmp_path):
    config_name = f"agent-{uuid.uuid4().hex[:8]}.toml"
    etc, state, system = _tree(tmp_path, config_name)
    sysusers, firmware, vcio = _pi_parts(tmp_path)
    nspawn_dir = Path("/run/systemd/nspawn")
    mounted = False
    nspawn_dir.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mountpoint", "-q", str(nspawn_dir)], check=False).returncode != 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(nspawn_dir)], check=False).returncode == 0
    machine = f"eb{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        ["systemd-nspawn", "-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "--private-network",
         "-M", machine, f"--bind-ro={sys.prefix}:/opt/python", f"--bind-ro={ROOT}:/opt/edgebench-src",
         f"--bind-ro={etc}:/etc/edgebench", f"--bind={state}:/var/lib/edgebench",
         f"--bind-ro={system}:/etc/systemd/system", f"--bind-ro={sysusers}:/etc/sysusers.d",
         f"--bind-ro={firmware}:/opt/pi-firmware", f"--bind={vcio}:/dev/vcio", "-b", "systemd.firstboot=no"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    console = Console(process)
    try:
        try:
            listening, _ = console.wait(r"^INFO listening on ipc://", BOOT_TIMEOUT_S)
        except TimeoutError:
            if not any("Reached target" in line for line in console.lines):
                pytest.skip(f"systemd did not boot in systemd-nspawn here:\n{console.text()}")
            raise AssertionError(f"the agent unit did not start:\n{console.text()}") from None
        # Type=notify: systemd calls the unit started only once the agent sent READY=1.
        started, _ = console.wait(r"Started .*edgebench-agent", 30)
        assert started > listening

        keys = load_curve_keys(etc / "agent.key", tmp_path / "controller" / "controller.key_secret")
        endpoint = f"ipc://{state}/agent.ipc"
        model = MODELS / "digits_cnn_int8.tflite"
        sha = hashlib.sha256(model.read_bytes()).hexdigest()
        cells = []
        with AgentClient(endpoint, curve=keys) as client:
            client.hello(timeout_s=30)
            client.push_model(str(model), sha, model.stat().st_size, model.name)
            client.run_job("nspawn", [CellSpec(
                model_sha256=sha, model_name=model.name, delegate="xnnpack", threads=1,
                settings=Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0))],
                on_cell=cells.append)
        # LiteRT works in the sandbox.
        assert [c.cell.status for c in cells] == ["ok"], f"{cells[0].cell.error}\n{console.text()}"
        # The hardened unit keeps the Pi's hardware: the throttle word from sysfs, and
        # /dev/vcio inside the private /dev, opened through the video group.
        state = cells[0].cell.device_state
        assert state.throttle_source == f"sysfs:{THROTTLE_NODE}"
        assert state.throttled_raw_start == "0x50000" and state.throttled is False
        assert state.devices["/dev/vcio"] == "rw", state.devices
        assert not [w for w in cells[0].cell.warnings if "throttle" in w]

        # Starve the watchdog: a frozen agent is killed and restarted by systemd.
        first_pid = _agent_pid(config_name)
        os.kill(first_pid, signal.SIGSTOP)
        console.wait(r"^INFO listening on ipc://", 4 * WATCHDOG_S + 30, start=started + 1)
        assert _agent_pid(config_name) != first_pid
        with AgentClient(endpoint, curve=keys) as client:
            assert client.hello(timeout_s=30).agent_version
    finally:
        process.terminate()  # the container powers off
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if mounted:
            subprocess.run(["umount", str(nspawn_dir)], check=False)
