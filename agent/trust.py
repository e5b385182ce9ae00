"""What a job may make the agent load or reach: only what the agent's own configuration names.

A controller that passed authentication may push models and run cells. It may not make
the agent load code of its choosing (delegate libraries come from `delegate_libraries`
in agent.toml, never from the data directory where uploads land) nor open connections to
hosts the configuration does not name (`phones`; by default USB phones and loopback).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Optional, Union

from agent.wire.protocol import AndroidTarget
from agent.wire.text import printable, quote


class NotAllowed(ValueError):
    """A library or phone outside the agent's configuration; the message says which setting."""


def _entries(allowed: Union[str, list[str]]) -> list[str]:
    return [allowed] if isinstance(allowed, str) else list(allowed)


def _inside(path: Path, directory: Path) -> bool:
    return path == directory or directory in path.parents


def delegate_library(requested: str, allowed: Union[str, list[str]], data_dir: Path) -> str:
    """The library to load for a job that asks for `requested`, or NotAllowed.

    `requested` may be a path or a bare file name; it is granted when it is one of the
    allowed entries (same path, or a file inside an allowed directory) or the file name of
    one. What is granted is the configuration's own entry, never the job's string.
    """
    if printable(requested) != requested:
        raise NotAllowed(f"delegate library {quote(requested)} holds a control character; nothing was loaded")
    data = Path(os.path.realpath(data_dir))
    granted: Optional[str] = None
    real = Path(os.path.realpath(requested)) if os.path.isabs(requested) else None
    for entry in _entries(allowed):
        entry_real = Path(os.path.realpath(entry)) if os.path.isabs(entry) else None
        if requested == entry or (real is not None and real == entry_real):
            granted = entry
        elif entry_real is not None and os.path.isdir(entry_real):
            if real is not None and _inside(real, entry_real):
                granted = str(real)
            elif "/" not in requested and os.path.isfile(entry_real / requested):
                granted = str(entry_real / requested)
        elif "/" not in requested and os.path.basename(entry) == requested:
            granted = entry
        if granted is not None:
            break
    if granted is None:
        raise NotAllowed(f"delegate library {quote(requested)!r} is not in this agent's delegate_libraries "
                         "(agent.toml); uploaded files are never loaded")
    if os.path.isabs(granted) and _inside(Path(os.path.realpath(granted)), data):
        raise NotAllowed(f"delegate library {quote(requested)!r} lies in the agent's data directory; "
                         "uploaded files are never loaded (delegate_libraries)")
    return granted


def is_loopback_host(host: str) -> bool:
    """True for `localhost` and loopback addresses (IPv4 or IPv6, bracketed or not)."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_phone(target: AndroidTarget, phones: Optional[list[str]]) -> None:
    """NotAllowed unless the configuration lets the agent open this phone."""
    if target.address:
        named = target.address
        host = target.address.rpartition(":")[0] or target.address
        if phones is None and is_loopback_host(host):
            return
    else:
        named = target.serial or ""
        if phones is None:
            return  # USB phones are plugged into this device: allowed unless the list says otherwise
    if phones is not None and named in phones:
        return
    allowed = "by default only USB phones and loopback addresses" if phones is None else "allowed: " + ", ".join(phones)
    raise NotAllowed(f"phone {quote(named)!r} is not in this agent's phones (agent.toml); {allowed}")
