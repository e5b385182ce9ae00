"""A device-side ADB peer on loopback: the real wire protocol, a sandbox for a file system.

It answers what an Android device's `adbd` answers over TCP/IP: the CNXN handshake
(with optional RSA authentication against a list of authorized keys), streams opened
with OPEN and flow-controlled by OKAY, `shell:` (old protocol: merged output, no exit
code), `shell,v2,...:` (stdout, stderr and exit packets), and `sync:` (STAT, LIST, SEND,
RECV, QUIT). Device paths live below a sandbox directory; in shell commands, absolute
paths under the usual Android roots are rewritten into it, the way a chroot would show
them, and the commands run in a real `sh`. Both `adb-shell` and Debian's `adb` client
talk to it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import queue
import re
import secrets
import signal
import socket
import stat
import struct
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

A_VERSION_MIN = 0x01000000
A_VERSION_SKIP_CHECKSUM = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
SYNC_DATA_MAX = 64 * 1024
# How long a stream waits for the peer's OKAY before it gives up on the connection.
WRITE_TIMEOUT_S = 30.0
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4

_DEVICE_ROOTS = re.compile(r"(?<![\w./-])/(?=(?:data|sdcard|sys|proc|system|vendor|storage)(?:/|\b))")


def _wire(command: bytes) -> int:
    return struct.unpack("<I", command)[0]


def _checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def android_pubkey_numbers(pubkey: bytes) -> tuple[int, int]:
    """(n, e) of an `adbkey.pub` line: base64 of Android's RSA public key struct."""
    blob = base64.b64decode(pubkey.split(b" ")[0].strip(b"\0\n"))
    words = struct.unpack_from("<I", blob)[0]
    modulus = int.from_bytes(blob[8:8 + 4 * words], "little")
    exponent = struct.unpack_from("<I", blob, 8 + 8 * words)[0]
    return modulus, exponent


def verify_signature(pubkey: bytes, token: bytes, signature: bytes) -> bool:
    """Whether `signature` is the key's PKCS#1 v1.5 SHA-1 signature of the 20-byte token."""
    try:
        n, e = android_pubkey_numbers(pubkey)
        key = rsa.RSAPublicNumbers(e, n).public_key()
        key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
    except (InvalidSignature, ValueError, struct.error):
        return False
    return True


@dataclass
class DeviceSettings:
    """What the emulated device is and how it behaves."""

    serial: str = "emulated-0001"
    props: dict[str, str] = field(default_factory=dict)
    # None: no authentication. A list: public keys (adbkey.pub lines) allowed in.
    authorized_keys: Optional[list[bytes]] = None
    # When a new key is offered: True accepts it ("Always allow"), False refuses.
    accept_new_keys: bool = False
    # Drop the whole connection once a push has received this many bytes.
    drop_push_after: Optional[int] = None
    env: dict[str, str] = field(default_factory=dict)
    features: str = "shell_v2,cmd"


class AdbEmulator:
    """An emulated device listening on 127.0.0.1; use as a context manager."""

    def __init__(self, sandbox: Path, settings: Optional[DeviceSettings] = None):
        self.sandbox = Path(sandbox).resolve()
        self.settings = settings or DeviceSettings()
        self.commands: list[str] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._live: set[_Connection] = set()
        self._lock = threading.Lock()
        self._install_shims()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> AdbEmulator:
        thread = threading.Thread(target=self._accept, name="adb-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and drop every connection."""
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            live = list(self._live)
        for connection in live:
            connection.drop()
        for thread in self._threads:
            thread.join(timeout=10)

    def device_path(self, path: str) -> Path:
        """The sandbox file standing for the device path `path`."""
        resolved = (self.sandbox / path.lstrip("/")).resolve()
        if resolved != self.sandbox and self.sandbox not in resolved.parents:
            raise PermissionError(f"{path}: outside the device")
        return resolved

    def banner(self) -> bytes:
        props = self.settings.props
        fields = [f"{key}={props[key]}" for key in ("ro.product.name", "ro.product.model", "ro.product.device")
                  if key in props]
        return ("device::" + ";".join([*fields, f"features={self.settings.features}"])).encode()

    def _install_shims(self) -> None:
        """`getprop` on the device's PATH, answering from `settings.props`."""
        bin_dir = self.sandbox / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        props = self.sandbox / "system" / "props.txt"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.settings.props.items()))
        getprop = bin_dir / "getprop"
        getprop.write_text(
            "#!/bin/sh\n"
            f"props='{props}'\n"
            "if [ $# -eq 0 ]; then sed 's/^\\([^=]*\\)=\\(.*\\)$/[\\1]: [\\2]/' \"$props\"; exit 0; fi\n"
            "grep \"^$1=\" \"$props\" | head -n 1 | cut -d= -f2-\n")
        getprop.chmod(0o755)

    def shell_environment(self) -> dict[str, str]:
        env = {"PATH": f"{self.sandbox / 'system' / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "HOME": str(self.sandbox / "data" / "local" / "tmp"), "LANG": "C"}
        env.update(self.settings.env)
        return env

    def rewrite(self, command: str) -> str:
        """`command` with absolute device paths pointing into the sandbox."""
        return _DEVICE_ROOTS.sub(str(self.sandbox) + "/", command)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            connection = _Connection(self, sock)
            with self._lock:
                self.connections += 1
                self._live.add(connection)
            thread = threading.Thread(target=connection.serve, name="adb-connection", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._live.discard(connection)


class _Stream:
    """One ADB stream: bytes from the peer in `inbox`, writes paced by the peer's OKAY."""

    def __init__(self, connection: _Connection, local_id: int, remote_id: int):
        self.connection, self.local_id, self.remote_id = connection, local_id, remote_id
        self.inbox: queue.Queue[Optional[bytes]] = queue.Queue()
        self.ready = threading.Event()
        self.ready.set()
        self.closed = threading.Event()
        self.on_close: Callable[[], None] = lambda: None
        self._close_lock = threading.Lock()

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.connection.maxdata):
            if not self.ready.wait(WRITE_TIMEOUT_S) or self.closed.is_set():
                raise ConnectionError("stream closed")
            self.ready.clear()
            self.connection.send(b"WRTE", self.local_id, self.remote_id,
                                 data[start:start + self.connection.maxdata])

    def close(self) -> None:
        """Close our end: CLSE to the peer, once, whoever closes first."""
        with self._close_lock:
            if self.closed.is_set():
                return
            self.closed.set()
        self.ready.set()
        self.connection.forget(self)
        self.connection.send(b"CLSE", self.local_id, self.remote_id)

    def peer_closed(self) -> None:
        """The peer closed the stream (or the connection ended); adbd answers a CLSE with its own."""
        with contextlib.suppress(OSError):
            self.close()
        self.inbox.put(None)
        self.on_close()


class _Connection:
    """One transport: the handshake, then messages dispatched to streams."""

    def __init__(self, emulator: AdbEmulator, sock: socket.socket):
        self.emulator, self.sock = emulator, sock
        self.settings = emulator.settings
        self.version = A_VERSION_MIN
        self.maxdata = 4096
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self._send_lock = threading.Lock()

    def drop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def send(self, command: bytes, arg0: int, arg1: int, data: bytes = b"") -> None:
        wire = _wire(command)
        header = struct.pack("<6I", wire, arg0, arg1, len(data), _checksum(data), wire ^ 0xFFFFFFFF)
        with self._send_lock:
            self.sock.sendall(header + data)

    def _recv_exact(self, length: int) -> bytes:
        buffer = bytearray()
        while len(buffer) < length:
            chunk = self.sock.recv(length - len(buffer))
            if not chunk:
                raise ConnectionError("peer closed the connection")
            buffer += chunk
        return bytes(buffer)

    def receive(self) -> tuple[bytes, int, int, bytes]:
        command, arg0, arg1, length, check, magic = struct.unpack("<6I", self._recv_exact(24))
        if magic != command ^ 0xFFFFFFFF:
            raise ConnectionError("bad message magic")
        data = self._recv_exact(length) if length else b""
        if self.version < A_VERSION_SKIP_CHECKSUM and _checksum(data) != check:
            raise ConnectionError("bad message checksum")
        return struct.pack("<I", command), arg0, arg1, data

    def forget(self, stream: _Stream) -> None:
        self.streams.pop(stream.local_id, None)

    def serve(self) -> None:
        try:
            if self._handshake():
                while True:
                    self._dispatch(*self.receive())
        except (ConnectionError, OSError):
            pass
        finally:
            for stream in list(self.streams.values()):
                stream.peer_closed()
            self.sock.close()
            self.emulator._forget(self)

    def _handshake(self) -> bool:
        command, version, maxdata, _ = self.receive()
        if command != b"CNXN":
            return False
        self.version = min(version, A_VERSION_SKIP_CHECKSUM)
        self.maxdata = min(maxdata, MAX_PAYLOAD)
        keys = self.settings.authorized_keys
        if keys is not None and not self._authenticate(keys):
            return False
        self.send(b"CNXN", self.version, self.maxdata, self.emulator.banner())
        return True

    def _authenticate(self, keys: list[bytes]) -> bool:
        """adbd's AUTH exchange: tokens signed by a known key, or a new key offered."""
        for _ in range(16):  # a client may try several keys; adbd bounds the tries too
            token = secrets.token_bytes(20)
            self.send(b"AUTH", AUTH_TOKEN, 0, token)
            command, kind, _, data = self.receive()
            if command != b"AUTH":
                return False
            if kind == AUTH_SIGNATURE:
                if any(verify_signature(key, token, data) for key in keys):
                    return True
                continue
            if kind == AUTH_RSAPUBLICKEY:
                if self.settings.accept_new_keys:
                    keys.append(data.rstrip(b"\0"))
                    return True
                # Nobody answers the "Allow USB debugging?" prompt: stay silent until the
                # client gives up and closes the connection.
                while True:
                    self.receive()
        return False

    def _dispatch(self, command: bytes, arg0: int, arg1: int, data: bytes) -> None:
        if command == b"OPEN":
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
            return
        stream = self.streams.get(arg1)
        if stream is None:
            return
        if command == b"WRTE":
            self.send(b"OKAY", stream.local_id, stream.remote_id)
            stream.inbox.put(data)
        elif command == b"OKAY":
            stream.ready.set()
        elif command == b"CLSE":
            stream.peer_closed()

    def _open(self, remote_id: int, destination: str) -> None:
        service, _, argument = destination.partition(":")
        options = service.split(",")
        if options[0] in ("shell", "exec") and argument:
            handler = lambda stream: self._shell(stream, argument, "v2" in options)  # noqa: E731
        elif service == "sync":
            handler = self._sync
        else:
            self.send(b"CLSE", 0, remote_id)
            return
        local_id, self.next_id = self.next_id, self.next_id + 1
        stream = _Stream(self, local_id, remote_id)
        self.streams[local_id] = stream
        self.send(b"OKAY", local_id, remote_id)
        thread = threading.Thread(target=self._run_service, args=(handler, stream), daemon=True)
        thread.start()

    def _run_service(self, handler: Callable[[_Stream], None], stream: _Stream) -> None:
        try:
            handler(stream)
        except (ConnectionError, OSError):
            self.drop()
            return
        with contextlib.suppress(OSError):
            stream.close()

    def _shell(self, stream: _Stream, command: str, v2: bool) -> None:
        self.emulator.commands.append(command)
        process = subprocess.Popen(
            ["sh", "-c", self.emulator.rewrite(command)], cwd=self.emulator.sandbox,
            env=self.emulator.shell_environment(), stdin=subprocess.PIPE if v2 else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if v2 else subprocess.STDOUT,
            start_new_session=True)
        stream.on_close = lambda: _kill_group(process)
        try:
            if not v2:
                _pump(process.stdout, stream.write)
                process.wait()
                return
            lock = threading.Lock()

            def packet(kind: int, data: bytes) -> None:
                with lock:
                    stream.write(struct.pack("<BI", kind, len(data)) + data)

            pumps = [threading.Thread(target=_pump, args=(pipe, lambda d, k=kind: packet(k, d)), daemon=True)
                     for pipe, kind in ((process.stdout, SHELL_STDOUT), (process.stderr, SHELL_STDERR))]
            feeder = threading.Thread(target=_feed_stdin, args=(stream, process), daemon=True)
            for thread in (*pumps, feeder):
                thread.start()
            for thread in pumps:
                thread.join()
            packet(SHELL_EXIT, bytes([process.wait() & 0xFF]))
        finally:
            _kill_group(process)
            process.wait()

    def _sync(self, stream: _Stream) -> None:
        reader = _Reader(stream)
        while True:
            header = reader.read(8)
            if header is None:
                return
            request, length = header[:4], struct.unpack("<I", header[4:])[0]
            if request == b"QUIT":
                return
            path = (reader.read(length) or b"").decode("utf-8", "replace")
            if request == b"STAT":
                stream.write(b"STAT" + self._stat(path))
            elif request == b"LIST":
                self._list(stream, path)
            elif request == b"SEND":
                if not self._receive_file(stream, reader, path):
                    return
            elif request == b"RECV":
                self._send_file(stream, path)
            else:
                _fail(stream, f"unknown sync request {request!r}")
                return

    def _stat(self, path: str) -> bytes:
        try:
            st = os.lstat(self.emulator.device_path(path))
        except OSError:
            return struct.pack("<3I", 0, 0, 0)
        return struct.pack("<3I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF, int(st.st_mtime))

    def _list(self, stream: _Stream, path: str) -> None:
        with contextlib.suppress(OSError):
            directory = self.emulator.device_path(path)
            for name in [".", "..", *sorted(os.listdir(directory))]:
                st = os.lstat(directory / name)
                encoded = name.encode()
                stream.write(b"DENT" + struct.pack("<4I", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                                                   int(st.st_mtime), len(encoded)) + encoded)
        stream.write(b"DONE" + struct.pack("<4I", 0, 0, 0, 0))

    def _receive_file(self, stream: _Stream, reader: _Reader, spec: str) -> bool:
        """SEND: DATA blocks until DONE; False when the connection was dropped on purpose."""
        path, _, mode_text = spec.rpartition(",")
        try:
            target = self.emulator.device_path(path)
            mode = int(mode_text or "33188")  # decimal st_mode, as adb sends it
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "wb")  # noqa: SIM115  closed below on every path
        except (OSError, ValueError) as exc:
            _fail(stream, f"cannot create {path}: {exc}")
            return False
        received = 0
        with out:
            while True:
                header = reader.read(8)
                if header is None:
                    return False
                kind, length = header[:4], struct.unpack("<I", header[4:])[0]
                if kind == b"DONE":
                    break
                block = reader.read(length) if kind == b"DATA" else None
                if block is None:
                    _fail(stream, f"unexpected {kind!r} in SEND")
                    return False
                out.write(block)
                received += len(block)
                limit = self.settings.drop_push_after
                if limit is not None and received >= limit:
                    self.drop()  # the cable is pulled mid-push
                    return False
        os.chmod(target, stat.S_IMODE(mode))
        os.utime(target, (length, length))
        stream.write(b"OKAY" + struct.pack("<I", 0))
        return True

    def _send_file(self, stream: _Stream, path: str) -> None:
        try:
            source = open(self.emulator.device_path(path), "rb")  # noqa: SIM115  closed below
        except OSError as exc:
            _fail(stream, f"{path}: {exc.strerror}")
            return
        with source:
            while block := source.read(SYNC_DATA_MAX):
                stream.write(b"DATA" + struct.pack("<I", len(block)) + block)
        stream.write(b"DONE" + struct.pack("<I", 0))


class _Reader:
    """Exact reads over the bytes a stream receives, however the peer split them."""

    def __init__(self, stream: _Stream):
        self.stream = stream
        self.buffer = bytearray()

    def read(self, length: int) -> Optional[bytes]:
        while len(self.buffer) < length:
            try:
                chunk = self.stream.inbox.get(timeout=WRITE_TIMEOUT_S)
            except queue.Empty:
                return None
            if chunk is None:
                return None
            self.buffer += chunk
        data = bytes(self.buffer[:length])
        del self.buffer[:length]
        return data


def _fail(stream: _Stream, message: str) -> None:
    encoded = message.encode()
    stream.write(b"FAIL" + struct.pack("<I", len(encoded)) + encoded)


def _pump(pipe, write: Callable[[bytes], None]) -> None:
    fd = pipe.fileno()
    while chunk := os.read(fd, 65536):
        write(chunk)


def _feed_stdin(stream: _Stream, process: subprocess.Popen) -> None:
    """shell,v2 stdin packets into the process; closes its stdin when the peer does."""
    reader = _Reader(stream)
    with contextlib.suppress(OSError):
        while (header := reader.read(5)) is not None:
            kind, length = struct.unpack("<BI", header)
            data = reader.read(length) if length else b""
            if data is None:
                break
            if kind == SHELL_STDIN:
                process.stdin.write(data)
                process.stdin.flush()
            elif kind == SHELL_CLOSE_STDIN:
                break
    with contextlib.suppress(OSError):
        process.stdin.close()


def _kill_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def make_device_tree(sandbox: Path, cpus: int = 8, temps_milli_c: Optional[dict[str, int]] = None) -> None:
    """The /sys and /proc files an Android phone offers for facts and device state."""
    cpu_root = sandbox / "sys" / "devices" / "system" / "cpu"
    for index in range(cpus):
        freq = cpu_root / f"cpu{index}" / "cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        big = index >= cpus // 2
        (freq / "cpuinfo_max_freq").write_text("2803200\n" if big else "1804800\n")
        (freq / "scaling_cur_freq").write_text("2400000\n" if big else "1200000\n")
        (freq / "scaling_governor").write_text("schedutil\n")
    (cpu_root / "possible").write_text(f"0-{cpus - 1}\n")
    for index, (kind, milli) in enumerate((temps_milli_c or {"cpu-0-0-usr": 41500, "battery": 30000}).items()):
        zone = sandbox / "sys" / "class" / "thermal" / f"thermal_zone{index}"
        zone.mkdir(parents=True, exist_ok=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{milli}\n")
    battery = sandbox / "sys" / "class" / "power_supply" / "battery"
    battery.mkdir(parents=True, exist_ok=True)
    (battery / "temp").write_text("312\n")
    proc = sandbox / "proc"
    proc.mkdir(parents=True, exist_ok=True)
    (proc / "meminfo").write_text("MemTotal:        7833276 kB\nMemFree:          512000 kB\n")
    (proc / "cpuinfo").write_text("".join(
        f"processor\t: {i}\nBogoMIPS\t: 38.40\nCPU implementer\t: 0x41\n"
        f"CPU part\t: {'0xd44' if i >= cpus // 2 else '0xd05'}\n\n" for i in range(cpus))
        + "Hardware\t: Qualcomm Technologies, Inc SM8250\n")
    (proc / "version").write_text("Linux version 4.19.157-perf (build@host) #1 SMP PREEMPT\n")
    (sandbox / "data" / "local" / "tmp").mkdir(parents=True, exist_ok=True)

