"""Recovery without a person: a controller that dies, an agent that stops answering for its
job, a results database that goes away mid-run. Real processes, a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import zmq

from agent.facts import read_facts
from agent.wire import protocol
from agent.wire.protocol import Have, Hello, JobAccepted, Offer, Ping, Pong, RunJob, Welcome
from controller import locations
from controller.local_agent import LocalAgent, read_line
from controller.store import open_store
from tests.support import EXAMPLE_MODELS, QUICK, controller

MODEL = EXAMPLE_MODELS / "digits_cnn_int8.tflite"
# Four one-second cells of one model: long enough to be interrupted between cells.
MATRIX = ["--models", str(MODEL), "--delegates", "xnnpack", "--threads", "1", *QUICK, "--min-secs", "1",
          "--rounds", "4"]


def start_run(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`controller run --device local ARGS` in the background, its output as bytes."""
    return subprocess.Popen([sys.executable, "-m", "controller", "run", "--device", "local", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})


def wait_for_file_line(path: Path, pattern: str, timeout_s: float = 120.0) -> re.Match:
    """Poll a log file another process writes until a line matches (bounded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            found = re.search(pattern, path.read_text(errors="replace"), re.MULTILINE)
            if found:
                return found
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r} in {path} within {timeout_s} s")


def local_agent_pid() -> int:
    return int((locations.local_agent_dir() / "agent.lock").read_text().split()[0])


# -- a controller killed -------------------------------------------------------------------------

def test_a_killed_controller_takes_its_agent_along_and_resume_finishes(tmp_path):
    db = tmp_path / "runs.sqlite"
    log = locations.local_agent_dir() / "agent.log"
    run = start_run(*MATRIX, "--db", str(db))
    try:
        wait_for_file_line(log, r"^INFO job \S+ cell 0 \S+ xnnpack x1: ok")
        agent = psutil.Process(local_agent_pid())
        run.kill()  # SIGKILL: no handler runs, nothing is cleaned up by the controller
        run.communicate(timeout=60)
        agent.wait(timeout=60)  # the agent noticed its controller is gone, and went
    finally:
        if run.poll() is None:
            run.kill()
    assert "the controller that started this agent is gone" in log.read_text()
    resumed = controller("run", "--resume", "latest", "--json", db=db)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["complete"] is True
    assert sorted(cell["round"] for cell in doc["cells"]) == [0, 1, 2, 3], "a cell is missing or twice"
    assert {cell["status"] for cell in doc["cells"]} == {"ok"}, [cell["error"] for cell in doc["cells"]]


def test_an_orphaned_local_agent_is_taken_over(tmp_path):
    data = tmp_path / "agent-data"
    read_end, write_end = os.pipe()
    # A controller that starts its agent and dies, while the agent's standard input stays
    # open elsewhere (here, in this test): the agent outlives its controller, holding the lock.
    starter = (
        "import subprocess, sys\n"
        "agent = subprocess.Popen([sys.executable, '-m', 'agent', 'serve', '--insecure', '--bind',"
        " 'tcp://127.0.0.1:*', '--data-dir', sys.argv[1], '--stop-on-stdin-close'], stdin=0,"
        " stdout=subprocess.PIPE, stderr=open(sys.argv[2], 'ab'))\n"
        "print(agent.pid, agent.stdout.readline().decode().strip(), flush=True)\n")
    try:
        started = subprocess.run([sys.executable, "-c", starter, str(data), str(tmp_path / "orphan.log")],
                                 stdin=read_end, capture_output=True, text=True, timeout=120, check=True)
        orphan = psutil.Process(int(started.stdout.split()[0]))
        assert protocol.READY_PREFIX.split()[0] in started.stdout, started.stdout
        assert orphan.is_running()
        # The new agent waits for the lock, and stops the orphan to get it.
        with LocalAgent(data) as agent, zmq.Context.instance().socket(zmq.DEALER) as sock:
            sock.connect(agent.endpoint)
            sock.send_multipart(protocol.encode(Hello(client_version="test")))
            assert sock.poll(30_000)
            assert isinstance(protocol.decode(sock.recv_multipart())[0], Welcome)
        assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE
        assert "is gone: stopping it" in (data / "agent.log").read_text()
    finally:
        os.close(write_end)
        os.close(read_end)


# -- an agent that accepts a job and never runs it -----------------------------------------------

class AcceptingAgent:
    """A peer that speaks the protocol and accepts every job, but runs none: what a controller
    meets when an agent's job thread is gone."""

    def __init__(self):
        self.socket = zmq.Context.instance().socket(zmq.ROUTER)
        self.socket.bind("tcp://127.0.0.1:*")
        self.endpoint = self.socket.getsockopt(zmq.LAST_ENDPOINT).decode()
        self.facts = read_facts("/")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            if not self.socket.poll(100):
                continue
            client, *frames = self.socket.recv_multipart()
            message, _ = protocol.decode(frames)
            reply = {Hello: lambda m: Welcome(agent_version="0", minor=0, runtime=None, runtime_version=None,
                                              delegates=["xnnpack"], facts=self.facts),
                     Ping: lambda m: Pong(seq=m.seq),
                     Offer: lambda m: Have(sha256=m.sha256),
                     RunJob: lambda m: JobAccepted(job_id=m.job_id, cells=len(m.cells))}.get(type(message))
            if reply is not None:
                self.socket.send_multipart([client, *protocol.encode(reply(message))])

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close()


def test_the_controller_gives_up_on_a_job_that_makes_no_progress(tmp_path):
    silent = AcceptingAgent()
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "stuck.toml").write_text(f'name = "stuck"\ntransport = "zmq"\naddress = "{silent.endpoint}"\n'
                                         'threads = [1]\ndelegates = ["xnnpack"]\n')
    try:
        # The subprocess timeout is the bound: before, this run never ended.
        result = subprocess.run(
            [sys.executable, "-m", "controller", "run", "--device", "stuck", "--models", str(MODEL), *QUICK,
             "--job-timeout", "3", "--json", "--db", str(tmp_path / "runs.sqlite")],
            capture_output=True, text=True, timeout=180, check=False,
            env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    finally:
        silent.close()
    assert result.returncode == 2, result.stderr  # nothing was measured
    assert re.search(r"device stuck: job \S+ made no progress for 3 s", result.stderr), result.stderr
    doc = json.loads(result.stdout)
    assert any("1 of 1 cells were not measured" in line for line in doc["errors"]), doc["errors"]


def test_job_timeout_must_be_a_positive_number(tmp_path):
    result = controller("run", "--device", "local", "--models", str(MODEL), "--job-timeout", "0", db=tmp_path / "r")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--job-timeout" in result.stderr, result.stderr


# -- a results database that goes away -----------------------------------------------------------

@contextlib.contextmanager
def run_losing_its_database(server, url: str, reconnect_s: float) -> Iterator[subprocess.Popen]:
    """A run whose PostgreSQL server stops once the run's first cell is measured (killed if the
    test leaves it running)."""
    run = start_run(*MATRIX, "--db", url, "--json", env={"EDGEBENCH_DB_RECONNECT_S": str(reconnect_s)})
    try:
        wait_for_file_line(locations.local_agent_dir() / "agent.log", r"^INFO job \S+ cell 0 \S+ xnnpack x1: ok")
        server.halt()
        yield run
    finally:
        if run.poll() is None:
            run.kill()


def test_a_database_down_for_good_loses_nothing_and_resume_stores_it(own_postgres):
    url = own_postgres.create_database("gone")
    with run_losing_its_database(own_postgres, url, reconnect_s=2) as run:
        out, err = run.communicate(timeout=300)
    assert run.returncode == 2, err.decode()
    doc = json.loads(out)
    assert "could not reconnect within 2 s" in doc["store_problem"], doc["store_problem"]
    assert "--resume" in doc["store_problem"]
    assert b"Traceback" not in err
    own_postgres.start_again()
    resumed = controller("run", "--resume", doc["run_id"], "--json", db=url)
    assert resumed.returncode == 0, resumed.stderr
    with open_store(url) as store:
        assert store.count_cells(doc["run_id"]) == 4, "a cell was lost or stored twice"
        assert sorted(cell.round for cell in store.load_run(doc["run_id"]).cells) == [0, 1, 2, 3]


def test_a_database_back_within_the_bound_is_not_noticed(own_postgres):
    url = own_postgres.create_database("back")
    with run_losing_its_database(own_postgres, url, reconnect_s=120) as run:
        # Started again once the controller is seen waiting for it.
        while "connection lost" not in (line := read_line(run.stderr, 120)):
            assert line, "the controller never said it lost the database"
        own_postgres.start_again()
        out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err.decode()
    doc = json.loads(out)
    assert doc["complete"] is True and doc["store_problem"] is None
    with open_store(url) as store:
        assert store.count_cells(doc["run_id"]) == 4
