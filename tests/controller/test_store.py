import sqlite3

import pytest

from agent.wire.records import Cell, CpuFacts, Facts, LatencyStats
from controller.records import DeviceInfo, Transfer
from controller.store import ResultStore, RunNotFound


def cell(model, p50):
    return Cell(device="pi4", model=model, model_sha256="a" * 64, model_size_bytes=10,
                variant="fp32", delegate="xnnpack", threads=2, status="ok",
                latency_us=LatencyStats(count=3, min=1, max=3, mean=2, std=1, p50=p50, p90=3, p99=3))


def facts():
    return Facts(hostname="pi", board="Raspberry Pi 4 Model B Rev 1.4", machine="aarch64", os="x",
                 kernel="6.1", python="3.11.2", runtime="ai-edge-litert", runtime_version="2.3.0",
                 cpu=CpuFacts(count=4), memory_mb=3792, temp_c=None)


def test_run_round_trips_through_sqlite(tmp_path):
    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.add_device("r1", "pi4", DeviceInfo(agent_version="0.1.0", runtime="ai-edge-litert",
                                                 runtime_version="2.3.0", facts=facts()))
        store.add_cell("r1", cell("a.tflite", 1.5))
        store.add_cell("r1", cell("b.tflite", 2.5))
        store.finish_run("r1", "2026-01-01T00:01:00+00:00", Transfer(model_bytes_sent=7), ["oops"])
    with ResultStore(path) as store:  # a fresh connection reads what was committed
        report = store.load_run("r1")
    assert [c.model for c in report.cells] == ["a.tflite", "b.tflite"]
    assert report.cells[1].latency_us.p50 == 2.5
    assert report.devices["pi4"].facts.board.startswith("Raspberry Pi 4")
    assert report.transfer.model_bytes_sent == 7 and report.errors == ["oops"]
    assert report.tag == "nightly" and report.finished_at.endswith("00:01:00+00:00")


def test_cells_are_committed_one_by_one(tmp_path):
    path = tmp_path / "r.sqlite"
    writer = ResultStore(path)
    writer.start_run("r1", None, "2026-01-01T00:00:00+00:00")
    writer.add_cell("r1", cell("a.tflite", 1.0))
    # The run never finishes (a killed controller); another reader sees the cell.
    with ResultStore(path) as reader:
        report = reader.load_run("r1")
    assert [c.model for c in report.cells] == ["a.tflite"] and report.finished_at is None
    writer.close()


def test_refs_resolve_to_ids_tags_and_latest(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.start_run("r2", "nightly", "2026-01-02T00:00:00+00:00")
        store.start_run("r3", "pr-7", "2026-01-03T00:00:00+00:00")
        assert store.resolve("r1") == "r1"
        assert store.resolve("nightly") == "r2"
        assert store.resolve("latest") == "r3"
        with pytest.raises(RunNotFound, match="no run matches 'weekly'"):
            store.resolve("weekly")


def test_meta_completeness_and_last_good(tmp_path):
    with ResultStore(tmp_path / "r.sqlite") as store:
        for run_id, tag in (("n1", "nightly"), ("n2", "nightly"), ("pr", "pr-7"), ("n3", "nightly"),
                            ("n4", "nightly")):
            store.start_run(run_id, tag, "2026-01-01T00:00:00+00:00", meta={"commit": run_id})
        for run_id in ("n1", "n2", "pr", "n4"):
            store.finish_run(run_id, "2026-01-01T00:01:00+00:00", Transfer(), [])
        store.finish_run("n3", "2026-01-01T00:01:00+00:00", Transfer(), [], complete=False)
        assert store.load_run("n1").meta == {"commit": "n1"} and store.load_run("n1").complete
        assert not store.load_run("n3").complete
        # n3 is incomplete, so the newest good run before n4 is n2 (same second: insertion order).
        assert store.last_good("nightly", before="n4") == "n2"
        store.record_check("n2", "n1", regressed=True, report="{}")
        assert store.last_good("nightly", before="n4") == "n1"
        with pytest.raises(RunNotFound):
            store.last_good("nightly", before="n1")


def test_an_older_database_gains_the_new_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, tag TEXT, started_at TEXT NOT NULL, finished_at TEXT,"
        " transfer TEXT, errors TEXT);"
        "CREATE TABLE cells (id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, device TEXT NOT NULL,"
        " model TEXT NOT NULL, model_sha256 TEXT NOT NULL, variant TEXT, delegate TEXT NOT NULL,"
        " threads INTEGER NOT NULL, round INTEGER NOT NULL, status TEXT NOT NULL, p50_us REAL,"
        " cell TEXT NOT NULL);"
        "INSERT INTO runs VALUES ('r0', 'nightly', '2025-12-01T00:00:00+00:00', '2025-12-01T00:01:00+00:00',"
        " NULL, NULL);")
    old.commit()
    old.close()
    with ResultStore(path) as store:
        assert store.load_run("r0").complete  # finished before the flag existed
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.add_cell("r1", cell("a.tflite", 1.0), index=0)
        assert store.cell_indices("r1", "pi4") == {0}
