"""Where the controller keeps its files by default."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "edgebench"


def data_dir() -> Path:
    """The user's edgebench data directory (created on demand)."""
    path = Path(platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_db() -> Path:
    """The results database: `EDGEBENCH_DB`, else `results.sqlite` in the data directory."""
    env = os.environ.get("EDGEBENCH_DB")
    return Path(env) if env else data_dir() / "results.sqlite"


def key_dir() -> Path:
    """Where `controller keys generate` puts the controller's own CURVE key pair by default."""
    return Path(platformdirs.user_config_dir(APP))


def local_agent_dir() -> Path:
    """Data directory of the agent `--device local` starts; its model cache persists."""
    return data_dir() / "local-agent"
