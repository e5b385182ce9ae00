"""Whole `controller run`s against a real agent: big matrices, interrupts, two runs at once."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys

from tests.support.servicekit import MODELS, QUICK

MODEL = MODELS / "digits_cnn_int8.tflite"


def controller(*args: str, profiles, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True, text=True,
                          timeout=timeout, check=False,
                          env={**os.environ, "EDGEBENCH_PROFILES": str(profiles), **env})


def test_a_matrix_beyond_one_frame_is_sent_in_parts(service_agent, tmp_path):
    profiles, db = tmp_path / "profiles", tmp_path / "runs.sqlite"
    service_agent.profile(profiles)
    cells = 2600  # one RunJob of these is above the frame limit
    # A delegate the agent does not have: every cell fails at once, without a process.
    result = controller("run", "--device", "svc", "--models", str(MODEL), "--delegates", "nosuch",
                        "--rounds", str(cells), *QUICK, "--db", str(db), "--json", profiles=profiles)
    assert result.returncode == 2, result.stderr[-2000:]  # nothing could be measured
    doc = json.loads(result.stdout)
    assert len(doc["cells"]) == cells
    assert {c["status"] for c in doc["cells"]} == {"failed"}
    assert "not available on this agent" in doc["cells"][0]["error"]
    assert not [e for e in doc["errors"] if "not measured" in e]


def test_an_interrupted_controller_cancels_its_job(service_agent, tmp_path):
    profiles, db = tmp_path / "profiles", tmp_path / "runs.sqlite"
    service_agent.profile(profiles)
    run = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--device", "svc", "--models", str(MODEL), *QUICK,
         "--min-secs", "60", "--max-secs", "120", "--rounds", "3", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    try:
        service_agent.wait_for_log(r"^INFO job \S+: 3 cells", 120)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err
    service_agent.wait_for_log(r"^INFO job \S+: cancelled by the controller", 30)
    assert "cell 1 " not in service_agent.log()  # the rest of the job was not measured for nobody


def test_a_model_corrupted_mid_run_is_sent_again_and_its_cells_measured(service_agent, tmp_path):
    profiles, db = tmp_path / "profiles", tmp_path / "runs.sqlite"
    service_agent.profile(profiles)
    run = subprocess.Popen(
        [sys.executable, "-m", "controller", "run", "--device", "svc", "--models", str(MODEL), *QUICK,
         "--min-secs", "1", "--rounds", "3", "--db", str(db), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    try:
        service_agent.wait_for_log(r"^INFO job \S+ cell 0 ", 120)
        cached = service_agent.data / "models" / f"{hashlib.sha256(MODEL.read_bytes()).hexdigest()}.tflite"
        data = bytearray(cached.read_bytes())
        data[-10] ^= 0x55
        cached.write_bytes(bytes(data))
        out, err = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    doc = json.loads(out)
    assert [c["status"] for c in doc["cells"]] == ["ok"] * 3, [c["error"] for c in doc["cells"]]
    assert [e for e in doc["errors"] if "sending it again" in e], doc["errors"]
    assert doc["transfer"]["model_bytes_sent"] == 2 * MODEL.stat().st_size
