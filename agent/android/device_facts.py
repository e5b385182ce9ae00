"""A phone's facts and state, from one shell command's output (parsing is pure).

`getprop` says what the phone is (model, manufacturer, SoC, Android version, ABIs);
`/sys` and `/proc` give CPU count and frequencies, memory, thermal zones and the
battery temperature. The result has the facts shape of docs/contract.md.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Optional

from agent.facts import ARM_PARTS
from agent.formats.benchmark_log import RUNTIME
from agent.wire.records import AndroidFacts, CpuFacts, DeviceState, Facts

_CPU = "/sys/devices/system/cpu"
STATE_SCRIPT = (
    "echo @@thermal; for z in /sys/class/thermal/thermal_zone*; do "
    "echo \"$(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)\"; done; "
    f"echo @@curfreq; cat {_CPU}/cpu*/cpufreq/scaling_cur_freq 2>/dev/null; "
    "echo @@battery; cat /sys/class/power_supply/battery/temp 2>/dev/null"
)
FACTS_SCRIPT = (
    "echo @@props; getprop; echo @@kernel; uname -r; "
    f"echo @@possible; cat {_CPU}/possible 2>/dev/null; "
    f"echo @@maxfreq; cat {_CPU}/cpu*/cpufreq/cpuinfo_max_freq 2>/dev/null; "
    f"echo @@governor; cat {_CPU}/cpu0/cpufreq/scaling_governor 2>/dev/null; "
    "echo @@meminfo; cat /proc/meminfo 2>/dev/null; echo @@cpuinfo; cat /proc/cpuinfo 2>/dev/null; "
    + STATE_SCRIPT
)
_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]\s*$")
_HOT_ZONES = ("cpu", "soc", "tsens", "cluster", "big", "little", "mtktscpu")


def sections(output: str) -> dict[str, list[str]]:
    """Lines of a script's output, by the `@@name` marker before them."""
    result: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    for line in output.splitlines():
        if line.startswith("@@"):
            current = result.setdefault(line[2:].strip(), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return result


def parse_props(lines: list[str]) -> dict[str, str]:
    """`getprop` output (`[key]: [value]` lines) as a dict."""
    return {m.group(1): m.group(2) for m in map(_PROP.match, lines) if m}


def _int(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def celsius(raw: int) -> float:
    """A thermal reading in degrees C: zones report milli-, deci- or plain degrees."""
    if abs(raw) >= 1000:
        return raw / 1000.0
    if abs(raw) >= 200:
        return raw / 10.0
    return float(raw)


def cpu_temp_c(lines: list[str]) -> Optional[float]:
    """The hottest CPU/SoC zone of `type temp` lines, else the hottest non-battery zone."""
    readings = []
    for line in lines:
        kind, _, value = line.rpartition(" ")
        raw = _int(value)
        if raw is None or "batt" in kind.lower():
            continue
        readings.append((any(k in kind.lower() for k in _HOT_ZONES), celsius(raw)))
    preferred = [t for hot, t in readings if hot] or [t for _, t in readings]
    return max(preferred) if preferred else None


def count_cpus(possible: list[str]) -> Optional[int]:
    """CPUs in a `/sys/devices/system/cpu/possible` range list such as `0-3,6-7`."""
    total = 0
    for part in ",".join(possible).split(","):
        low, _, high = part.strip().partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            return None
        total += int(high or low) - int(low) + 1
    return total or None


def cpu_model(cpuinfo: list[str]) -> Optional[str]:
    """Core types from `/proc/cpuinfo`, e.g. `4x Cortex-A55 + 4x Cortex-X1`, else its Hardware line."""
    parts: Counter[str] = Counter()
    hardware = None
    for line in cpuinfo:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "CPU part":
            parts[ARM_PARTS.get(value.lower(), f"part {value}")] += 1
        elif key in ("Hardware", "model name") and hardware is None:
            hardware = value
    if parts:
        return " + ".join(f"{n}x {name}" for name, n in parts.items())
    return hardware


def parse_state(output: str) -> DeviceState:
    """Temperature and clock at one moment, from the output of `STATE_SCRIPT`."""
    found = sections(output)
    freqs = [khz for khz in map(_int, found.get("curfreq", [])) if khz]
    return DeviceState(temp_c_start=cpu_temp_c(found.get("thermal", [])),
                       cpu_freq_mhz_start=max(freqs) / 1000.0 if freqs else None,
                       throttle_problem="Android exposes no throttle word; only temperature and clock are read")


def parse_facts(output: str, fallback_name: str) -> Facts:
    """The phone's facts from the output of `FACTS_SCRIPT`."""
    found = sections(output)
    props = parse_props(found.get("props", []))
    memory_kb = next((_int(line.split()[1]) for line in found.get("meminfo", [])
                      if line.startswith("MemTotal:") and len(line.split()) > 1), None)
    max_khz = [khz for khz in map(_int, found.get("maxfreq", [])) if khz]
    battery = _int(next(iter(found.get("battery", [])), None))
    manufacturer, model = props.get("ro.product.manufacturer"), props.get("ro.product.model")
    release, sdk = props.get("ro.build.version.release"), _int(props.get("ro.build.version.sdk"))
    soc = props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware")
    return Facts(
        hostname=props.get("net.hostname") or props.get("ro.product.device") or fallback_name,
        board=" ".join(p for p in (manufacturer, model) if p) or None,
        machine=props.get("ro.product.cpu.abi") or "unknown",
        os=f"Android {release or '?'}" + (f" (API {sdk})" if sdk else ""),
        kernel=next(iter(found.get("kernel", [])), ""),
        python="",
        runtime=RUNTIME,
        runtime_version=None,
        cpu=CpuFacts(
            count=count_cpus(found.get("possible", [])) or len(max_khz),
            model=cpu_model(found.get("cpuinfo", [])),
            max_freq_mhz=max(max_khz) / 1000.0 if max_khz else None,
            governor=next(iter(found.get("governor", [])), None),
        ),
        memory_mb=memory_kb // 1024 if memory_kb else None,
        temp_c=cpu_temp_c(found.get("thermal", [])),
        android=AndroidFacts(
            manufacturer=manufacturer, model=model, soc=soc, android_version=release, sdk=sdk,
            abis=[a for a in (props.get("ro.product.cpu.abilist") or props.get("ro.product.cpu.abi", "")).split(",")
                  if a],
            serial=props.get("ro.serialno") or None,
            battery_temp_c=celsius(battery) if battery is not None else None,
        ),
    )
