"""Reaching a device's agent: this host's own, one over ZeroMQ (with CURVE), or a phone's."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

from agent.wire.keys import KeyFileError
from controller import locations, profiles
from controller.client import AgentClient, CurveKeys, load_curve_keys
from controller.local_agent import LocalAgent
from controller.profiles import Profile, ProfileError

CONNECT_TIMEOUT_S = 15.0


# One local agent per data directory: devices of one run that need it take turns.
_LOCAL_AGENT = threading.Lock()


@contextlib.contextmanager
def connect(profile: Profile, phone: Optional[str] = None) -> Iterator[AgentClient]:
    """A client connected to the profile's agent, starting a local one when needed.

    The local agent is this user's own: it may load the libraries its profile names and
    open the `phone` (an address or serial) a phone profile drives through it.
    """
    if profile.transport == "local":
        allowed = [arg for library in profile.libraries() for arg in ("--delegate-library", library)]
        allowed += ["--phone", phone] if phone else []
        with _LOCAL_AGENT, LocalAgent(locations.local_agent_dir(), allowed) as agent, \
                AgentClient(agent.endpoint) as client:
            yield client
    elif profile.transport == "zmq":
        with AgentClient(profile.address, curve=curve_keys(profile)) as client:
            yield client
    elif profile.transport == "adb" and profile.android is not None:
        # A phone is measured by the agent its profile names: this host's or a Pi's.
        via = profiles.load(profile.android.via)
        if via.transport == "adb":
            raise ProfileError(f"device {profile.name}: via {via.name!r} is a phone, not an agent")
        with connect(via, profile.android.adb_address or profile.android.adb_serial) as client:
            yield client
    else:
        raise ProfileError(f"device {profile.name}: transport {profile.transport!r} is not supported")


def curve_keys(profile: Profile) -> Optional[CurveKeys]:
    """CURVE keys for a zmq profile that names the agent's public key, else None (plain).

    The agent's key is checked first: a profile naming a file that is not there is the
    profile's mistake, whatever the state of this host's own key pair.
    """
    if profile.server_public_key is None:
        return None
    # Callers put "device NAME:" before these messages; the profile file names the rest.
    if not profile.server_public_key.is_file():
        raise ProfileError(f"{profile.path}: server_public_key {profile.server_public_key} is not a file "
                           "(the agent's public key: copy the .key file `agent keys generate` made on the device)")
    secret = profile.client_secret_key or locations.key_dir() / "controller.key_secret"
    if profile.client_secret_key is not None and not Path(secret).is_file():
        raise ProfileError(f"{profile.path}: client_secret_key {secret} is not a file")
    if not Path(secret).exists():
        raise ProfileError(f"device {profile.name}: no controller key pair at {secret} "
                           "(create one with `controller keys generate`)")
    try:
        return load_curve_keys(profile.server_public_key, secret)
    except KeyFileError as exc:
        raise ProfileError(f"device {profile.name}: {exc}") from None
