"""Device facts as aligned text lines for a terminal (`agent info`, `controller info`)."""

from __future__ import annotations

import msgspec

from agent.wire.records import Facts


def facts_lines(facts: Facts) -> list[str]:
    """Facts as aligned `key  value` lines for a terminal."""
    lines = []
    for key, value in msgspec.to_builtins(facts).items():
        if isinstance(value, dict):
            policies = value.pop("policies", [])
            lines.append(f"{key:16} " + ", ".join(f"{k}={v}" for k, v in value.items()))
            lines += [f"{'':16} cpus {_cpu_list(p['cpus'])}: {p['model'] or '?'}, "
                      f"{p['min_freq_mhz'] or '?'}-{p['max_freq_mhz'] or '?'} MHz (now {p['cur_freq_mhz'] or '?'}), "
                      f"governor {p['governor'] or '?'}" for p in policies]
        else:
            lines.append(f"{key:16} {value}")
    return lines


def _cpu_list(cpus: list[int]) -> str:
    return f"{cpus[0]}-{cpus[-1]}" if len(cpus) > 1 and cpus == list(range(cpus[0], cpus[-1] + 1)) else \
        ",".join(map(str, cpus))
