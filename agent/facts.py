"""Device facts and device state, read from /proc and /sys below a configurable root.

Every read goes through `SysRoot`, so a tree captured from a real device can stand in
for `/` in tests (`agent info --root DIR`).
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import socket
import struct
import sysconfig
from typing import Optional

import msgspec

from agent import runtime as runtimes
from agent import throttle
from agent.sysroot import SysRoot
from agent.wire.records import CpuFacts, CpuPolicy, DeviceState, Facts

# ARM "CPU part" numbers of the cores edge devices ship with.
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710", "0xd48": "Cortex-X2", "0xd4d": "Cortex-A715", "0xd4e": "Cortex-X3",
    "0xc07": "Cortex-A7", "0xc0f": "Cortex-A15", "0xb76": "ARM1176",
}


# Device nodes a Pi's agent uses: the firmware mailbox (vcgencmd) and the USB bus (phones).
DEVICE_NODES = ("/dev/vcio", "/dev/bus/usb")


def device_access(sys_root: SysRoot) -> dict[str, str]:
    """What this process may do with each of DEVICE_NODES: `rw`, `r`, `no access` or
    `missing`; for the USB bus, how many device nodes it holds and how many are `rw`."""
    found = {}
    for node in DEVICE_NODES:
        path = sys_root.path(node)
        if os.path.isdir(path):
            devices = glob.glob(os.path.join(path, "*", "*"))
            usable = sum(os.access(d, os.R_OK | os.W_OK) for d in devices)
            found[node] = f"{len(devices)} devices, {usable} rw"
        elif not os.path.exists(path):
            found[node] = "missing"
        else:
            found[node] = ("rw" if os.access(path, os.R_OK | os.W_OK) else
                           "r" if os.access(path, os.R_OK) else "no access")
    return found


def read_facts(root: str = "/") -> Facts:
    """What this device is, as far as a benchmark result needs to say."""
    sys_root = SysRoot(root)
    runtime = runtimes.detect()
    temp_c = read_temp_c(sys_root)
    throttled = throttle.read_throttled(sys_root)
    return Facts(
        hostname=_hostname(sys_root),
        board=_board(sys_root),
        machine=_machine(sys_root),
        os=_os_name(sys_root),
        kernel=sys_root.read("/proc/sys/kernel/osrelease") or platform.release(),
        python=platform.python_version(),
        python_arch=python_arch(),
        runtime=runtime.name if runtime else None,
        runtime_version=runtime.version if runtime else None,
        cpu=_cpu(sys_root),
        memory_mb=_memory_mb(sys_root),
        temp_c=temp_c if temp_c is not None else throttle.read_soc_temp_c(),
        throttled=throttled.value,
        throttle_problem=throttled.problem,
        devices=device_access(sys_root),
    )


def read_state(sys_root: SysRoot) -> DeviceState:
    """Temperature, CPU clock, governor, throttle flags, load and CPU counters now (the start of a cell)."""
    flags = throttle.read_throttled(sys_root)
    first = next(iter(cpufreq_dirs(sys_root)), None)
    times, cpus = read_cpu_times(sys_root)
    return DeviceState(temp_c_start=read_temp_c(sys_root), cpu_freq_mhz_start=_cur_freq_mhz(sys_root),
                       governor=sys_root.read(first + "/scaling_governor") if first else None,
                       throttled_raw_start=flags.value.raw if flags.value else None,
                       throttle_source=flags.value.source if flags.value else None,
                       throttle_problem=flags.problem, devices=device_access(sys_root),
                       load_avg_start=read_load_avg(sys_root), cpu_times_start=times, cpu_count=cpus)


def finish_state(sys_root: SysRoot, start: DeviceState) -> DeviceState:
    """`start` completed with the state at the end of a cell: throttling, load, busy and stolen CPU time."""
    end = throttle.read_throttled(sys_root)
    begin = throttle.decode_throttled(int(start.throttled_raw_start, 16)) if start.throttled_raw_start else None
    throttled, flags = throttle.throttled_during(begin, end.value)
    busy = steal = None
    times, _ = read_cpu_times(sys_root)
    if times is not None and start.cpu_times_start is not None:
        busy, steal = cpu_shares(start.cpu_times_start, times)
    return msgspec.structs.replace(
        start, temp_c_end=read_temp_c(sys_root), cpu_freq_mhz_end=_cur_freq_mhz(sys_root),
        throttled=True if start.throttled else throttled, throttle_flags=flags,
        throttled_raw_end=end.value.raw if end.value else None,
        throttle_source=start.throttle_source or (end.value.source if end.value else None),
        throttle_problem=start.throttle_problem if throttled is None else None,
        load_avg_end=read_load_avg(sys_root), cpu_busy_share=busy, cpu_steal_share=steal, cpu_times_start=None)


def state_warning(sys_root: SysRoot, state: Optional[DeviceState]) -> Optional[str]:
    """A cell's warning when a device that has a throttle word (a Raspberry Pi) could not
    be read: its cells then say "unknown", and say why, instead of "not throttled"."""
    if state is None or state.throttle_source is not None or not has_firmware_throttle(sys_root):
        return None
    return f"throttle state unreadable ({state.throttle_problem}): throttling during this cell is unknown"


def has_firmware_throttle(sys_root: SysRoot) -> bool:
    """Whether this device's firmware keeps a throttle word (the Raspberry Pi's does)."""
    return ("raspberry pi" in (_board(sys_root) or "").lower() or throttle.sysfs_node(sys_root) is not None
            or shutil.which("vcgencmd") is not None)


def read_sched_ns() -> Optional[tuple[int, int]]:
    """(ns on a CPU, ns runnable but waiting for one), summed over this process's threads
    (/proc/self/task/*/schedstat); None where the kernel does not keep schedstats, or keeps
    no run time (a running process with 0 ns on a CPU: its wait alone would read as 100 %)."""
    run = wait = 0
    for path in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(path) as f:
                fields = f.read().split()
            run, wait = run + int(fields[0]), wait + int(fields[1])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended meanwhile
    return (run, wait) if run > 0 else None


def wait_share(start: Optional[tuple[int, int]], end: Optional[tuple[int, int]]) -> Optional[float]:
    """Share of the time the threads wanted a CPU that they spent waiting for one."""
    if start is None or end is None:
        return None
    run, wait = end[0] - start[0], end[1] - start[1]
    return round(wait / (run + wait), 4) if run + wait > 0 else None


def read_load_avg(sys_root: SysRoot) -> Optional[float]:
    """The 1-minute load average, or None when /proc/loadavg cannot be read."""
    text = sys_root.read("/proc/loadavg")
    try:
        return float(text.split()[0]) if text else None
    except ValueError:
        return None


def read_cpu_times(sys_root: SysRoot) -> tuple[Optional[list[int]], Optional[int]]:
    """The aggregate `cpu` counters of /proc/stat (user nice system idle iowait irq softirq steal)
    and the number of CPUs listed; (None, None) when unreadable."""
    text = sys_root.read("/proc/stat")
    if not text:
        return None, None
    lines = text.splitlines()
    fields = lines[0].split()
    if fields[0] != "cpu" or len(fields) < 9:
        return None, None
    try:
        times = [int(v) for v in fields[1:9]]
    except ValueError:
        return None, None
    return times, sum(1 for line in lines[1:] if line.startswith("cpu"))


def cpu_shares(start: list[int], end: list[int]) -> tuple[Optional[float], Optional[float]]:
    """(busy share, steal share) of all CPU time between two /proc/stat readings.

    Busy is everything but idle and iowait; steal is time the hypervisor gave to other
    guests. None when no time passed (a cell shorter than one clock tick).
    """
    delta = [b - a for a, b in zip(start, end)]
    total = sum(delta)
    if total <= 0:
        return None, None
    idle = delta[3] + delta[4]
    return round((total - idle) / total, 4), round(delta[7] / total, 4)


def read_temp_c(sys_root: SysRoot) -> Optional[float]:
    """The CPU's temperature from the thermal zones (the hottest CPU/SoC zone, else any)."""
    readings = []
    for zone in sys_root.glob("/sys/class/thermal/thermal_zone*"):
        millideg = sys_root.read_int(zone + "/temp")
        if millideg is None:
            continue
        kind = (sys_root.read(zone + "/type") or "").lower()
        readings.append((any(k in kind for k in ("cpu", "soc", "x86_pkg")), millideg / 1000.0))
    if not readings:
        return None
    preferred = [t for is_cpu, t in readings if is_cpu]
    return max(preferred or [t for _, t in readings])


def _machine(sys_root: SysRoot) -> str:
    """The kernel's machine name (as this process sees it: an emulator reports the guest's);
    for a captured tree, its `arch`, else what its cores say."""
    if sys_root.root == "/":
        return platform.machine()
    arch = sys_root.read("/proc/sys/kernel/arch")
    if arch:
        return arch
    blocks = _cpuinfo(sys_root)
    flags = " " + " ".join(b.get("flags", "") for b in blocks) + " "
    arm = {b.get("CPU architecture") for b in blocks} - {None}
    if "8" in arm:  # a 32-bit kernel on an ARMv8 core says 7
        return "aarch64"
    if "7" in arm:
        return "armv7l"
    if " lm " in flags:
        return "x86_64"
    return "unknown"


def python_arch() -> str:
    """What this interpreter was built for (`aarch64-linux-gnu`, `arm-linux-gnueabihf`) and
    its pointer size: a 32-bit Pi OS on a 64-bit kernel has machine `aarch64` but a 32-bit
    interpreter, which only this tells."""
    triple = sysconfig.get_config_var("MULTIARCH") or sysconfig.get_config_var("HOST_GNU_TYPE") or platform.machine()
    return f"{triple} {struct.calcsize('P') * 8}-bit"


def _hostname(sys_root: SysRoot) -> str:
    if sys_root.root == "/":
        return socket.gethostname()
    return sys_root.read("/etc/hostname") or "unknown"


def _board(sys_root: SysRoot) -> Optional[str]:
    return (sys_root.read("/proc/device-tree/model")
            or sys_root.read("/sys/firmware/devicetree/base/model"))


def _os_name(sys_root: SysRoot) -> str:
    for line in (sys_root.read("/etc/os-release") or "").splitlines():
        key, _, value = line.partition("=")
        if key == "PRETTY_NAME":
            return value.strip().strip('"')
    return platform.system()


def _cpuinfo(sys_root: SysRoot) -> list[dict]:
    blocks, current = [], {}
    for line in (sys_root.read("/proc/cpuinfo") or "").splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def _core_model(block: dict) -> Optional[str]:
    return block.get("model name") or ARM_PARTS.get(block.get("CPU part", "").lower())


def _cpu(sys_root: SysRoot) -> CpuFacts:
    processors = [b for b in _cpuinfo(sys_root) if "processor" in b]
    count = len(processors) or (os.cpu_count() if sys_root.root == "/" else 0) or 0
    models = {int(b["processor"]): _core_model(b) for b in processors if b["processor"].isdigit()}
    model = next((m for m in models.values() if m), None)
    policies = [_policy(sys_root, path, models) for path in cpufreq_dirs(sys_root)]
    max_mhz = [p.max_freq_mhz for p in policies if p.max_freq_mhz]
    governors = list(dict.fromkeys(p.governor for p in policies if p.governor))
    return CpuFacts(
        count=count,
        model=model,
        max_freq_mhz=max(max_mhz) if max_mhz else None,
        # Clusters may run different governors: then all of them, in policy order.
        governor=",".join(governors) or None,
        policies=policies,
    )


def cpufreq_dirs(sys_root: SysRoot) -> list[str]:
    """One cpufreq directory per policy (a cluster of cores sharing a clock).

    `cpu/cpufreq/policyN` where the kernel has it; else `cpu/cpuN/cpufreq` (older and
    vendor kernels, and copies of /sys made by following links), one per group of
    `related_cpus`.
    """
    base = "/sys/devices/system/cpu"
    policies = sys_root.glob(base + "/cpufreq/policy[0-9]*")
    if policies:
        return sorted(policies, key=_trailing_number)
    dirs, covered = [], set()
    for path in sorted(sys_root.glob(base + "/cpu[0-9]*/cpufreq"), key=lambda p: _trailing_number(p[:-8])):
        cpu = _trailing_number(path[:-8])
        if cpu in covered:
            continue
        dirs.append(path)
        covered.update(_policy_cpus(sys_root, path) or [cpu])
    return dirs


def _trailing_number(path: str) -> int:
    digits = re.search(r"(\d+)$", path)
    return int(digits.group(1)) if digits else -1


def _policy_cpus(sys_root: SysRoot, path: str) -> list[int]:
    text = sys_root.read(path + "/related_cpus") or sys_root.read(path + "/affected_cpus") or ""
    return [int(c) for c in text.split() if c.isdigit()]


def _policy(sys_root: SysRoot, path: str, models: dict) -> CpuPolicy:
    """One cpufreq policy: its cores, their type, clock limits and governor."""
    cpus = _policy_cpus(sys_root, path)
    if not cpus and "/cpufreq/policy" not in path:
        cpus = [_trailing_number(path[:-8])]

    def mhz(name: str) -> Optional[float]:
        khz = sys_root.read_int(f"{path}/{name}")
        return khz / 1000.0 if khz else None

    return CpuPolicy(
        cpus=cpus, model=next((models.get(c) for c in cpus if models.get(c)), None),
        min_freq_mhz=mhz("cpuinfo_min_freq"), max_freq_mhz=mhz("cpuinfo_max_freq"),
        cur_freq_mhz=mhz("scaling_cur_freq"), governor=sys_root.read(path + "/scaling_governor"),
    )


def _cur_freq_mhz(sys_root: SysRoot) -> Optional[float]:
    first = next(iter(cpufreq_dirs(sys_root)), None)
    khz = sys_root.read_int(first + "/scaling_cur_freq") if first else None
    return khz / 1000.0 if khz else None


def _memory_mb(sys_root: SysRoot) -> Optional[int]:
    for line in (sys_root.read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None
