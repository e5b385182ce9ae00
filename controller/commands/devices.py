"""`controller devices`: the profiles found, and whether each device answers."""

from __future__ import annotations

import argparse
from typing import Optional

import msgspec
from rich.markup import escape
from rich.table import Table

from controller import profiles
from controller.client import AgentError, AgentLost
from controller.commands import print_json, stdout_console
from controller.connect import connect
from controller.local_agent import LocalAgentError
from controller.profiles import ProfileError

PROBE_TIMEOUT_S = 5.0


class DeviceStatus(msgspec.Struct, kw_only=True):
    """A profile and whether its agent answered."""

    name: str
    transport: Optional[str]
    address: Optional[str]
    description: str
    reachable: bool
    agent_version: Optional[str] = None
    error: Optional[str] = None


def probe(name: str) -> DeviceStatus:
    """Load the profile and say hello to its agent."""
    try:
        profile = profiles.load(name)
    except ProfileError as exc:
        return DeviceStatus(name=name, transport=None, address=None, description="",
                            reachable=False, error=str(exc))
    status = DeviceStatus(name=name, transport=profile.transport, address=profile.address,
                          description=profile.description, reachable=False)
    try:
        with connect(profile) as client:
            welcome = client.hello(timeout_s=PROBE_TIMEOUT_S)
        status.reachable, status.agent_version = True, welcome.agent_version
    except (ProfileError, LocalAgentError, AgentError, AgentLost, OSError) as exc:
        status.error = str(exc)
    return status


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller devices` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller devices`; returns the exit status."""
    statuses: list[DeviceStatus] = [probe(name) for name in profiles.available()]
    if args.json:
        print_json(statuses)
        return 0
    table = Table()
    for column in ("device", "transport", "address", "answers", "description"):
        table.add_column(column)
    for s in statuses:
        # Escaped: a profile's problem quotes its file ("[thermal] must be a table"), not markup.
        table.add_row(escape(s.name), s.transport or "-", escape(s.address or "-"),
                      f"yes (agent {escape(s.agent_version or '')})" if s.reachable else f"no: {escape(s.error or '')}",
                      escape(s.description))
    stdout_console().print(table)
    return 0
