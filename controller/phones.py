"""The controller's part for phones: the benchmark binary sent, the target named, the facts read.

A phone is driven by the agent its profile names with `via`; the controller sends that
agent the benchmark binary (content-addressed, like models) and asks it for the phone's
facts, so a phone's run carries the same device record as a Pi's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Optional

from agent.formats.benchmark_log import RUNTIME
from agent.wire.protocol import AndroidTarget, Welcome
from controller.client import AgentClient, AgentError
from controller.profiles import AndroidProfile
from controller.records import DeviceInfo


@dataclass
class Phone:
    """What a run needs to measure on a phone; `error` set when nothing can run on it."""

    target: AndroidTarget
    info: Optional[DeviceInfo]
    error: Optional[str]
    binary_bytes_sent: int = 0


def target_of(android: AndroidProfile) -> AndroidTarget:
    """The phone a profile names, as the agent is told about it (binary not yet sent)."""
    return AndroidTarget(address=android.adb_address, serial=android.adb_serial,
                         binary_name=android.benchmark_binary.name, taskset=android.taskset)


def prepare(android: AndroidProfile, client: AgentClient, welcome: Welcome) -> Phone:
    """Send the benchmark binary to the agent and read the phone's facts through it."""
    target = target_of(android)
    try:
        data = android.benchmark_binary.read_bytes()
    except OSError as exc:
        return Phone(target, None, f"benchmark binary {android.benchmark_binary}: {exc.strerror or exc}")
    target.binary_sha256 = hashlib.sha256(data).hexdigest()
    try:
        sent = client.push_model(str(android.benchmark_binary), target.binary_sha256, len(data),
                                 target.binary_name, kind="binary")
    except AgentError as exc:
        return Phone(target, None, f"benchmark binary {android.benchmark_binary}: transfer failed: {exc}")
    try:
        facts = client.info(android=target)
    except AgentError as exc:
        return Phone(target, None, str(exc), sent)
    info = DeviceInfo(agent_version=welcome.agent_version, runtime=RUNTIME, runtime_version=None, facts=facts)
    return Phone(target, info, None, sent)
