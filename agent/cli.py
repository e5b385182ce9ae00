"""`agent` command line: a thin layer over the agent's library functions."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import msgspec
import zmq

from agent import config, service
from agent.facts import read_facts
from agent.formats.facts_text import facts_lines
from agent.notify import Notifier
from agent.server import AgentServer
from agent.wire import keys as key_files
from agent.wire.protocol import READY_PREFIX
from agent.wire.text import PrintableFormatter, printable
from agent.wire.version import VersionAction


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = config.load(
            args.config, bind=args.bind, data_dir=args.data_dir, log_level=args.log_level,
            insecure=True if args.insecure else None,
            cache_quota_bytes=args.cache_quota_bytes, delegate_libraries=args.delegate_library,
            phones=args.phone, cell_memory_limit_mb=args.cell_memory_limit_mb,
        )
        settings.check()
        if args.root:
            settings = msgspec.structs.replace(settings, root=args.root)
    except config.ConfigError as exc:
        print(f"agent: {printable(str(exc))}", file=sys.stderr)
        return 2
    # One line per event, no timestamps (journald adds its own), no control characters.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()), handlers=[handler])
    notifier = Notifier()
    try:
        server = AgentServer(settings, notifier, lifeline=sys.stdin.fileno() if args.stop_on_stdin_close else None,
                             lock_wait_s=args.lock_wait)
        endpoint = server.bind()
    except (config.ConfigError, key_files.KeyFileError, OSError) as exc:
        print(f"agent: {printable(str(exc))}", file=sys.stderr)
        return 2
    except zmq.ZMQError as exc:  # a malformed or busy endpoint
        print(f"agent: cannot bind {printable(settings.bind)}: {exc}", file=sys.stderr)
        return 2
    # Handlers first: whoever reads the ready line may signal the agent straight away.
    server.handle_signals()
    print(READY_PREFIX + endpoint, flush=True)
    server.serve(install_signal_handlers=False)
    return 0


def _info(args: argparse.Namespace) -> int:
    facts = read_facts(args.root)
    if args.json:
        sys.stdout.write(msgspec.json.encode(facts).decode() + "\n")
        return 0
    print("\n".join(facts_lines(facts)))
    return 0


def _keys_generate(args: argparse.Namespace) -> int:
    try:
        public, secret = key_files.generate(args.dir, args.name, overwrite=args.force)
    except (key_files.KeyFileError, OSError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}  (give this file to controllers as the profile's server_public_key)")
    print(f"secret key: {secret}  (keep it on this device; agent.toml secret_key)")
    return 0


def _install_service(args: argparse.Namespace) -> int:
    options = service.ServiceOptions(
        user=args.user, config_path=Path(args.config), data_dir=Path(args.data_dir),
        exec_start=args.exec_start or service.default_exec_start(),
        watchdog_s=args.watchdog_sec,
        sysusers_path=Path(args.sysusers_out), udev_rule_path=Path(args.udev_rule_out),
        doc_path=Path(args.doc_out),
    )
    unit = service.unit_text(options)
    if args.dry_run:
        if args.unit_out:
            Path(args.unit_out).write_text(unit)
            print(f"wrote {args.unit_out}", file=sys.stderr)
        else:
            sys.stdout.write(unit)
        return 0
    if os.geteuid() != 0:
        print("agent: install-service needs root (or use --dry-run --unit-out PATH)", file=sys.stderr)
        return 2
    try:
        for line in service.install(options, Path(args.unit_out or service.UNIT_PATH)):
            print(line)
    except (service.InstallError, OSError) as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `agent` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="agent", description="edgebench device agent")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve controllers (the long-running agent)")
    serve.add_argument("--config", metavar="agent.toml",
                       help="configuration file (bind, data_dir, cache_quota_bytes, secret_key, allowed_keys_dir, "
                            "insecure, log_level, cell_memory_limit_mb, delegate_libraries, phones); "
                            "flags override it")
    serve.add_argument("--bind", help="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555 (port * picks one; "
                                      f"default {config.DEFAULT_BIND})")
    serve.add_argument("--data-dir", help="model cache and result outbox directory (default /var/lib/edgebench "
                                          "as root, else $XDG_DATA_HOME/edgebench/agent)")
    serve.add_argument("--cache-quota-bytes", type=int, help="most bytes the model cache may hold")
    serve.add_argument("--cell-memory-limit-mb", type=int, metavar="MB",
                       help="kill a cell whose process grows past this resident size (default: 75%% of the "
                            "RAM, leaving at least 512 MB)")
    serve.add_argument("--delegate-library", action="append", metavar="PATH",
                       help="a delegate library jobs may load (repeatable; replaces delegate_libraries)")
    serve.add_argument("--phone", action="append", metavar="SERIAL|HOST:PORT",
                       help="a phone jobs may drive (repeatable; replaces phones)")
    serve.add_argument("--insecure", action="store_true",
                       help="serve without authentication (loopback endpoints only)")
    serve.add_argument("--log-level", choices=config.LOG_LEVELS)
    serve.add_argument("--root", help="read /proc and /sys below this directory (a captured device tree)")
    serve.add_argument("--stop-on-stdin-close", action="store_true",
                       help="stop (cancelling the running cell) when standard input closes: a controller that "
                            "starts an agent for itself holds it open, so the agent ends with that controller")
    serve.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                       help="wait this long for another agent to release the data directory, stopping one whose "
                            "controller is gone (default 0: fail at once)")
    serve.set_defaults(func=_serve)

    info = sub.add_parser("info", help="device facts")
    info.add_argument("--root", default="/", help="read /proc and /sys below this directory")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)

    keys = sub.add_parser("keys", help="CURVE key pairs").add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="create NAME.key and NAME.key_secret in DIR")
    generate.add_argument("dir")
    generate.add_argument("--name", default="agent")
    generate.add_argument("--force", action="store_true", help="replace an existing key pair")
    generate.set_defaults(func=_keys_generate)

    install = sub.add_parser("install-service", help="systemd unit, user and directories")
    install.add_argument("--user", default=service.DEFAULT_USER, help="system user the agent runs as")
    install.add_argument("--config", default=str(config.DEFAULT_CONFIG_PATH))
    install.add_argument("--data-dir", default="/var/lib/edgebench")
    install.add_argument("--exec-start", help="agent command (default: this installation's `agent`)")
    install.add_argument("--watchdog-sec", type=int, default=service.WATCHDOG_S,
                         help="systemd restarts an agent whose loop or job thread stops making progress "
                              f"for this long (default {service.WATCHDOG_S})")
    install.add_argument("--unit-out", help=f"where to write the unit (default {service.UNIT_PATH})")
    install.add_argument("--sysusers-out", default=str(service.SYSUSERS_PATH),
                         help="systemd-sysusers file for the user and its device groups")
    install.add_argument("--udev-rule-out", default=str(service.UDEV_RULE_PATH),
                         help="udev rule giving phones on USB to the plugdev group")
    install.add_argument("--doc-out", default=str(service.DOC_PATH), help="where the unit's documentation goes")
    install.add_argument("--dry-run", action="store_true",
                         help="only write the unit (to --unit-out or stdout); no user, no directories")
    install.set_defaults(func=_install_service)
    return parser


def _children_skip_the_launcher() -> None:
    """Let cell processes skip re-running the `agent` console script.

    multiprocessing re-runs the main script in each new process unless the main module is
    a package's `__main__` (as under `python -m agent`); for the console script that cost
    every cell about 60 ms of imports. Naming `agent.__main__` as the main module's spec
    gives both ways of starting the agent the same cheap cells.
    """
    main_module = sys.modules.get("__main__")
    if main_module is not None and getattr(main_module, "__spec__", None) is None:
        main_module.__spec__ = importlib.util.find_spec("agent.__main__")


def main(argv: Optional[list[str]] = None) -> int:
    """Run the `agent` command line; returns the exit status."""
    _children_skip_the_launcher()
    args = build_parser().parse_args(argv)
    return args.func(args)
