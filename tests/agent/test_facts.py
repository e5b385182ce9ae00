"""Device facts from a captured Raspberry Pi 4 tree (and layouts derived from it) and a
vcgencmd stand-in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from agent.facts import SysRoot, cpufreq_dirs, finish_state, read_facts, read_state, state_warning
from tests.support import ROOT

PI4 = ROOT / "tests" / "fixtures" / "pi4_root"
STAND_IN = ROOT / "tests" / "fixtures" / "bin"


def agent_info(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{STAND_IN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run([sys.executable, "-m", "agent", "info", *args], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)


def test_agent_info_reads_the_captured_pi4():
    # The tree's sysfs throttle node wins over vcgencmd, and the facts say so.
    result = agent_info("--root", str(PI4), "--json", VCGENCMD_THROTTLED="0x50005")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert facts["hostname"] == "pi4-lab-03" and facts["machine"] == "aarch64"
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)" and facts["kernel"] == "6.6.51+rpt-rpi-v8"
    assert facts["memory_mb"] == 3884376 // 1024
    assert facts["temp_c"] == 48.686
    cpu = facts["cpu"]
    assert (cpu["count"], cpu["model"], cpu["max_freq_mhz"], cpu["governor"]) == (4, "Cortex-A72", 1800.0, "ondemand")
    (policy,) = cpu["policies"]
    assert policy["cpus"] == [0, 1, 2, 3] and policy["min_freq_mhz"] == 600.0
    assert facts["throttled"] == {"raw": "0x50000", "now": [], "since_boot": ["under-voltage", "throttled"],
                                  "source": "sysfs:/sys/devices/platform/soc/soc:firmware/get_throttled"}


def _tree_without_throttle_node(tmp_path: Path) -> Path:
    root = tmp_path / "pi4"
    shutil.copytree(PI4, root)
    shutil.rmtree(root / "sys" / "devices" / "platform")
    return root


def test_vcgencmd_is_the_fallback_without_the_sysfs_node(tmp_path):
    result = agent_info("--root", str(_tree_without_throttle_node(tmp_path)), "--json",
                        VCGENCMD_THROTTLED="0x50005")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["throttled"] == {"raw": "0x50005", "now": ["under-voltage", "throttled"],
                                  "since_boot": ["under-voltage", "throttled"], "source": "vcgencmd"}
    assert facts["throttle_problem"] is None


def test_an_unreadable_throttle_word_is_unknown_with_a_reason_and_a_warning(tmp_path, monkeypatch):
    # A Pi whose unit hides /dev/vcio: no sysfs node in this tree, vcgencmd fails.
    root = _tree_without_throttle_node(tmp_path)
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "vcgencmd").write_text("#!/bin/sh\necho 'VCHI initialization failed' >&2\nexit 255\n")
    (broken / "vcgencmd").chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}{os.pathsep}{os.environ['PATH']}")
    facts = read_facts(str(root))
    assert facts.throttled is None
    assert "vcgencmd failed: VCHI initialization failed" in facts.throttle_problem
    state = finish_state(SysRoot(str(root)), read_state(SysRoot(str(root))))
    assert state.throttled is None and state.throttle_source is None
    warning = state_warning(SysRoot(str(root)), state)
    assert warning and "throttle state unreadable" in warning and "VCHI" in warning


def test_a_cell_on_the_pi_reads_the_sysfs_source():
    state = read_state(SysRoot(str(PI4)))
    assert state.throttle_source == "sysfs:/sys/devices/platform/soc/soc:firmware/get_throttled"
    assert state.throttled_raw_start == "0x50000" and state.governor == "ondemand"
    assert state_warning(SysRoot(str(PI4)), state) is None
    done = finish_state(SysRoot(str(PI4)), state)
    # Since-boot flags already set at the start are history: this cell was not throttled.
    assert done.throttled is False and done.throttled_raw_end == "0x50000"


def _per_cpu_layout(tmp_path: Path) -> Path:
    """The Pi 4 tree as an older kernel (or a copy of /sys that followed links) lays it out:
    `cpuN/cpufreq/` only, no `cpufreq/policyN`."""
    root = tmp_path / "percpu"
    shutil.copytree(PI4, root)  # follows the cpuN/cpufreq -> ../cpufreq/policy0 links
    cpu = root / "sys" / "devices" / "system" / "cpu"
    assert not (cpu / "cpu2" / "cpufreq").is_symlink()
    shutil.rmtree(cpu / "cpufreq")
    (root / "proc" / "sys" / "kernel" / "arch").unlink()  # kernels before 5.x have no `arch`
    return root


def test_facts_from_the_per_cpu_cpufreq_layout(tmp_path):
    root = _per_cpu_layout(tmp_path)
    facts = read_facts(str(root))
    cpu = facts.cpu
    assert (cpu.max_freq_mhz, cpu.governor) == (1800.0, "ondemand")
    (policy,) = cpu.policies  # four cpuN/cpufreq directories, one cluster
    assert policy.cpus == [0, 1, 2, 3] and policy.model == "Cortex-A72"
    assert facts.machine == "aarch64"  # from the tree's cores, not from this host
    state = read_state(SysRoot(str(root)))
    assert state.governor == "ondemand" and state.cpu_freq_mhz_start is not None


def test_big_little_policies_each_keep_their_own_figures(tmp_path):
    root = tmp_path / "biglittle"
    shutil.copytree(PI4, root)
    cpufreq = root / "sys" / "devices" / "system" / "cpu" / "cpufreq"
    big = cpufreq / "policy4"
    shutil.copytree(cpufreq / "policy0", big)
    (cpufreq / "policy0" / "related_cpus").write_text("0 1 2 3\n")
    (big / "related_cpus").write_text("4 5 6 7\n")
    (big / "cpuinfo_max_freq").write_text("2400000\n")
    (big / "scaling_governor").write_text("performance\n")
    shutil.copytree(big, cpufreq / "policy10")  # sorted by number, not by name
    (cpufreq / "policy10" / "related_cpus").write_text("10 11\n")
    assert [Path(p).name for p in cpufreq_dirs(SysRoot(str(root)))] == ["policy0", "policy4", "policy10"]
    cpu = read_facts(str(root)).cpu
    assert [p.cpus for p in cpu.policies] == [[0, 1, 2, 3], [4, 5, 6, 7], [10, 11]]
    assert [p.max_freq_mhz for p in cpu.policies] == [1800.0, 2400.0, 2400.0]
    assert cpu.max_freq_mhz == 2400.0 and cpu.governor == "ondemand,performance"



def test_agent_info_prints_facts_for_people():
    result = agent_info("--root", str(PI4))
    assert result.returncode == 0, result.stderr
    assert "Raspberry Pi 4 Model B Rev 1.4" in result.stdout
    assert "cpus 0-3: Cortex-A72, 600.0-1800.0 MHz" in result.stdout
