"""Device facts from a captured Raspberry Pi 4 tree and a vcgencmd stand-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT

PI4 = ROOT / "tests" / "fixtures" / "pi4_root"
STAND_IN = ROOT / "tests" / "fixtures" / "bin"


def agent_info(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{STAND_IN}{os.pathsep}{os.environ['PATH']}", **env}
    return subprocess.run([sys.executable, "-m", "agent", "info", *args], capture_output=True, text=True,
                          env=environment, timeout=120, check=False)


def test_agent_info_reads_the_captured_pi4():
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
    assert facts["throttled"] == {"raw": "0x50005", "now": ["under-voltage", "throttled"],
                                  "since_boot": ["under-voltage", "throttled"]}


def test_agent_info_prints_facts_for_people():
    result = agent_info("--root", str(PI4))
    assert result.returncode == 0, result.stderr
    assert "Raspberry Pi 4 Model B Rev 1.4" in result.stdout
    assert "cpus 0-3: Cortex-A72, 600.0-1800.0 MHz" in result.stdout
