"""`controller keys generate`: the controller's CURVE key pair."""

from __future__ import annotations

import argparse
import sys

from agent.wire import keys as key_files
from controller import locations

KEY_NAME = "controller"


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller keys` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    keys = p.add_subparsers(dest="keys_command", required=True)
    generate = keys.add_parser("generate", help="create NAME.key and NAME.key_secret in DIR")
    generate.add_argument("dir", nargs="?", help=f"default: {locations.key_dir()}, where runs look for it")
    generate.add_argument("--name", default=KEY_NAME)
    generate.add_argument("--force", action="store_true", help="replace an existing key pair")
    generate.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller keys`; returns the exit status."""
    try:
        public, secret = key_files.generate(args.dir or locations.key_dir(), args.name, overwrite=args.force)
    except (key_files.KeyFileError, OSError) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 2
    print(f"public key: {public}  (copy it into each agent's allowed_keys_dir)")
    print(f"secret key: {secret}  (keep it private; profiles may name it as client_secret_key)")
    return 0
