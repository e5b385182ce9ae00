"""Device profiles: `device_profiles/NAME.toml`, one per kind of device."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

TRANSPORTS = ("local", "zmq", "adb")

_KNOWN_KEYS = {
    "name", "description", "transport", "address", "server_public_key", "client_secret_key",
    "threads", "delegates", "delegate_options", "thermal", "adb_address", "adb_serial", "via",
    "benchmark_binary", "taskset",
}


class ProfileError(ValueError):
    """A profile that is missing or cannot be used."""


@dataclass(frozen=True)
class Thermal:
    cooldown_below_c: Optional[float] = None
    max_cooldown_s: float = 300.0


@dataclass(frozen=True)
class Profile:
    """A device kind: how to reach it and what to measure on it by default."""

    name: str
    path: Path
    transport: str
    description: str = ""
    address: Optional[str] = None
    threads: list[int] = field(default_factory=lambda: [1])
    delegates: list[str] = field(default_factory=lambda: ["xnnpack"])
    delegate_options: dict[str, dict] = field(default_factory=dict)
    thermal: Thermal = Thermal()
    server_public_key: Optional[Path] = None
    client_secret_key: Optional[Path] = None


def search_dirs() -> list[Path]:
    """Profile directories in lookup order: `EDGEBENCH_PROFILES`, then the shipped ones."""
    dirs = []
    env = os.environ.get("EDGEBENCH_PROFILES")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(str(resources.files("device_profiles"))))
    return dirs


def available() -> list[str]:
    """Names of all profiles found, first occurrence wins."""
    names: list[str] = []
    for directory in search_dirs():
        for path in sorted(directory.glob("*.toml")):
            if path.stem not in names:
                names.append(path.stem)
    return names


def load(name: str) -> Profile:
    """The profile called `name`; ProfileError with one clear line otherwise."""
    for directory in search_dirs():
        path = directory / f"{name}.toml"
        if path.is_file():
            return parse(path)
    raise ProfileError(
        f"no device profile {name!r} (looked in {', '.join(str(d) for d in search_dirs())}; "
        f"known: {', '.join(available()) or 'none'})")


def parse(path: Path) -> Profile:
    """Read one profile file; relative paths inside it are relative to the file."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{path}: {exc}") from None
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    transport = data.get("transport", "zmq")
    if transport not in TRANSPORTS:
        raise ProfileError(f"{path}: transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    if transport == "zmq" and not data.get("address"):
        raise ProfileError(f"{path}: a zmq profile needs an address (tcp://HOST:PORT)")
    threads = data.get("threads", [1])
    if not threads or not all(isinstance(t, int) and t >= 1 for t in threads):
        raise ProfileError(f"{path}: threads must be a list of positive integers")

    try:
        thermal = Thermal(**data.get("thermal", {}))
    except TypeError:
        raise ProfileError(f"{path}: [thermal] takes cooldown_below_c and max_cooldown_s") from None

    def relative(key: str) -> Optional[Path]:
        value = data.get(key)
        return (path.parent / value) if value else None

    return Profile(
        name=data.get("name", path.stem),
        path=path,
        transport=transport,
        description=data.get("description", ""),
        address=data.get("address"),
        threads=list(threads),
        delegates=list(data.get("delegates", ["xnnpack"])),
        delegate_options=dict(data.get("delegate_options", {})),
        thermal=thermal,
        server_public_key=relative("server_public_key"),
        client_secret_key=relative("client_secret_key"),
    )
