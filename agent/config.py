"""The agent's configuration: `agent.toml`, command-line overrides, and the rules it must obey."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union
from urllib.parse import urlsplit

import msgspec

from agent.formats.tomlfile import TomlFileError, read_toml
from agent.trust import is_loopback_host

DEFAULT_BIND = "tcp://127.0.0.1:5555"
# Delegate libraries an agent may load when its configuration names none: the usual
# install places of the Coral Edge TPU, Arm NN and TFLite GPU delegates.
DEFAULT_DELEGATE_LIBRARIES = (
    "/usr/lib/libedgetpu.so.1", "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1",
    "/usr/lib/arm-linux-gnueabihf/libedgetpu.so.1", "/usr/lib/libarmnnDelegate.so",
    "/usr/local/lib/libarmnnDelegate.so", "/usr/lib/libtensorflowlite_gpu_delegate.so",
    "/usr/local/lib/libtensorflowlite_gpu_delegate.so",
)
DEFAULT_CONFIG_PATH = Path("/etc/edgebench/agent.toml")
LOG_LEVELS = ("debug", "info", "warning", "error")
# The default cell memory limit leaves the agent and the system this much of the device's
# RAM, and at most this share goes to a cell; below the floor no runtime even starts.
SYSTEM_RESERVE_MB = 512
CELL_SHARE = 0.75
MIN_CELL_MEMORY_MB = 128


class ConfigError(ValueError):
    """A configuration the agent must not serve with; the message says what to change."""


class AgentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every `agent.toml` setting (docs/contract.md, "Agent configuration")."""

    bind: str = DEFAULT_BIND
    data_dir: Optional[str] = None
    cache_quota_bytes: Optional[int] = None
    secret_key: Optional[str] = None
    allowed_keys_dir: Optional[str] = None
    insecure: bool = False
    log_level: str = "info"
    # What a job may make the agent load or reach (the trust model, README): delegate
    # libraries by path, every file of a directory, or a bare name the loader resolves;
    # phones by USB serial or HOST:PORT. None: USB phones and loopback addresses only.
    delegate_libraries: Union[str, list[str]] = msgspec.field(default_factory=lambda: list(DEFAULT_DELEGATE_LIBRARIES))
    phones: Optional[list[str]] = None
    # A cell whose process grows past this resident size is killed (None: a share of the RAM).
    cell_memory_limit_mb: Optional[int] = None
    # Not a file setting: where /proc and /sys are read from (tests mirror a device there).
    root: str = "/"

    @property
    def data_path(self) -> Path:
        """The data directory, defaulting by who runs the agent."""
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    def check(self) -> None:
        """Raise ConfigError unless this configuration is safe to serve."""
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f"log_level must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.cache_quota_bytes is not None and self.cache_quota_bytes <= 0:
            raise ConfigError("cache_quota_bytes must be a positive number of bytes")
        if self.cell_memory_limit_mb is not None and self.cell_memory_limit_mb < MIN_CELL_MEMORY_MB:
            raise ConfigError(f"cell_memory_limit_mb must be at least {MIN_CELL_MEMORY_MB} (the runtime alone "
                              f"takes about 100 MB), not {self.cell_memory_limit_mb}")
        libraries = [self.delegate_libraries] if isinstance(self.delegate_libraries, str) else self.delegate_libraries
        if not all(isinstance(entry, str) and entry.strip() for entry in libraries):
            raise ConfigError("delegate_libraries must be a directory or a list of library paths")
        if self.phones is not None and not all(isinstance(p, str) and p.strip() for p in self.phones):
            raise ConfigError("phones must be a list of USB serials or HOST:PORT addresses")
        loopback = is_loopback_endpoint(self.bind)
        if self.insecure:
            if not loopback:
                raise ConfigError(
                    f"refusing to serve {self.bind} without authentication: insecure mode is only "
                    "for loopback endpoints (tcp://127.0.0.1:PORT); set secret_key and allowed_keys_dir")
            return
        if self.secret_key is None or self.allowed_keys_dir is None:
            where = "a loopback endpoint" if loopback else self.bind
            raise ConfigError(
                f"refusing to serve {where} without CURVE keys: set secret_key and allowed_keys_dir "
                "(create keys with `agent keys generate DIR`)"
                + ("; or pass --insecure for a loopback-only agent" if loopback else ""))


def load(path: Optional[os.PathLike], **overrides) -> AgentConfig:
    """The configuration in `path` (if any) with non-None `overrides` applied on top."""
    data: dict = {}
    if path is not None:
        try:
            data = read_toml(path)
        except TomlFileError as exc:
            raise ConfigError(str(exc)) from None
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return msgspec.convert(data, AgentConfig, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{path or 'configuration'}: {exc}") from None


def cell_memory_limit_mb(configured: Optional[int], device_memory_mb: Optional[int]) -> Optional[int]:
    """The memory limit of each cell: the configured one, else a share of the device's RAM
    that leaves the agent and the system room (None when the RAM is unknown)."""
    if configured is not None:
        return configured
    if not device_memory_mb:
        return None
    share = min(device_memory_mb * CELL_SHARE, device_memory_mb - SYSTEM_RESERVE_MB)
    return max(MIN_CELL_MEMORY_MB, int(share))


def is_loopback_endpoint(endpoint: str) -> bool:
    """True for tcp endpoints on a loopback address (and ipc/inproc, which never leave)."""
    parts = urlsplit(endpoint)
    if parts.scheme in ("ipc", "inproc"):
        return True
    return is_loopback_host(parts.hostname or "")


def default_data_dir() -> Path:
    """Where an agent keeps its cache and outbox when neither config nor flags say."""
    if os.geteuid() == 0:
        return Path("/var/lib/edgebench")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "edgebench" / "agent"


def default_config_text(data_dir: Path, config_dir: Path) -> str:
    """The `agent.toml` that `agent install-service` writes when none exists."""
    return (
        "# edgebench agent configuration (see `agent serve --help`).\n"
        'bind = "tcp://0.0.0.0:5555"\n'
        f'data_dir = "{data_dir}"\n'
        "cache_quota_bytes = 2_000_000_000\n"
        f'secret_key = "{config_dir}/agent.key_secret"\n'
        f'allowed_keys_dir = "{config_dir}/controllers.d"   # public keys of allowed controllers\n'
        "insecure = false\n"
        'log_level = "info"\n'
        "# A cell (one model measured in its own process) above this resident size is killed and\n"
        "# fails with \"memory limit\" (default: 75 % of the RAM, leaving at least 512 MB).\n"
        "# cell_memory_limit_mb = 1500\n"
        "# Delegate libraries jobs may load (a directory or a list; default: the usual Edge TPU,\n"
        "# Arm NN and GPU delegate paths) and phones the agent may open (default: USB and loopback).\n"
        '# delegate_libraries = ["/usr/lib/aarch64-linux-gnu/libedgetpu.so.1"]\n'
        '# phones = ["R58M123ABCD", "127.0.0.1:5555"]\n'
    )
