"""CURVE key files, read and written the same way by agent and controller.

Key files are pyzmq certificate files: `NAME.key` holds the public key, `NAME.key_secret`
both.
"""

from __future__ import annotations

import os
from pathlib import Path

import zmq.auth


class KeyFileError(ValueError):
    """A key file that is missing or unreadable."""


def generate(directory: os.PathLike, name: str, overwrite: bool = False) -> tuple[Path, Path]:
    """Create `NAME.key` and `NAME.key_secret` in `directory`; returns (public, secret) paths."""
    directory = Path(directory)
    public, secret = directory / f"{name}.key", directory / f"{name}.key_secret"
    if not overwrite and (public.exists() or secret.exists()):
        raise KeyFileError(f"{secret} already exists; refusing to replace a key pair (use --force)")
    directory.mkdir(parents=True, exist_ok=True)
    # A replaced file would keep its old mode: remove it, so the new one is created private.
    secret.unlink(missing_ok=True)
    public.unlink(missing_ok=True)
    old_umask = os.umask(0o077)  # the secret file must never be readable by others
    try:
        zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old_umask)
    secret.chmod(0o600)
    public.chmod(0o644)
    return public, secret


def check_private(path: os.PathLike) -> None:
    """KeyFileError unless only its owner may read the secret key file at `path`."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise KeyFileError(f"cannot read secret key {path}: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise KeyFileError(f"secret key {path} is readable by others (mode {mode & 0o777:o}); "
                           f"`chmod 600 {path}` or generate a new pair")


def load_secret(path: os.PathLike) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a `.key_secret` file."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read secret key {path}: {exc}") from None
    if not secret:
        raise KeyFileError(f"{path} holds no secret key (a `.key_secret` file is needed)")
    return public, secret


def load_public(path: os.PathLike) -> bytes:
    """The z85 public key from a `.key` (or `.key_secret`) file."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc}") from None
    if not public or len(public) != 40:
        raise KeyFileError(f"{path} holds no CURVE public key")
    return public
