"""Device profiles: `device_profiles/NAME.toml`, one per kind of device."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

import msgspec

from agent.formats.tomlfile import TomlFileError, read_toml
from agent.wire.protocol import CellSpec
from controller import locations

TRANSPORTS = ("local", "zmq", "adb")

_KNOWN_KEYS = {
    "name", "description", "transport", "address", "server_public_key", "client_secret_key",
    "threads", "delegates", "delegate_options", "thermal", "adb_address", "adb_serial", "via",
    "benchmark_binary", "taskset", "cpu_affinity", "governor", "op_profile",
}


class ProfileError(ValueError):
    """A profile that is missing or cannot be used."""


@dataclass(frozen=True)
class Thermal:
    """The profile's cooldown discipline before each cell."""

    cooldown_below_c: Optional[float] = None
    max_cooldown_s: float = 300.0


@dataclass(frozen=True)
class AndroidProfile:
    """A phone driven through ADB by the agent named by `via` ("local" or a zmq profile)."""

    benchmark_binary: Path
    adb_address: Optional[str] = None
    adb_serial: Optional[str] = None
    via: str = "local"
    taskset: Optional[str] = None


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
    android: Optional[AndroidProfile] = None
    cpu_affinity: list[int] = field(default_factory=list)
    governor: Optional[str] = None
    # Measure a per-op profile of every cell by default (`controller run --op-profile`).
    op_profile: bool = False

    def libraries(self) -> list[str]:
        """Every delegate library the profile names."""
        return [str(options["library"]) for options in self.delegate_options.values() if options.get("library")]

    def cell_spec(self, spec: CellSpec, require_full_delegation: bool = False,
                  op_profile: bool = False) -> CellSpec:
        """`spec` with what a cell on this device needs beyond the matrix settings: the
        delegate's library and options, the cores to pin to, the cooldown, and whether to
        profile per op (asked for, or this profile's default)."""
        options = dict(self.delegate_options.get(spec.delegate, {}))
        library = options.pop("library", None)
        return msgspec.structs.replace(
            spec, delegate_library=str(library) if library else None,
            delegate_options={str(k): str(v) for k, v in options.items()},
            require_full_delegation=require_full_delegation, cpu_affinity=list(self.cpu_affinity),
            cooldown_below_c=self.thermal.cooldown_below_c, max_cooldown_s=self.thermal.max_cooldown_s,
            op_profile=op_profile or self.op_profile)


def search_dirs() -> list[Path]:
    """Profile directories in lookup order: `EDGEBENCH_PROFILES`, the user's own
    (`~/.config/edgebench/profiles` on Linux), then the shipped ones."""
    dirs = []
    env = os.environ.get("EDGEBENCH_PROFILES")
    if env:
        dirs.append(Path(env))
    dirs.append(locations.user_profiles_dir())
    dirs.append(Path(str(resources.files("device_profiles"))))
    return dirs


def available() -> list[str]:
    """Names of all profiles found, first occurrence wins."""
    names: list[str] = []
    for directory in search_dirs():
        for path in sorted(directory.glob("*.toml")):
            if path.stem not in names and path.is_file():  # as `load` finds them
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
        data = read_toml(path)
    except TomlFileError as exc:
        raise ProfileError(str(exc)) from None
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ProfileError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
    _check_types(path, data)
    transport = data.get("transport", "zmq")
    if transport not in TRANSPORTS:
        raise ProfileError(f"{path}: transport must be one of {', '.join(TRANSPORTS)}, not {transport!r}")
    if transport == "zmq" and not data.get("address"):
        raise ProfileError(f"{path}: a zmq profile needs an address (tcp://HOST:PORT)")
    if data.get("address") is not None and not _ENDPOINT.fullmatch(data["address"]):
        raise ProfileError(f"{path}: address must be a ZeroMQ endpoint such as tcp://HOST:PORT, "
                           f"not {data['address'][:80]!r}")
    threads = data.get("threads", [1])
    if not all(t >= 1 for t in threads):
        raise ProfileError(f"{path}: threads must be a list of positive integers")

    thermal = _thermal(path, data.get("thermal", {}))

    def relative(key: str) -> Optional[Path]:
        value = data.get(key)
        return (path.parent / value) if value else None

    android = _android(path, data, relative("benchmark_binary")) if transport == "adb" else None
    affinity = data.get("cpu_affinity", [])
    if not all(isinstance(c, int) and c >= 0 for c in affinity):
        raise ProfileError(f"{path}: cpu_affinity must be a list of CPU numbers")
    op_profile = data.get("op_profile", False)
    if not isinstance(op_profile, bool):
        raise ProfileError(f"{path}: op_profile must be true or false")
    delegate_options = data.get("delegate_options", {})
    if not all(isinstance(v, dict) for v in delegate_options.values()):
        raise ProfileError(f"{path}: [delegate_options.NAME] must be tables (library = ..., options)")

    return Profile(
        name=data.get("name", path.stem),
        path=path,
        transport=transport,
        description=data.get("description", ""),
        address=data.get("address"),
        threads=list(threads),
        delegates=list(data.get("delegates", ["xnnpack"])),
        delegate_options={name: dict(options) for name, options in delegate_options.items()},
        thermal=thermal,
        server_public_key=relative("server_public_key"),
        client_secret_key=relative("client_secret_key"),
        android=android,
        cpu_affinity=list(affinity),
        governor=data.get("governor"),
        op_profile=op_profile,
    )


_ENDPOINT = re.compile(r"(tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+|\*):(\d{1,5}|\*)|ipc://\S+)")
# Keys whose value must be a string, and those that must be a list of strings.
_STRINGS = ("name", "description", "transport", "address", "server_public_key", "client_secret_key",
            "adb_address", "adb_serial", "via", "benchmark_binary", "governor")
_LISTS = {"threads": int, "delegates": str, "cpu_affinity": int}


def _check_types(path: Path, data: dict) -> None:
    """Every key's TOML type, named in the message: `delegates = 5` is caught here."""
    for key in _STRINGS:
        if key in data and (not isinstance(data[key], str) or not data[key].strip()):
            raise ProfileError(f"{path}: {key} must be a non-empty string, not {data[key]!r:.80}")
    for key, kind in _LISTS.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise ProfileError(f"{path}: {key} must be a list of {'integers' if kind is int else 'strings'}, "
                               f"not {value!r:.80}")
        if key != "cpu_affinity" and not value:
            raise ProfileError(f"{path}: {key} must not be empty")
    if not isinstance(data.get("thermal", {}), dict):
        raise ProfileError(f"{path}: [thermal] must be a table")
    if not isinstance(data.get("delegate_options", {}), dict):
        raise ProfileError(f"{path}: [delegate_options] must be a table")


def _thermal(path: Path, table: dict) -> Thermal:
    """The [thermal] table: temperatures and seconds, finite numbers."""
    unknown = set(table) - {"cooldown_below_c", "max_cooldown_s"}
    if unknown:
        raise ProfileError(f"{path}: [thermal] takes cooldown_below_c and max_cooldown_s, "
                           f"not {', '.join(sorted(unknown))}")
    for key, low, high in (("cooldown_below_c", -50.0, 150.0), ("max_cooldown_s", 0.0, 86_400.0)):
        value = table.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ProfileError(f"{path}: [thermal] {key} must be a number from {low:g} to {high:g}, "
                               f"not {value!r:.80}")
    return Thermal(**{key: float(value) for key, value in table.items()})


def _android(path: Path, data: dict, binary: Optional[Path]) -> AndroidProfile:
    """The adb part of a profile, checked."""
    if not data.get("adb_address") and not data.get("adb_serial"):
        raise ProfileError(f"{path}: an adb profile needs adb_address (HOST:PORT) or adb_serial (USB)")
    if binary is None:
        raise ProfileError(f"{path}: an adb profile needs benchmark_binary (the benchmark_model for the phone)")
    taskset = data.get("taskset")
    if taskset is not None and not re.fullmatch(r"(0x)?[0-9a-fA-F]+", str(taskset)):
        raise ProfileError(f"{path}: taskset must be a hexadecimal CPU mask such as \"f0\", not {taskset!r}")
    via = data.get("via", "local")
    if via == path.stem:
        raise ProfileError(f"{path}: via must name the agent's profile, not this one")
    return AndroidProfile(benchmark_binary=binary, adb_address=data.get("adb_address"),
                          adb_serial=data.get("adb_serial"), via=via,
                          taskset=str(taskset) if taskset is not None else None)


def load_fleet(path: str) -> list[str]:
    """Device names from a fleet file: `devices = ["pi4", "pi5", "pixel7"]` in TOML."""
    try:
        data = read_toml(path)
    except TomlFileError as exc:
        raise ProfileError(f"fleet file: {exc}") from None
    devices = data.get("devices")
    if not isinstance(devices, list) or not devices or not all(isinstance(d, str) and d for d in devices):
        raise ProfileError(f"fleet file {path}: expected devices = [\"name\", ...] with at least one name")
    return devices
