"""A long fuzz of a live agent, floods included: deaths, memory, open files and outbox after it.

One real agent process (loopback, ZeroMQ) gets, in rotating batches:

- random frames, valid messages with bytes flipped, cut or inserted, and messages of every
  real type with hostile field values (as `tests/service/test_hostile.py` makes them);
- well-formed hostile requests: jobs under random ids for models it lacks, offers of blobs
  never sent, acknowledgements and cancels of jobs that do not exist;
- floods: 2,000 re-attaches to an unacknowledged 2,000-result job followed by a hang-up,
  and offers from 300 invented client ids at once.

After every batch of ten other messages a ping must come back; after every flood a fresh connection
must get a WELCOME. A dead agent is counted and restarted. RSS and open files of the agent
are read before (after one normal cell), right after the fuzz and after 60 s idle.

With `--minutes M` the fuzz runs for that long instead, and after each flood one of three
abuses of an allowed controller takes its turn (their figures are summed in the result):

- the wedge: the agent's disk fills while a cell runs (a real tmpfs holds its data; skipped
  where none can be mounted), then empties: the result must arrive anyway, a job on the
  full disk must be refused with one line, the held result must reach the disk, and the
  next job must run;
- the ballooning cell: a real model whose input batch is raised until it needs gigabytes,
  under `--cell-memory-limit-mb`: it must fail with "memory limit" and the next cell run;
- the slot holder: four connections offering blobs again and again without a chunk, while
  a real push from the same address must still go through.

At the end the agent must answer, a normal cell run, and no partial or temporary file stay.

    python bench/fortress.py [--messages 100000] [--idle 60]
    python bench/fortress.py --minutes 30 --idle 60     # the mixed abuse run
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import msgspec
import psutil
import zmq

from agent.outbox import Outbox
from agent.wire import protocol
from agent.wire.protocol import (
    READY_PREFIX,
    AndroidTarget,
    CellDone,
    CellSpec,
    JobDone,
    Offer,
    Ping,
    Pong,
    RunJob,
    Welcome,
    cell_template,
)
from agent.wire.records import Settings
from controller.client import AgentClient, AgentError
from controller.local_agent import read_line

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.support: the ballooned model the tests make too
MODEL = REPO / "examples" / "models" / "digits_cnn_int8.tflite"
SHA = hashlib.sha256(MODEL.read_bytes()).hexdigest()
QUICK = Settings(warmup_runs=1, warmup_min_secs=0, num_runs=5, min_secs=0)
FLOOD_JOB_CELLS = 2000
REPLY_TIMEOUT_MS = 15_000
# Messages sent back to back before a ping must come back.
BATCH = 10
TAGS = {cls.__struct_config__.tag: cls for cls in protocol.AnyMessage.__args__}


def spec() -> CellSpec:
    return CellSpec(model_sha256=SHA, model_name=MODEL.name, delegate="xnnpack", threads=1, settings=QUICK)


class Agent:
    """`agent serve` on a loopback port with its own data directory."""

    def __init__(self, data: Path, log: Path, memory_limit_mb: int):
        self.data, self.log_path, self.memory_limit_mb = data, log, memory_limit_mb
        self.process = None
        self.endpoint = None
        self.deaths = 0

    def start(self) -> None:
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agent", "serve", "--insecure", "--bind", "tcp://127.0.0.1:*",
             "--data-dir", str(self.data), "--log-level", "warning",
             "--cell-memory-limit-mb", str(self.memory_limit_mb)],
            stdout=subprocess.PIPE, stderr=self.log, stdin=subprocess.DEVNULL)
        line = read_line(self.process.stdout, 60)
        assert line.startswith(READY_PREFIX), line
        self.endpoint = line[len(READY_PREFIX):].strip()

    def alive(self) -> bool:
        if self.process.poll() is None:
            return True
        self.deaths += 1
        print(f"agent died (status {self.process.returncode}); restarting", file=sys.stderr)
        self.start()
        return False

    def footprint(self) -> dict:
        """RSS and open file descriptors of the agent, and what kinds of files those are."""
        proc = psutil.Process(self.process.pid)
        kinds = collections.Counter()
        fd_dir = Path(f"/proc/{proc.pid}/fd")
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                kinds[os.readlink(fd).split(":")[0].split("[")[0]] += 1
        return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "open_files": proc.num_fds(),
                "kinds": dict(sorted(kinds.items()))}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


class Fuzzer:
    def __init__(self, agent: Agent, seed: int):
        self.agent = agent
        self.rng = random.Random(seed)
        self.ctx = zmq.Context.instance()
        self.socket = self._connect()
        self.thrown = self.errors = self.seq = 0

    def _connect(self, identity: bytes | None = None) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        if identity:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(self.agent.endpoint)
        return sock

    def reconnect(self) -> None:
        self.socket.close()
        self.socket = self._connect()

    def throw(self, batch: list[list[bytes]]) -> bool:
        """Send each message of `batch`, then a ping; True when the pong came back."""
        for frames in batch:
            self.socket.send_multipart(frames)
        self.thrown += len(batch)
        self.seq += 1
        self.socket.send_multipart(protocol.encode(Ping(seq=self.seq)))
        while self.socket.poll(REPLY_TIMEOUT_MS):
            try:
                message, _ = protocol.decode(self.socket.recv_multipart())
            except protocol.ProtocolError:
                continue
            self.errors += isinstance(message, protocol.Error)
            if isinstance(message, Pong) and message.seq == self.seq:
                return True
        return False

    # -- message makers ---------------------------------------------------------------------

    def value(self, depth: int = 0):
        r = self.rng.random()
        if depth < 2 and r < 0.15:
            return [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]
        if depth < 2 and r < 0.25:
            return {self.text(6): self.value(depth + 1) for _ in range(self.rng.randint(0, 3))}
        return self.rng.choice([None, True, False, self.rng.randint(-2**63, 2**64 - 1), self.rng.random() * 1e9,
                                float("nan"), self.text(40), self.rng.randbytes(self.rng.randint(0, 40)),
                                "0" * 64, "../../etc/passwd"])

    def text(self, limit: int) -> str:
        return "".join(chr(self.rng.choice([self.rng.randint(32, 126), self.rng.randint(0, 0x10FFFF)]))
                       for _ in range(self.rng.randint(0, limit))).encode("utf-8", "replace").decode("utf-8", "replace")

    def random_frames(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.randint(0, 512)) for _ in range(self.rng.randint(1, 5))]

    def typed(self) -> list[bytes]:
        tag = self.rng.choice(sorted(TAGS))
        fields = {f.encode_name: self.value() for f in msgspec.structs.fields(TAGS[tag])}
        fields["type"] = tag
        return [protocol.PROTOCOL, msgspec.msgpack.encode(fields),
                *[self.rng.randbytes(self.rng.randint(0, 64)) for _ in range(self.rng.randint(0, 2))]]

    def mutated(self) -> list[bytes]:
        message = self.rng.choice([
            protocol.Hello(client_version="1"), Offer(sha256=SHA, size=10, name="m.tflite"),
            protocol.Chunk(sha256=SHA, offset=0), RunJob(job_id="fuzz", cells=[spec()]), Ping(seq=1),
            protocol.Ack(job_id="fuzz", cells=[0, 1]), protocol.Cancel(job_id="fuzz")])
        body = bytearray(protocol.encode(message)[1])
        for _ in range(self.rng.randint(1, 4)):
            at = self.rng.randrange(max(1, len(body)))
            kind = self.rng.choice("fci")
            if kind == "f" and body:
                body[at] ^= self.rng.randint(1, 255)
            elif kind == "c":
                del body[at:at + self.rng.randint(1, 16)]
            else:
                body[at:at] = self.rng.randbytes(self.rng.randint(1, 16))
        return [self.rng.choice([protocol.PROTOCOL, b"EDGEBENCH/2", b""]), bytes(body)]

    def hostile_valid(self) -> list[bytes]:
        job_id = f"fuzz-{self.rng.randrange(10**9)}"
        other = hashlib.sha256(self.rng.randbytes(8)).hexdigest()
        message = self.rng.choice([
            RunJob(job_id=job_id, cells=[msgspec.structs.replace(spec(), model_sha256=other)]),
            Offer(sha256=other, size=self.rng.randint(1, 1 << 30), name="x.tflite"),
            protocol.Ack(job_id=job_id, cells=[1, 2, 3], done=self.rng.random() < 0.5),
            protocol.Cancel(job_id=job_id),
            protocol.InfoRequest(),
        ])
        return protocol.encode(message)

    # -- floods ---------------------------------------------------------------------------------

    def reattach_flood(self) -> int:
        sock = self._connect()
        frames = protocol.encode(RunJob(job_id="flood", cells=[spec()]))
        for _ in range(FLOOD_JOB_CELLS):
            sock.send_multipart(frames)
        sock.close()  # hang up on whatever the agent queued
        return FLOOD_JOB_CELLS

    def id_flood(self) -> int:
        sockets = []
        for n in range(300):
            sock = self._connect(identity=b"id-%d-%d" % (self.seq, n))
            sha = hashlib.sha256(b"%d-%d" % (self.seq, n)).hexdigest()
            sock.send_multipart(protocol.encode(Offer(sha256=sha, size=1 << 20, name="x")))
            sockets.append(sock)
        for sock in sockets:
            sock.poll(REPLY_TIMEOUT_MS)
            sock.close()
        return len(sockets)

    def welcome(self) -> bool:
        with AgentClient(self.agent.endpoint) as client:
            return isinstance(client.hello(timeout_s=30), Welcome)


def flood_job(data: Path) -> None:
    """An unacknowledged 2,000-result job in the outbox, as a vanished controller leaves it."""
    outbox = Outbox(data / "outbox")
    job = RunJob(job_id="flood", cells=[spec() for _ in range(FLOOD_JOB_CELLS)])
    outbox.accept(job)
    template = cell_template(job.cells[0], MODEL.stat().st_size)
    for index in range(FLOOD_JOB_CELLS):
        outbox.put(CellDone(job_id="flood", index=index, cell=template))
    outbox.put(JobDone(job_id="flood"))


def phone_warm_up(agent: Agent) -> None:
    """One request for a USB phone that is not there: the agent loads its ADB code once
    (the fuzz makes such requests too), so `before` includes it like a phone user's agent."""
    with AgentClient(agent.endpoint) as client:
        client.hello(timeout_s=30)
        with contextlib.suppress(AgentError):
            client.info(android=AndroidTarget(serial="EDGEBENCH-NO-SUCH-PHONE"))


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    """A real tmpfs at `path`, or None where mounting is not allowed (the wedge is then skipped)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, check=False, timeout=30).returncode == 0
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


class Abuses:
    """The three abuses of an allowed controller, each a real sequence against the running agent."""

    def __init__(self, agent: Agent, disk: Optional[Path], balloon_model: Path):
        self.agent, self.disk, self.balloon_model = agent, disk, balloon_model
        self.figures: dict[str, dict] = {"wedge": collections.Counter(), "balloon": collections.Counter(),
                                         "slot_holder": collections.Counter()}
        self.slowest: dict[str, float] = collections.defaultdict(float)

    def _dealer(self) -> zmq.Socket:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.agent.endpoint)
        return sock

    def _next(self, sock: zmq.Socket, kind: type, job_id: str):
        while sock.poll(60_000):
            message, _ = protocol.decode(sock.recv_multipart())
            if isinstance(message, kind) and getattr(message, "job_id", None) == job_id:
                return message
        raise AssertionError(f"no {kind.__name__} for {job_id} within 60 s")

    def wedge(self, n: int) -> None:
        """The disk fills during a cell, then empties."""
        figures = self.figures["wedge"]
        if self.disk is None:
            figures["skipped_no_tmpfs"] += 1
            return
        job_id, sock = f"wedge-{n}", self._dealer()
        slow = msgspec.structs.replace(QUICK, min_secs=1.0, max_secs=10.0)
        try:
            normal_cell(self.agent, f"wedge-push-{n}")  # the model is cached before the disk fills
            sock.send_multipart(protocol.encode(RunJob(job_id=job_id, cells=[msgspec.structs.replace(
                spec(), settings=slow)])))
            self._next(sock, protocol.CellStarted, job_id)
            filler = self.disk / "filler"
            # Unbuffered: a failed write leaves nothing for the close to flush (and fail on) again.
            with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (64 << 10))
            full_at = time.monotonic()
            done = self._next(sock, CellDone, job_id)
            figures["results_arrived"] += done.cell.status == "ok"
            figures["said_held_in_memory"] += any("could not write" in w for w in done.cell.warnings)
            self._next(sock, JobDone, job_id)
            try:
                normal_cell(self.agent, f"wedge-refused-{n}")
            except AgentError as exc:
                figures["jobs_refused_on_full_disk"] += "cannot record the job" in str(exc)
            filler.unlink()
            outbox = Outbox(self.agent.data / "outbox")  # reads the disk only: what the agent wrote
            while "cell-0.msgpack" not in outbox.pending_names(job_id):  # the agent rewrites every 5 s
                assert time.monotonic() - full_at < 60, "the held result never reached the disk"
                time.sleep(0.1)
            self.slowest["wedge_result_on_disk_s"] = max(self.slowest["wedge_result_on_disk_s"],
                                                         time.monotonic() - full_at)
            figures["results_written_later"] += 1
            sock.send_multipart(protocol.encode(protocol.Ack(job_id=job_id, done=True)))
            figures["next_job_ok"] += normal_cell(self.agent, f"wedge-after-{n}") == "ok"
            figures["rounds"] += 1
        finally:
            sock.close()

    def balloon(self, n: int) -> None:
        """A cell that asks for gigabytes, then a normal one."""
        figures = self.figures["balloon"]
        sha = hashlib.sha256(self.balloon_model.read_bytes()).hexdigest()
        big = msgspec.structs.replace(spec(), model_sha256=sha, model_name=self.balloon_model.name)
        cells = []
        with AgentClient(self.agent.endpoint) as client:
            client.hello(timeout_s=30)
            client.push_model(str(self.balloon_model), sha, self.balloon_model.stat().st_size,
                              self.balloon_model.name)
            client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
            client.run_job(f"balloon-{n}", [big, spec()], on_cell=cells.append)
        cells.sort(key=lambda done: done.index)
        error = cells[0].cell.error or ""
        figures["failed_with_memory_limit"] += error.startswith("memory limit:")
        reached = re.search(r"reached (\d+) MB", error)
        if reached:
            self.slowest["balloon_reached_mb_max"] = max(self.slowest["balloon_reached_mb_max"],
                                                         float(reached.group(1)))
        figures["next_cell_ok"] += cells[1].cell.status == "ok"
        figures["rounds"] += 1

    def slot_holder(self, n: int) -> None:
        """Four connections offer blobs again and again; a real push goes through meanwhile."""
        figures = self.figures["slot_holder"]
        holders = [self._dealer() for _ in range(4)]
        offers = [protocol.encode(Offer(sha256=hashlib.sha256(b"held %d %d" % (n, k)).hexdigest(),
                                        size=8 << 20, name="held.tflite")) for k in range(16)]
        try:
            for again in range(3):
                for k, frames in enumerate(offers):
                    holders[k % 4].send_multipart(frames)
                if again == 1:
                    figures["pushes_ok_while_held"] += normal_cell(self.agent, f"beside-holder-{n}") == "ok"
            parts = len(list((self.agent.data / "models").glob("*.part")))
            self.slowest["slot_holder_parts_max"] = max(self.slowest["slot_holder_parts_max"], parts)
            figures["rounds"] += 1
        finally:
            for sock in holders:
                sock.close()

    def run(self, n: int) -> None:
        """One of the three, in turn; a failed check is counted, not fatal."""
        abuse = (self.wedge, self.balloon, self.slot_holder)[n % 3]
        start = time.monotonic()
        try:
            abuse(n)
        except (AssertionError, AgentError) as exc:
            print(f"{abuse.__name__} {n}: {exc}", file=sys.stderr)
            self.figures[abuse.__name__]["failed"] += 1
        self.slowest[f"{abuse.__name__}_s"] = max(self.slowest[f"{abuse.__name__}_s"], time.monotonic() - start)


def leftovers(data: Path) -> list[str]:
    """Partial transfers and half-written outbox files in the agent's data directory."""
    return sorted(str(path.relative_to(data)) for pattern in ("models/*.part", "outbox/*/*.tmp")
                  for path in data.glob(pattern))


def normal_run(agent: Agent, tmp: Path) -> dict:
    """A whole `controller run` of the example models through the agent, as a user runs it:
    its exit status and how many cells came back ok."""
    profiles = tmp / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "fortress.toml").write_text(f'name = "fortress"\ntransport = "zmq"\naddress = "{agent.endpoint}"\n'
                                            'threads = [1]\ndelegates = ["cpu", "xnnpack"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "controller", "run", "--device", "fortress", "--models",
         str(REPO / "examples" / "models" / "*.tflite"), "--warmup-runs", "1", "--warmup-min-secs", "0",
         "--num-runs", "5", "--min-secs", "0", "--db", str(tmp / "runs.sqlite"), "--json"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "EDGEBENCH_PROFILES": str(profiles)})
    cells = json.loads(result.stdout)["cells"] if result.stdout.strip() else []
    return {"exit_status": result.returncode, "cells": len(cells),
            "cells_ok": sum(cell["status"] == "ok" for cell in cells)}


def normal_cell(agent: Agent, job_id: str) -> str:
    cells = []
    with AgentClient(agent.endpoint) as client:
        client.hello(timeout_s=30)
        client.push_model(str(MODEL), SHA, MODEL.stat().st_size, MODEL.name)
        client.run_job(job_id, [spec()], on_cell=cells.append)
    return cells[0].cell.status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--minutes", type=float, help="fuzz for this long, with the three abuses, instead")
    parser.add_argument("--idle", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--cell-memory-limit-mb", type=int, default=400)
    args = parser.parse_args()
    from tests.support.balloon import balloon

    with tempfile.TemporaryDirectory() as tmp, tmpfs(Path(tmp) / "disk", "256m") as disk:
        data = (disk or Path(tmp)) / "data"
        flood_job(data)
        agent = Agent(data, Path(tmp) / "agent.log", args.cell_memory_limit_mb)
        agent.start()
        big = balloon(REPO / "examples" / "models" / "digits_cnn_fp32.tflite", 230_000,
                      Path(tmp) / "digits_batch230000.tflite")
        abuses = Abuses(agent, disk, big) if args.minutes else None
        assert normal_cell(agent, "warm-up") == "ok"
        phone_warm_up(agent)
        before = agent.footprint()
        fuzz = Fuzzer(agent, args.seed)
        makers = [fuzz.random_frames, fuzz.mutated, fuzz.typed, fuzz.hostile_valid]
        flooded, floods, lost_pongs, welcomes_failed = 0, 0, 0, 0
        start = time.monotonic()

        def going() -> bool:
            if args.minutes:
                return time.monotonic() - start < args.minutes * 60
            return fuzz.thrown + flooded < args.messages

        while going():
            for _ in range(2000 // BATCH):
                if not fuzz.throw([makers[(fuzz.thrown + n) % len(makers)]() for n in range(BATCH)]):
                    lost_pongs += 1
                    agent.alive()
                    fuzz.reconnect()
            flooded += fuzz.reattach_flood() if floods % 2 == 0 else fuzz.id_flood()
            if abuses is not None:
                abuses.run(floods)
            floods += 1
            if not agent.alive() or not fuzz.welcome():
                welcomes_failed += 1
        fuzz_s = time.monotonic() - start
        fuzz.socket.close()  # the fuzzer's own connection is not the agent's to keep
        after = agent.footprint()
        time.sleep(args.idle)  # the agent's own expiry of idle connections and transfers
        idle = agent.footprint()
        normal = normal_cell(agent, "after-fuzz")
        run_after = normal_run(agent, Path(tmp))
        agent.alive()
        left = leftovers(data)
        agent.stop()
        outbox_bytes = Outbox(data / "outbox").size_bytes()
        result = {
            "messages": fuzz.thrown + flooded, "fuzzed": fuzz.thrown, "flood_messages": flooded,
            "floods": floods, "error_replies": fuzz.errors, "deaths": agent.deaths,
            "lost_pongs": lost_pongs, "failed_welcomes": welcomes_failed, "seconds": round(fuzz_s, 1),
            "before": before, "after_fuzz": after, f"after_{args.idle:.0f}s_idle": idle,
            "rss_growth_mb_after_idle": round(idle["rss_mb"] - before["rss_mb"], 1),
            "extra_open_files_after_idle": idle["open_files"] - before["open_files"],
            "outbox_bytes_after": outbox_bytes, "normal_cell_after": normal, "leftover_files": left,
            "controller_run_after": run_after,
        }
        if abuses is not None:
            result["abuses"] = {name: dict(counts) for name, counts in abuses.figures.items()}
            result["abuse_extremes"] = {name: round(value, 1) for name, value in abuses.slowest.items()}
    print(json.dumps(result, indent=2))
    failed = abuses is not None and any(counts.get("failed") for counts in abuses.figures.values())
    run_ok = run_after["exit_status"] == 0 and run_after["cells_ok"] == run_after["cells"] > 0
    return 0 if result["deaths"] == 0 and normal == "ok" and run_ok and not left and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
