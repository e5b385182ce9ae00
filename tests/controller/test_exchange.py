"""Run documents out of one store and into another: JSON Lines, a shipped JSON Schema, idempotent import."""

from __future__ import annotations

import json

import jsonschema
import msgspec

from controller import exchange
from controller.records import RUN_SCHEMA_VERSION, DeviceInfo, RegressReport, Transfer
from controller.store import open_store
from tests.controller.test_regress import rounds
from tests.controller.test_store import facts
from tests.support import controller


def fill(db) -> None:
    """Two finished runs of two devices and a regression check between them."""
    with open_store(db) as store:
        for run_id, started, p50s in (("r1", "2026-01-01T00:00:00+00:00", [1000, 1001, 999]),
                                      ("r2", "2026-01-02T00:00:00+00:00", [1100, 1101, 1099])):
            store.start_run(run_id, "nightly", started, meta={"commit": run_id})
            store.add_device(run_id, "pi4", DeviceInfo(agent_version="0.1.0", runtime="ai-edge-litert",
                                                       runtime_version="2.3.0", facts=facts()))
            for index, cell in enumerate(rounds(p50s) + rounds(p50s, model="n.tflite")):
                store.add_cell(run_id, cell, index)
            store.finish_run(run_id, started, Transfer(model_bytes_sent=10), ["one line"])
        check = RegressReport(baseline="r1", candidate="r2", threshold=0.05, memory_threshold=0.1,
                              accuracy_threshold=0.01, regressed=True, counts={"REGRESSION": 2}, cells=[])
        store.record_check("r2", "r1", True, msgspec.json.encode(check).decode())


def test_the_shipped_schema_is_the_generated_one():
    # A record changed: `controller export --schema > controller/schemas/run-document.schema.json`.
    assert exchange.shipped_schema() == exchange.json_schema_text(), "the shipped JSON Schema is stale"
    printed = controller("export", "--schema")
    assert printed.returncode == 0 and json.loads(printed.stdout) == exchange.json_schema()


def test_runs_travel_between_back_ends_and_import_twice_adds_nothing(tmp_path, db_location):
    source = tmp_path / "source.sqlite"
    fill(source)
    exported = controller("export", "--tag", "nightly", db=source)
    assert exported.returncode == 0, exported.stderr
    lines = exported.stdout.splitlines()
    assert len(lines) == 2
    schema = json.loads(exchange.shipped_schema())
    for line in lines:
        document = json.loads(line)
        jsonschema.validate(document, schema)
        assert document["schema_version"] == RUN_SCHEMA_VERSION
    dump = tmp_path / "runs.jsonl"
    dump.write_text(exported.stdout)
    first = controller("import", str(dump), db=db_location)
    assert first.returncode == 0, first.stderr
    assert "imported 2 run(s) with 12 cell(s) and 1 regression check(s); 0 run(s) already present" in first.stderr
    second = controller("import", str(dump), db=db_location)
    assert "imported 0 run(s) with 0 cell(s) and 0 regression check(s); 2 run(s) already present" in second.stderr
    with open_store(source) as a, open_store(db_location) as b:
        assert b.count_cells() == a.count_cells() == 12
        for run_id in ("r1", "r2"):
            assert b.load_run(run_id) == a.load_run(run_id)
        assert b.regress_reports(["r2"]) == a.regress_reports(["r2"])
        assert b.last_good("nightly", before="r2") == "r1"
    # And back again: the copy exports the same lines.
    assert controller("export", "--all", db=db_location).stdout == exported.stdout


def test_bad_lines_are_named_and_the_rest_is_imported(tmp_path):
    source = tmp_path / "source.sqlite"
    fill(source)
    good = controller("export", "--run", "r1", db=source).stdout
    newer = json.loads(good)
    newer.update(run_id="future", schema_version=RUN_SCHEMA_VERSION + 1)
    dump = tmp_path / "mixed.jsonl"
    dump.write_text("{not json\n" + '{"run_id": "x"}\n' + json.dumps(newer) + "\n" + good)
    target = tmp_path / "target.sqlite"
    result = controller("import", str(dump), db=target)
    assert result.returncode == 2
    assert f"{dump}:1: not JSON" in result.stderr
    assert f"{dump}:2: not a run document" in result.stderr
    assert f'{dump}:3: run "future" has schema_version {RUN_SCHEMA_VERSION + 1}, newer' in result.stderr
    assert "imported 1 run(s) with 6 cell(s)" in result.stderr
    with open_store(target) as store:
        assert store.all_run_ids() == ["r1"]
