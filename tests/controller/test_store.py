import sqlite3

import pytest

from agent.wire.records import Cell, CpuFacts, Facts, LatencyStats
from controller.records import DeviceInfo, Transfer
from controller.store import RunExists, RunNotFound, StoreError, open_store
from controller.store import sqlite as sqlite_store


def cell(model, p50):
    return Cell(device="pi4", model=model, model_sha256="a" * 64, model_size_bytes=10,
                variant="fp32", delegate="xnnpack", threads=2, status="ok",
                latency_us=LatencyStats(count=3, min=1, max=3, mean=2, std=1, p50=p50, p90=3, p99=3))


def facts():
    return Facts(hostname="pi", board="Raspberry Pi 4 Model B Rev 1.4", machine="aarch64", os="x",
                 kernel="6.1", python="3.11.2", runtime="ai-edge-litert", runtime_version="2.3.0",
                 cpu=CpuFacts(count=4), memory_mb=3792, temp_c=None)


def test_run_round_trips(db_location):
    path = db_location
    with open_store(path) as store:
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.add_device("r1", "pi4", DeviceInfo(agent_version="0.1.0", runtime="ai-edge-litert",
                                                 runtime_version="2.3.0", facts=facts()))
        store.add_cell("r1", cell("a.tflite", 1.5))
        store.add_cell("r1", cell("b.tflite", 2.5))
        store.finish_run("r1", "2026-01-01T00:01:00+00:00", Transfer(model_bytes_sent=7), ["oops"])
    with open_store(path) as store:  # a fresh connection reads what was committed
        report = store.load_run("r1")
    assert [c.model for c in report.cells] == ["a.tflite", "b.tflite"]
    assert report.cells[1].latency_us.p50 == 2.5
    assert report.devices["pi4"].facts.board.startswith("Raspberry Pi 4")
    assert report.transfer.model_bytes_sent == 7 and report.errors == ["oops"]
    assert report.tag == "nightly" and report.finished_at.endswith("00:01:00+00:00")


def test_cells_are_committed_one_by_one(db_location):
    path = db_location
    writer = open_store(path)
    writer.start_run("r1", None, "2026-01-01T00:00:00+00:00")
    writer.add_cell("r1", cell("a.tflite", 1.0))
    # The run never finishes (a killed controller); another reader sees the cell.
    with open_store(path) as reader:
        report = reader.load_run("r1")
    assert [c.model for c in report.cells] == ["a.tflite"] and report.finished_at is None
    writer.close()


def test_refs_resolve_to_ids_tags_and_latest(db_location):
    with open_store(db_location) as store:
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.start_run("r2", "nightly", "2026-01-02T00:00:00+00:00")
        store.start_run("r3", "pr-7", "2026-01-03T00:00:00+00:00")
        assert store.resolve("r1") == "r1"
        assert store.resolve("nightly") == "r2"
        assert store.resolve("latest") == "r3"
        with pytest.raises(RunNotFound, match="no run matches 'weekly'"):
            store.resolve("weekly")


def test_meta_completeness_and_last_good(db_location):
    with open_store(db_location) as store:
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


def test_an_unversioned_file_is_migrated_to_the_current_schema(tmp_path):
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
    with open_store(path) as store:
        assert store.schema_version() == sqlite_store.SCHEMA_VERSION
        assert store.load_run("r0").complete  # finished before the flag existed
        store.start_run("r1", "nightly", "2026-01-01T00:00:00+00:00")
        store.add_cell("r1", cell("a.tflite", 1.0), index=0)
        assert store.cell_indices("r1", "pi4") == {0}
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == sqlite_store.SCHEMA_VERSION


def test_a_cell_is_stored_once_and_a_run_id_only_once(db_location):
    with open_store(db_location) as store:
        store.start_run("r1", None, "2026-01-01T00:00:00+00:00")
        assert store.add_cell("r1", cell("a.tflite", 1.0), index=0)
        assert not store.add_cell("r1", cell("a.tflite", 9.0), index=0)  # a replayed result
        assert [c.latency_us.p50 for c in store.load_run("r1").cells] == [1.0]
        with pytest.raises(RunExists, match="r1 is already stored"):
            store.start_run("r1", None, "2026-01-02T00:00:00+00:00")
        assert store.count_cells() == 1


def test_a_newer_schema_is_refused_not_downgraded(db_location):
    with open_store(db_location) as store:
        current = store.schema_version()
        assert current >= 1
        # What a later release would leave behind.
        if db_location.startswith("postgresql://"):
            store._execute("UPDATE edgebench_schema SET version = ?", (current + 1,))
        else:
            store._execute(f"PRAGMA user_version = {current + 1}")
    with pytest.raises(StoreError, match=f"schema version {current + 1}, newer than"):
        open_store(db_location)


def test_urls_are_recognised_before_any_path_is_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=r"unsupported database URL scheme mysql://"):
        open_store("mysql://user@host/db")
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://someone:\*\*\*@127\.0\.0\.1:1/db"):
        open_store("postgresql://someone:secret@127.0.0.1:1/db")
    assert list(tmp_path.iterdir()) == []  # no folder called `postgresql:` or `mysql:`


def test_a_missing_file_is_not_created_when_it_must_exist(tmp_path):
    with pytest.raises(StoreError, match="no results database at"):
        open_store(tmp_path / "typo.sqlite", must_exist=True)
    assert not (tmp_path / "typo.sqlite").exists()


def test_last_good_keeps_to_the_candidates_devices(db_location):
    info = DeviceInfo(agent_version="0.1.0", runtime="ai-edge-litert", runtime_version="2.3.0", facts=facts())
    with open_store(db_location) as store:
        # Two labs share the tag: lab-a's older run, then lab-b's, then lab-a's candidate.
        for run_id, device in (("a1", "lab-a"), ("b1", "lab-b"), ("a2", "lab-a")):
            store.start_run(run_id, "nightly", "2026-01-01T00:00:00+00:00")
            store.add_device(run_id, device, info)
            store.finish_run(run_id, "2026-01-01T00:01:00+00:00", Transfer(), [])
        assert store.last_good("nightly", before="a2") == "b1"
        assert store.last_good("nightly", before="a2", devices=["lab-a"]) == "a1"
        with pytest.raises(RunNotFound, match="of lab-b without a regression"):
            store.last_good("nightly", before="b1", devices=["lab-b"])
