"""`controller info`: device facts as the device's agent reads them."""

from __future__ import annotations

import argparse

from agent.formats.facts_text import facts_lines
from controller import phones, profiles
from controller.client import AgentError, AgentLost
from controller.commands import print_error, print_json, stderr_console
from controller.connect import CONNECT_TIMEOUT_S, connect
from controller.local_agent import LocalAgentError
from controller.profiles import ProfileError


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller info` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--device", required=True, help="profile name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller info`; returns the exit status."""
    try:
        profile = profiles.load(args.device)
        with connect(profile) as client:
            client.hello(timeout_s=CONNECT_TIMEOUT_S)
            facts = client.info(phones.target_of(profile.android) if profile.android else None)
    except (ProfileError, LocalAgentError, AgentError, AgentLost, OSError) as exc:
        print_error(stderr_console(), f"device {args.device}: {exc}")
        return 2
    if args.json:
        print_json(facts)
        return 0
    print("\n".join(facts_lines(facts)))
    return 0
