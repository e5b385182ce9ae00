"""`controller import` holds every document to the contract's bounds; `latest` is the newest time."""

from __future__ import annotations

import json

import msgspec
import pytest

from controller import exchange
from controller.records import DeviceInfo, RegressReport, RunReport, Transfer
from controller.store import open_store
from tests.controller.test_regress import cell
from tests.controller.test_store import facts
from tests.support import controller


def document(run_id: str = "r1", started_at: str = "2026-01-02T00:00:00+00:00") -> dict:
    """A run document as `controller export` writes it: one device, two cells, one check."""
    run = RunReport(run_id=run_id, tag="nightly", started_at=started_at, finished_at=started_at,
                    devices={"pi4": DeviceInfo(agent_version="0.1.0", runtime="ai-edge-litert",
                                               runtime_version="2.3.0", facts=facts())},
                    transfer=Transfer(model_bytes_sent=10), cells=[cell(1000, 0), cell(1001, 1)])
    check = RegressReport(baseline="r0", candidate=run_id, threshold=0.05, memory_threshold=0.1,
                          accuracy_threshold=0.01, regressed=False, counts={}, cells=[])
    return msgspec.to_builtins(exchange.RunDocument(**msgspec.structs.asdict(run), checks=[check]))


def changed(path: tuple, value) -> dict:
    """`document()` with the value at `path` (keys and list indices) replaced."""
    doc = document()
    target = doc
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return doc


def rejection(doc: dict) -> str:
    """The one line `parse_line` rejects the document with (it must reject it)."""
    with pytest.raises(ValueError) as caught:
        exchange.parse_line(json.dumps(doc), 3, "runs.jsonl")
    return str(caught.value)


@pytest.mark.parametrize("path, value, field, why", [
    (("cells", 0, "threads"), -1, "cells[0].threads", "-1 is outside 1 to 1024"),
    (("cells", 1, "threads"), 0, "cells[1].threads", "0 is outside 1 to 1024"),
    (("cells", 0, "round"), -1, "cells[0].round", "-1 is outside 0 to"),
    (("cells", 0, "latency_us", "count"), 2**70, "cells[0].latency_us.count", f"{2**70} is outside 0 to"),
    (("cells", 0, "model_size_bytes"), -10, "cells[0].model_size_bytes", "-10 is outside 0 to"),
    (("transfer", "model_bytes_sent"), -1, "transfer.model_bytes_sent", "-1 is outside 0 to"),
    (("devices", "pi4", "facts", "memory_mb"), 2**64, "devices.pi4.facts.memory_mb",
     f"{2**64} does not fit a 64-bit integer"),
    (("cells", 0, "model"), "m\x00.tflite", "cells[0].model", '"m\\x00.tflite" holds a control character'),
    (("cells", 0, "device"), "pi4\x9b2J", "cells[0].device", '"pi4\\x9b2J" holds a control character'),
    (("cells", 0, "delegate"), "", "cells[0].delegate", "empty"),
    (("tag",), "night\nly", "tag", '"night\\x0aly" holds a control character'),
    (("started_at",), "not a date", "started_at", '"not a date" is not an ISO-8601 time'),
    (("finished_at",), "2026-13-45T00:00:00+00:00", "finished_at", "is not an ISO-8601 time"),
    (("started_at",), "2026-01-02T00:00:00", "started_at", "has no UTC offset"),
    (("checks", 0, "candidate"), "someone-else", "checks[0].candidate", '"someone-else" is not this run'),
])
def test_values_outside_the_bounds_are_rejected_naming_the_field(path, value, field, why):
    line = rejection(changed(path, value))
    assert line.startswith(f'runs.jsonl:3: run "r1": {field}: '), line
    assert why in line


@pytest.mark.parametrize("run_id, shown, why", [
    ("", '""', "empty"),
    ("r1\x1b[2J\nforged line", '"r1\\x1b[2J\\x0aforged line"', "holds a control character"),
])
def test_a_bad_run_id_is_named_escaped_on_one_line(run_id, shown, why):
    line = rejection(changed(("run_id",), run_id))
    assert line.startswith(f"runs.jsonl:3: run {shown}: run_id: "), line
    assert why in line
    assert "\n" not in line and "\x1b" not in line


def test_a_device_name_with_a_newline_is_rejected():
    doc = document()
    doc["devices"]["pi4\nforged"] = doc["devices"].pop("pi4")
    assert 'devices["pi4\\x0aforged"]: "pi4\\x0aforged" holds a control character' in rejection(doc)


@pytest.mark.parametrize("written, stored", [
    ("2026-01-02T05:30:00+05:30", "2026-01-02T00:00:00+00:00"),
    ("2026-01-01T19:00:00-05:00", "2026-01-02T00:00:00+00:00"),
    ("2026-01-02T00:00:00Z", "2026-01-02T00:00:00+00:00"),
    ("2026-01-02T00:00:00.750+00:00", "2026-01-02T00:00:00+00:00"),
])
def test_accepted_times_are_stored_in_utc_as_the_controller_writes_them(written, stored):
    doc = document(started_at=written)
    parsed = exchange.parse_line(json.dumps(doc), 1, "runs.jsonl")
    assert (parsed.started_at, parsed.finished_at) == (stored, stored)


def test_a_document_the_controller_wrote_is_accepted_unchanged():
    doc = document()
    parsed = exchange.parse_line(json.dumps(doc), 1, "runs.jsonl")
    assert msgspec.to_builtins(parsed) == doc


def test_import_rejects_each_bad_document_on_its_own_line_and_keeps_the_rest(tmp_path):
    hostile = [
        changed(("cells", 0, "threads"), -4),
        changed(("run_id",), "evil\x1b]0;owned\x07\nINFO: forged"),
        changed(("started_at",), "not a date"),
        changed(("cells", 1, "model"), "m\x00.tflite"),
    ]
    hostile[0]["run_id"] = "neg"
    hostile[2]["run_id"] = "nodate"
    hostile[3]["run_id"] = "nul"
    for doc in hostile:
        doc["checks"] = []
    good = [document("r1", "2026-01-01T00:00:00+00:00"), document("r2", "2026-01-02T00:00:00+00:00")]
    for doc in good:
        doc["checks"] = []
    dump = tmp_path / "runs.jsonl"
    dump.write_text("".join(json.dumps(doc) + "\n" for doc in [good[0], *hostile, good[1]]))
    db = tmp_path / "target.sqlite"

    result = controller("import", str(dump), db=db)

    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines == [
        f'error: {dump}:2: run "neg": cells[0].threads: -4 is outside 1 to 1024',
        f'error: {dump}:3: run "evil\\x1b]0;owned\\x07\\x0aINFO: forged": run_id: '
        '"evil\\x1b]0;owned\\x07\\x0aINFO: forged" holds a control character',
        f'error: {dump}:4: run "nodate": started_at: "not a date" is not an ISO-8601 time',
        f'error: {dump}:5: run "nul": cells[1].model: "m\\x00.tflite" holds a control character',
        "imported 2 run(s) with 4 cell(s) and 0 regression check(s); 0 run(s) already present; "
        "4 line(s) rejected",
    ]
    with open_store(db) as store:
        assert store.all_run_ids() == ["r1", "r2"]


def test_latest_is_the_newest_time_whatever_the_offset(tmp_path):
    # Written on a host five hours ahead of UTC: later as text, earlier in time.
    ahead = document("ahead", "2026-01-02T04:00:00+05:00")  # 2026-01-01T23:00Z
    newest = document("newest", "2026-01-02T00:30:00+00:00")
    never = document("never", "not a date")  # as text it sorts after every real date
    dump = tmp_path / "runs.jsonl"
    dump.write_text("".join(json.dumps({**doc, "checks": []}) + "\n" for doc in (newest, ahead, never)))
    db = tmp_path / "target.sqlite"

    result = controller("import", str(dump), db=db)

    assert result.returncode == 2 and f'{dump}:3: run "never": started_at' in result.stderr
    with open_store(db) as store:
        assert store.resolve("latest") == "newest"
        assert store.load_run("ahead").started_at == "2026-01-01T23:00:00+00:00"


def test_a_line_that_is_not_utf8_is_rejected_on_its_own(tmp_path):
    latin1 = json.dumps({**document("cafe"), "tag": "caf\u00e9"}, ensure_ascii=False).encode("latin-1")
    dump = tmp_path / "runs.jsonl"
    dump.write_bytes(latin1 + b"\n" + json.dumps({**document("r2"), "checks": []}).encode() + b"\n")
    db = tmp_path / "target.sqlite"

    result = controller("import", str(dump), db=db)

    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[0].startswith(f"error: {dump}:1: not JSON: ")
    with open_store(db) as store:
        assert store.all_run_ids() == ["r2"]
