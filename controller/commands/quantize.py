"""`controller quantize`: the four variants of a SavedModel or Keras model."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.formats.dataset import DatasetError
from agent.formats.modelfile import read_model_file
from agent.formats.preprocess import PreprocessError, load_spec
from controller.commands import print_error, stderr_console
from controller.quantize import QuantizeError, quantize


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller quantize` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("model", metavar="MODEL", help="SavedModel directory, .keras or .h5 file")
    p.add_argument("--representative", required=True, metavar="DIR",
                   help="images for int8 calibration (class directories or flat)")
    p.add_argument("--preprocess", required=True, metavar="SPEC.toml",
                   help="the preprocessing the device will use; calibration uses it too")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--name", help="file name prefix (default: the model's name)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    """Carry out `controller quantize`; returns the exit status."""
    console = stderr_console()
    try:
        spec = load_spec(args.preprocess)
        written = quantize(Path(args.model), Path(args.representative), spec, Path(args.out), args.name)
    except (QuantizeError, PreprocessError, DatasetError) as exc:
        print_error(console, exc)
        return 2
    except OSError as exc:
        print_error(console, exc)
        return 2
    for variant, path in written.items():
        detected = read_model_file(path).variant
        print(f"{path}  {variant}  {path.stat().st_size} bytes  (read back as {detected})")
    return 0
