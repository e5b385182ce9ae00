"""The PostgreSQL store gets its connection back: a server restart, a terminated connection,
a COMMIT whose answer is lost, and a server that stays down past the reconnect time."""

import contextlib
import logging
import secrets
import socket
import threading

import pytest

from agent.wire.records import Cell, LatencyStats
from controller.store import StoreError, open_store
from controller.store import postgres as postgres_store

psycopg = pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install 'edgebench[postgres]')")

# Bounds for the helper threads: far longer than any step takes, short enough to end a failed test.
WAIT_S = 60


def cell(index: int) -> Cell:
    return Cell(device="pi4", model=f"m{index}.tflite", model_sha256="a" * 64, model_size_bytes=10,
                delegate="xnnpack", threads=1, status="ok",
                latency_us=LatencyStats(count=1, min=1, max=1, mean=1, std=0, p50=1, p90=1, p99=1))


class LogSeen(logging.Handler):
    """Sets `event` when the store logs a message containing `words`."""

    def __init__(self, words: str):
        super().__init__(logging.DEBUG)
        self.words = words
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.words in record.getMessage():
            self.event.set()


@pytest.fixture
def store_log():
    """The store's log, at INFO, with a handler the test chooses."""
    logger = logging.getLogger(postgres_store.__name__)
    handlers, level = [], logger.level
    logger.setLevel(logging.INFO)

    def watch(words: str) -> LogSeen:
        handler = LogSeen(words)
        logger.addHandler(handler)
        handlers.append(handler)
        return handler

    yield watch
    for handler in handlers:
        logger.removeHandler(handler)
    logger.setLevel(level)


def stored(url: str, run_id: str) -> list[tuple]:
    """The (device, cell_index) of every stored cell of a run, read on a connection of its own."""
    with psycopg.connect(url) as db:
        return db.execute("SELECT device, cell_index FROM cells WHERE run_id = %s", (run_id,)).fetchall()


def test_a_cell_stored_across_a_server_restart_is_there_once(own_postgres, store_log, monkeypatch):
    monkeypatch.setenv(postgres_store.RECONNECT_ENV, str(WAIT_S))
    url = own_postgres.create_database("results")
    retrying = store_log("reconnect attempt 1 failed")
    back = []

    def start_when_retrying() -> None:
        back.append(retrying.event.wait(WAIT_S))
        own_postgres.start_again()

    with open_store(url) as store:
        store.start_run("r1", None, "2026-01-01T00:00:00+00:00")
        own_postgres.halt()
        restarter = threading.Thread(target=start_when_retrying)
        restarter.start()
        try:
            assert store.add_cell("r1", cell(0), 0)
        finally:
            retrying.event.set()  # a store that never retried must not leave the thread waiting
            restarter.join(WAIT_S)
        assert back == [True]  # the server came back only once the store was retrying
        assert not store.add_cell("r1", cell(0), 0)  # the connection it got back works
    assert stored(url, "r1") == [("pi4", 0)]


def test_the_next_operation_after_a_terminated_connection_succeeds(postgres_url, store_log):
    reconnected = store_log("reconnected after")
    with open_store(postgres_url) as store:
        store.start_run("r1", None, "2026-01-01T00:00:00+00:00")
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()", (WAIT_S * 1000,)).fetchall()
        assert ended == [(True,)]  # the store's one connection, gone before the store speaks again
        assert store.add_cell("r1", cell(0), 0)
        assert reconnected.event.is_set()
        assert store.cell_indices("r1", "pi4") == {0}
        # An SQL error on a working connection is not a lost connection: raised at once, no reconnect.
        reconnected.event.clear()
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            store.add_cell("no-such-run", cell(1), 1)
        assert not reconnected.event.is_set()
    assert stored(postgres_url, "r1") == [("pi4", 0)]


class CommitCutter:
    """A loopback relay to a PostgreSQL server that can lose the answer to a COMMIT: it passes
    the COMMIT on, then ends both connections, so the server commits and the client never hears."""

    COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"  # a simple-protocol Query message: "COMMIT"

    def __init__(self, server_port: int):
        self.server_port = server_port
        self.armed = threading.Event()
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.server_port))
                lost = threading.Event()
                threading.Thread(target=self._to_client, args=(server, client, lost), daemon=True).start()
                threading.Thread(target=self._to_server, args=(client, server, lost), daemon=True).start()

    def _to_server(self, client: socket.socket, server: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError), client:
            while data := client.recv(65536):
                cutting = self.armed.is_set() and self.COMMIT in data
                if cutting:
                    lost.set()  # nothing the server says from now on reaches the client
                    self.armed.clear()
                server.sendall(data)
                if cutting:
                    # FIN after the COMMIT: the server reads it and commits before it sees the end.
                    server.shutdown(socket.SHUT_WR)
                    self.cut.set()
                    return

    def _to_client(self, server: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError), server:
            while data := server.recv(65536):
                if lost.is_set():
                    continue  # read to the end, so that closing sends no reset
                client.sendall(data)

    def close(self) -> None:
        self.listener.close()


def test_a_commit_whose_answer_was_lost_counts_as_stored(postgres_server, postgres_url):
    cutter = CommitCutter(postgres_server.port)
    relayed = postgres_url.replace(f":{postgres_server.port}/", f":{cutter.port}/")
    try:
        with open_store(relayed) as store:
            store.start_run("r1", None, "2026-01-01T00:00:00+00:00")
            cutter.armed.set()
            # The cell was committed by the first attempt: "stored already" would drop it from the run.
            assert store.add_cell("r1", cell(0), 0)
            assert cutter.cut.is_set()
            cutter.cut.clear()
            cutter.armed.set()
            store.start_run("r2", None, "2026-01-01T00:00:00+00:00")  # not RunExists for its own run
            assert cutter.cut.is_set() and not cutter.armed.is_set()
            assert store.has_run("r2")
    finally:
        cutter.close()
    assert stored(postgres_url, "r1") == [("pi4", 0)]


def test_a_server_that_stays_down_is_one_line_naming_the_database(own_postgres, monkeypatch):
    monkeypatch.setenv(postgres_store.RECONNECT_ENV, "2")
    database = f"results_{secrets.token_hex(4)}"
    own_postgres.create_database(database)
    url = own_postgres.url(database).replace("edgebench@", "edgebench:hunter2@")  # trust: the password is unused
    with open_store(url) as store:
        store.start_run("r1", None, "2026-01-01T00:00:00+00:00")
        own_postgres.halt()
        with pytest.raises(StoreError) as caught:
            store.add_cell("r1", cell(0), 0)
    message = str(caught.value)
    assert "\n" not in message
    assert f"edgebench:***@127.0.0.1:{own_postgres.port}/{database}" in message and "hunter2" not in message
    assert "within 2 s" in message
    assert message.partition(f"({postgres_store.RECONNECT_ENV}): ")[2]  # then the last error, in its own words
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
