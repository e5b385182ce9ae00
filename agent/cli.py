"""`agent` command line: a thin layer over the agent's library functions."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import msgspec
import zmq

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib

from agent.facts import facts_lines, read_facts
from agent.protocol import READY_PREFIX
from agent.server import AgentConfig, AgentServer, ConfigError

_CONFIG_KEYS = {"bind", "data_dir", "insecure", "log_level"}


def default_data_dir() -> Path:
    """Where an agent keeps its cache when neither config nor flags say."""
    if os.geteuid() == 0:
        return Path("/var/lib/edgebench")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(Path.home(), ".local", "share")
    return Path(base) / "edgebench" / "agent"


def load_config(path: Optional[str]) -> dict:
    """The `agent.toml` settings as a dict; unknown keys are an error."""
    if path is None:
        return {}
    with open(path, "rb") as f:
        data = tomllib.load(f)
    unknown = set(data) - _CONFIG_KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return data


def _serve(args: argparse.Namespace) -> int:
    try:
        file_config = load_config(args.config)
    except (OSError, tomllib.TOMLDecodeError, ConfigError) as exc:
        print(f"agent: cannot read config: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, str(file_config.get("log_level", args.log_level)).upper(), logging.INFO),
        format="%(levelname)s %(message)s", stream=sys.stderr,
    )
    config = AgentConfig(
        bind=args.bind or file_config.get("bind", "tcp://127.0.0.1:5555"),
        data_dir=Path(args.data_dir or file_config.get("data_dir") or default_data_dir()),
        insecure=args.insecure or bool(file_config.get("insecure", False)),
    )
    try:
        server = AgentServer(config)
        endpoint = server.bind()
    except (ConfigError, OSError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    except zmq.ZMQError as exc:  # a malformed or busy endpoint
        print(f"agent: cannot bind {config.bind}: {exc}", file=sys.stderr)
        return 2
    print(READY_PREFIX + endpoint, flush=True)
    server.serve()
    return 0


def _info(args: argparse.Namespace) -> int:
    facts = read_facts(args.root)
    if args.json:
        sys.stdout.write(msgspec.json.encode(facts).decode() + "\n")
        return 0
    print("\n".join(facts_lines(facts)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agent", description="edgebench device agent")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve controllers (the long-running agent)")
    serve.add_argument("--config", help="agent.toml with bind, data_dir, insecure, log_level")
    serve.add_argument("--bind", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555 (port * picks one)")
    serve.add_argument("--data-dir", help="model cache and state directory")
    serve.add_argument("--insecure", action="store_true",
                       help="serve without authentication (loopback endpoints only)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(func=_serve)

    info = sub.add_parser("info", help="device facts")
    info.add_argument("--root", default="/", help="read /proc and /sys below this directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
