"""Where the controller keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import platformdirs

APP = "edgebench"


def data_dir() -> Path:
    """The user's edgebench data directory (created on demand)."""
    path = Path(platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db() -> Union[str, Path]:
    """The results database: `EDGEBENCH_DB` (a path or a URL, kept as written), else
    `results.sqlite` in the data directory."""
    # A URL must stay a string: Path() would fold `postgresql://` into `postgresql:/`.
    return os.environ.get("EDGEBENCH_DB") or data_dir() / "results.sqlite"


def key_dir() -> Path:
    """Where `controller keys generate` puts the controller's own CURVE key pair by default."""
    return Path(platformdirs.user_config_dir(APP))


def user_profiles_dir() -> Path:
    """The user's own device profiles, looked up after `EDGEBENCH_PROFILES` (not created)."""
    return Path(platformdirs.user_config_dir(APP)) / "profiles"


def local_agent_dir() -> Path:
    """Data directory of the agent `--device local` starts; its model cache persists."""
    return data_dir() / "local-agent"
