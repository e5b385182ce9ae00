"""Nothing lost: a controller or an agent killed mid-run, and every cell stored exactly once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys

from agent.wire import protocol
from agent.wire.protocol import CellSpec, JobAccepted, RunJob
from agent.wire.records import Settings
from tests.support.servicekit import MODELS, QUICK, RawController

VARIANTS = [MODELS / f"digits_cnn_{v}.tflite" for v in ("fp32", "fp16", "dynamic", "int8")]
ROUNDS = 2
CELLS = len(VARIANTS) * ROUNDS
# Cells long enough that a kill lands mid-run.
SLOW = [*QUICK, "--min-secs", "0.4", "--rounds", str(ROUNDS)]


def start_run(profiles, db, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--device", "svc", "--db", str(db), *args, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})


def stored_indices(db) -> list[int]:
    with sqlite3.connect(db) as conn:
        return [row[0] for row in conn.execute("SELECT cell_index FROM cells ORDER BY cell_index")]


def only_run_id(db) -> str:
    with sqlite3.connect(db) as conn:
        (run_id,), = conn.execute("SELECT run_id FROM runs").fetchall()
    return run_id


def test_controller_killed_mid_run_then_resumed(service_agent, tmp_path):
    profiles, db = tmp_path / "profiles", tmp_path / "runs.sqlite"
    service_agent.profile(profiles)
    controller = start_run(profiles, db, "--models", *map(str, VARIANTS), *SLOW)
    service_agent.wait_for_log(r"^INFO job \S+ cell 2 ")
    controller.kill()
    controller.wait(60)
    # The agent goes on alone; the results of the cells it finishes wait in its outbox.
    service_agent.wait_for_log(r"^INFO job \S+ cell 4 ")
    before = stored_indices(db)
    assert 1 <= len(before) < CELLS

    resumed = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--resume", only_run_id(db), "--db", str(db), "--json"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["run_id"] == only_run_id(db)
    assert stored_indices(db) == list(range(CELLS))  # every cell, each exactly once
    assert len(doc["cells"]) == CELLS
    assert all(c["status"] == "ok" for c in doc["cells"]), [c["error"] for c in doc["cells"]]
    assert sorted((c["model"], c["round"]) for c in doc["cells"]) == sorted(
        (m.name, r) for m in VARIANTS for r in range(ROUNDS))
    assert not [e for e in doc["errors"] if "not measured" in e]
    assert "re-attached" in service_agent.log()
    # Acknowledged results leave the agent's outbox.
    assert not any((service_agent.data / "outbox").iterdir())


def test_agent_killed_mid_job_comes_back_and_keeps_completed_cells(service_agent, tmp_path):
    profiles, db = tmp_path / "profiles", tmp_path / "runs.sqlite"
    service_agent.profile(profiles)
    controller = start_run(profiles, db, "--models", *map(str, VARIANTS), *SLOW)
    service_agent.wait_for_log(r"^INFO job \S+ cell 2 ")
    service_agent.stop(signal.SIGKILL)
    service_agent.start()  # as systemd would: same configuration, same port
    out, err = controller.communicate(timeout=600)
    assert controller.returncode == 0, err
    doc = json.loads(out)
    assert "interrupted" in service_agent.log()
    assert [e for e in doc["errors"] if "interrupted (agent restarted" in e], doc["errors"]
    assert stored_indices(db) == list(range(CELLS))
    assert all(c["status"] == "ok" for c in doc["cells"]), [c["error"] for c in doc["cells"]]


def test_agent_runs_accepted_jobs_with_no_controller_and_replays_them(service_agent):
    model = MODELS / "digits_cnn_int8.tflite"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    quick = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)
    cells = [CellSpec(model_sha256=sha, model_name=model.name, delegate="xnnpack", threads=1, settings=quick)
             for _ in range(3)]
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        client.push_model(str(model), sha, model.stat().st_size, model.name)
    raw = RawController(service_agent)
    raw.socket.send_multipart(protocol.encode(RunJob(job_id="alone", cells=cells)))
    assert isinstance(raw.receive(), JobAccepted)
    raw.close()
    # The controller is gone; the agent finishes the job on its own.
    service_agent.wait_for_log(r"^INFO job alone cell 2 ")
    got = []
    with service_agent.client() as client:
        client.hello(timeout_s=30)
        end = client.run_job("alone", cells, on_cell=got.append)
    assert end.interrupted is None
    assert sorted(c.index for c in got) == [0, 1, 2]
    assert all(c.cell.status == "ok" for c in got)
