"""A real PostgreSQL server for the test session: initdb into a temporary directory, pg_ctl start
on a free loopback port, stopped and removed at the end.

PostgreSQL refuses to run as root, so under root the cluster belongs to the `postgres`
system user (Debian's package creates it) and the server commands run as that user.
Each test gets a database of its own on the shared server.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

START_TIMEOUT_S = 60
USER = "edgebench"


class NoServer(RuntimeError):
    """No PostgreSQL server can be started here; the message says why."""


def _bin_dir() -> Path:
    """The directory with initdb and pg_ctl: on PATH, else Debian's versioned directory."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if not candidates:
        raise NoServer("PostgreSQL server binaries not found (initdb; Debian package `postgresql`)")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throw-away cluster with trust authentication for USER on 127.0.0.1 only."""

    def __init__(self, durable: bool = False):
        # Tests need no durability (fsync off); a benchmark measures with it, as a real server runs.
        self.durable = durable
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="edgebench-pg-"))
        self.data = self.root / "data"
        self.port: Optional[int] = None
        self._owner: Optional[pwd.struct_passwd] = None
        if os.geteuid() == 0:
            try:
                self._owner = pwd.getpwnam("postgres")
            except KeyError:
                raise NoServer("running as root and there is no `postgres` user to own the server") from None
            os.chown(self.root, self._owner.pw_uid, self._owner.pw_gid)

    def _run(self, *command: str) -> subprocess.CompletedProcess:
        def demote() -> None:
            if self._owner is not None:
                os.setgroups([])
                os.setgid(self._owner.pw_gid)
                os.setuid(self._owner.pw_uid)
        result = subprocess.run([str(self.bin / command[0]), *command[1:]], capture_output=True, text=True,
                                timeout=START_TIMEOUT_S, preexec_fn=demote, cwd=self.root, check=False)
        if result.returncode != 0:
            raise NoServer(f"{command[0]} failed: {(result.stderr or result.stdout).strip()[-500:]}")
        return result

    def start(self) -> str:
        """initdb and start; the server URL (no database)."""
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync")
        # A port that was free a moment ago may be taken by then: try a few.
        for _ in range(5):
            self.port = _free_port()
            try:
                self.start_again()
                return self.url()
            except NoServer as exc:
                last = exc
        raise last

    def start_again(self) -> None:
        """pg_ctl start on `self.port` with the data directory as it is; returns once it accepts connections."""
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=50"
                   + ("" if self.durable else " -c fsync=off"))
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options,
                  "-w", "-t", str(START_TIMEOUT_S), "start")

    def halt(self) -> None:
        """pg_ctl stop -m fast, keeping the data directory and port for `start_again`: every
        connection is ended and new ones are refused."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        """`postgresql://` URL of a database on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and remove its files."""
        pid_file = self.data / "postmaster.pid"
        if self.port is not None and pid_file.exists():
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            except (NoServer, subprocess.TimeoutExpired):
                # The server we started did not stop when asked: end it by its own pid.
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
