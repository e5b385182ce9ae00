"""Content-addressed files on the phone: pushed once, verified by size and hash before use.

Files live under `WORKDIR` named by their sha256, so a file already there with the right
size and hash is never pushed again. A push goes to `NAME.part`, is verified on the
phone (adb-shell can lose data on short socket writes), and only then renamed.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from agent.android.adb import AdbError, Phone

WORKDIR = "/data/local/tmp/edgebench"


@dataclass(frozen=True)
class LocalFile:
    """A file on the agent and what the phone's copy must match."""

    path: Path
    sha256: str
    size: int

    def md5(self) -> str:
        """The MD5 of the pushed bytes, as the phone's `md5sum` prints it."""
        digest = hashlib.md5(usedforsecurity=False)  # old phones have md5sum but no sha256sum
        with open(self.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


@dataclass(frozen=True)
class RemoteCheck:
    """What the phone reports about a file: size, and a sha256 or md5 digest if it has a tool."""

    size: Optional[int]
    digest: Optional[str]


def remote_path(kind: str, sha256: str, suffix: str = "") -> str:
    """Where a file of `kind` ("bin" or "models") with this content lives on the phone."""
    return f"{WORKDIR}/{kind}/{sha256}{suffix}"


def check_command(path: str) -> str:
    """A device command printing the file's size, then its sha256 (or md5) digest line."""
    p = shlex.quote(path)
    return (f"stat -c %s {p} 2>/dev/null || wc -c < {p} 2>/dev/null; "
            f"(sha256sum {p} || toybox sha256sum {p} || md5sum {p}) 2>/dev/null")


def parse_check(output: str) -> RemoteCheck:
    """Size and digest from the output of `check_command`."""
    size, digest = None, None
    for line in output.splitlines():
        words = line.split()
        if not words:
            continue
        if size is None and words[0].isdigit() and len(words) == 1:
            size = int(words[0])
        elif len(words[0]) in (32, 64) and all(c in "0123456789abcdef" for c in words[0].lower()):
            digest = words[0].lower()
            break
    return RemoteCheck(size=size, digest=digest)


def matches(local: LocalFile, remote: RemoteCheck) -> bool:
    """Whether the phone's copy is the local file (by size alone when the phone has no hash tool)."""
    if remote.size != local.size:
        return False
    if remote.digest is None:
        return True
    if len(remote.digest) == 64:
        return remote.digest == local.sha256
    return remote.digest == local.md5()


def ensure(phone: Phone, local: LocalFile, remote: str, mode: int = 0o644) -> bool:
    """Make `remote` on the phone hold exactly `local`; True when it had to be pushed."""
    if matches(local, parse_check(phone.shell(check_command(remote)).output)):
        return False
    directory = remote.rsplit("/", 1)[0]
    made = phone.shell(f"mkdir -p {shlex.quote(directory)}")
    if made.exit_code != 0:
        raise AdbError(f"{phone.name}: cannot create {directory}: {_first_line(made.output)}")
    part = remote + ".part"
    phone.push(local.path, part, mode)
    found = parse_check(phone.shell(check_command(part)).output)
    if not matches(local, found):
        phone.shell(f"rm -f {shlex.quote(part)}")
        raise AdbError(
            f"{phone.name}: pushed {local.path.name} ({local.size} bytes) but the phone holds "
            f"{found.size if found.size is not None else 'no'} bytes"
            + (f" with digest {found.digest}" if found.digest else "") + ": push corrupted")
    moved = phone.shell(f"mv -f {shlex.quote(part)} {shlex.quote(remote)}")
    if moved.exit_code != 0:
        raise AdbError(f"{phone.name}: cannot rename {part}: {_first_line(moved.output)}")
    return True


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "no output")
