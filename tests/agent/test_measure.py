import pytest

from agent import runtime as runtimes
from agent.facts import SysRoot
from agent.isolation import CellRunner
from agent.jobs import cell_template
from agent.measure import measure, timed_loop
from agent.wire.protocol import CellSpec
from agent.wire.records import Settings

QUICK = Settings(warmup_runs=2, warmup_min_secs=0, num_runs=7, min_secs=0)


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1


def test_timed_loop_runs_at_least_n_invokes():
    invoke = Counter()
    samples = timed_loop(invoke, min_runs=7, min_secs=0, max_secs=60)
    assert len(samples) == invoke.calls == 7
    assert all(s >= 0 for s in samples)


def test_timed_loop_is_cut_at_max_secs_before_n_invokes():
    invoke = Counter()
    samples = timed_loop(invoke, min_runs=10**9, min_secs=0, max_secs=0)
    assert len(samples) == invoke.calls == 1


def test_timed_loop_runs_at_least_min_secs():
    invoke = Counter()
    samples = timed_loop(invoke, min_runs=1, min_secs=0.05, max_secs=60)
    assert sum(samples) <= 0.05e9 * 2 and len(samples) > 1


def spec_for(path, delegate="xnnpack", settings=QUICK, threads=1):
    return CellSpec(model_sha256="0" * 64, model_name=path.name, delegate=delegate,
                    threads=threads, settings=settings)


@pytest.mark.parametrize("delegate", ["cpu", "xnnpack"])
def test_measure_fills_every_phase(family, delegate):
    path = family["int8"]
    spec = spec_for(path, delegate)
    snapshots = []
    cell, evaluation = measure(str(path), spec, runtimes.require(),
                               cell_template(spec, path.stat().st_size), SysRoot("/"), snapshots.append)
    assert evaluation is None  # not asked for
    assert cell.status == "ok" and cell.error is None
    assert cell.delegate == delegate and cell.runtime == "ai-edge-litert"
    assert cell.warmup.count == 2 and cell.latency_us.count == 7
    assert 0 < cell.load_ms <= cell.init_ms
    assert cell.memory_mb.peak_rss >= cell.memory_mb.overall >= 0
    assert cell.settings == QUICK
    # Progress snapshots after init, first inference and warmup.
    assert [s.init_ms is not None for s in snapshots] == [True, True, True]
    assert snapshots[0].first_inference_us is None and snapshots[1].first_inference_us
    assert snapshots[2].warmup.count == 2


def test_runtime_failure_is_a_failed_cell_not_an_exception(tmp_path):
    path = tmp_path / "fake.tflite"
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64)
    spec = spec_for(path)
    cell, _ = measure(str(path), spec, runtimes.require(), cell_template(spec, 72), SysRoot("/"),
                      lambda s: None)
    assert cell.status == "failed"
    assert cell.error.startswith("loading the model failed") and "\n" not in cell.error


def test_child_process_timeout_fails_the_cell_and_keeps_init(family):
    path = family["fp32"]
    slow = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=1, min_secs=120, max_secs=120)
    spec = spec_for(path, settings=slow)
    runner = CellRunner(runtimes.require())
    pids = []
    cell, evaluation = runner.run(str(path), spec, cell_template(spec, 1), on_start=pids.append,
                                  timeout_s=3)
    assert evaluation is None
    assert cell.status == "failed" and cell.error == "cell timed out after 3 s"
    assert cell.init_ms is not None and cell.warmup is not None  # snapshots were kept
    assert len(pids) == 1

