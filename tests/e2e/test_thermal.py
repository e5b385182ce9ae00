"""Thermal discipline on a real agent reading a captured Pi tree the test rewrites."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from agent.wire.protocol import CellSpec
from agent.wire.records import Settings
from controller.client import AgentClient
from controller.local_agent import LocalAgent
from controller.profiles import parse
from tests.support import ROOT

PI4 = ROOT / "tests" / "fixtures" / "pi4_root"
QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(PI4, root)
    return root


def set_temp(root, celsius: float) -> None:
    (root / "sys/class/thermal/thermal_zone0/temp").write_text(f"{int(celsius * 1000)}\n")


def governor(root) -> str:
    return (root / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor").read_text().strip()


def run_cells(tmp_path, root, model, cooldown_below_c, max_cooldown_s, on_cooling, governor=None,
              cpu_affinity=()):
    data = model.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    cell = CellSpec(model_sha256=sha, model_name=model.name, delegate="xnnpack", threads=1,
                    settings=QUICK, cooldown_below_c=cooldown_below_c, max_cooldown_s=max_cooldown_s,
                    cpu_affinity=list(cpu_affinity))
    done = []
    with LocalAgent(tmp_path / "agent", ["--root", str(root)]) as agent, AgentClient(agent.endpoint) as client:
        client.hello()
        client.push_model(str(model), sha, len(data), model.name)
        client.run_job("thermal", [cell], on_cell=lambda d: done.append(d.cell), on_cooling=on_cooling,
                       governor=governor)
    return done


def test_cell_waits_until_the_device_has_cooled(tmp_path, tree, family):
    set_temp(tree, 75.0)
    ticks = []

    def cooling(message):
        ticks.append(message)
        if len(ticks) == 2:
            set_temp(tree, 55.0)  # the fan caught up

    (cell,) = run_cells(tmp_path, tree, family["int8"], 60, 120, cooling)
    assert cell.status == "ok"
    assert [t.temp_c for t in ticks[:2]] == [75.0, 75.0] and ticks[0].target_c == 60
    assert cell.device_state.cooled is True and cell.device_state.cooldown_s > 0
    assert cell.device_state.temp_c_start == 55.0


def test_a_device_that_never_cools_is_measured_after_the_bound_and_flagged(tmp_path, tree, family):
    set_temp(tree, 85.0)
    ticks = []
    (cell,) = run_cells(tmp_path, tree, family["int8"], 60, 2, ticks.append)
    assert cell.status == "ok" and ticks
    assert cell.device_state.cooled is False and cell.device_state.cooldown_s >= 2
    assert ticks[-1].remaining_s <= 2


def test_governor_is_performance_during_the_job_and_restored_after(tmp_path, tree, family):
    set_temp(tree, 40.0)
    (cell,) = run_cells(tmp_path, tree, family["int8"], 60, 10, lambda m: None, governor="performance")
    assert cell.device_state.governor == "performance"
    assert cell.device_state.cooled is True
    assert governor(tree) == "ondemand"


def test_profile_thermal_and_delegate_settings_reach_the_cell(tmp_path):
    profile = tmp_path / "board.toml"
    profile.write_text(
        'transport = "zmq"\naddress = "tcp://127.0.0.1:5555"\ndelegates = ["xnnpack", "edgetpu"]\n'
        'cpu_affinity = [2, 3]\ngovernor = "performance"\n'
        '[delegate_options.edgetpu]\nlibrary = "libedgetpu.so.1"\ndevice = "usb"\n'
        '[thermal]\ncooldown_below_c = 55\nmax_cooldown_s = 90\n')
    def spec(delegate: str) -> CellSpec:
        return CellSpec(model_sha256="0" * 64, model_name="m.tflite", delegate=delegate, threads=1,
                        settings=Settings())

    edgetpu = parse(profile).cell_spec(spec("edgetpu"), require_full_delegation=True)
    assert (edgetpu.delegate_library, edgetpu.delegate_options, edgetpu.require_full_delegation,
            edgetpu.cpu_affinity, edgetpu.cooldown_below_c, edgetpu.max_cooldown_s) == (
        "libedgetpu.so.1", {"device": "usb"}, True, [2, 3], 55, 90)
    assert parse(profile).cell_spec(spec("xnnpack")).delegate_library is None


def test_cells_are_pinned_to_the_profile_cpus(tmp_path, tree, family):
    set_temp(tree, 40.0)
    (pinned,) = run_cells(tmp_path, tree, family["int8"], None, 0, lambda m: None, cpu_affinity=[0])
    assert pinned.status == "ok"
    (impossible,) = run_cells(tmp_path, tree, family["int8"], None, 0, lambda m: None, cpu_affinity=[4095])
    assert impossible.status == "failed" and impossible.error.startswith("pinning to CPUs failed")


def test_a_governor_the_agent_may_not_set_is_a_warning_on_each_cell(tmp_path, tree, family):
    # As under the hardened unit (ProtectKernelTunables=yes): the kernel refuses the write.
    # A read-only sysctl refuses even root.
    node = tree / "sys/devices/system/cpu/cpufreq/policy0/scaling_governor"
    node.unlink()
    node.symlink_to("/proc/sys/kernel/osrelease")
    (cell,) = run_cells(tmp_path, tree, family["int8"], None, 0, lambda m: None, governor="performance")
    assert cell.status == "ok"
    (warning,) = [w for w in cell.warnings if w.startswith("governor performance not set")]
    assert "Permission denied" in warning
    assert warning.endswith(f"ran under {cell.device_state.governor}")
