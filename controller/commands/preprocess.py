"""`controller preprocess`: the exact input tensor a spec makes of one image.

Write it next to your training pipeline's tensor for the same image and diff them:
that is how a resize, channel-order or mean mismatch shows up before it costs accuracy.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import numpy as np

from agent.formats.modelfile import ModelFormatError, read_model_file
from agent.formats.preprocess import InputTensor, PreprocessError, load_spec, preprocess_image
from controller.commands import print_error, stderr_console


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    """Add `controller preprocess` and its flags to the parser."""
    p = sub.add_parser(name, help=help_text)
    p.add_argument("--spec", required=True, metavar="SPEC.toml")
    p.add_argument("--image", required=True, metavar="IMG")
    p.add_argument("--out", required=True, metavar="OUT.npy")
    p.add_argument("--model", metavar="MODEL.tflite",
                   help="take size, channels, dtype and quantization from this model's input")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3,
                   help="channels when no --model is given (default: 3)")
    p.set_defaults(func=main)


def target_for(spec_size: Optional[tuple[int, int]], model: Optional[str], channels: int) -> InputTensor:
    """The tensor to produce: the model's input, or float32 of the spec's size."""
    if model:
        return InputTensor.from_info(read_model_file(model).inputs[0])
    if spec_size is None:
        raise PreprocessError("the spec has no size: give it one, or name the model with --model")
    return InputTensor(spec_size[0], spec_size[1], channels, np.dtype(np.float32))


def main(args: argparse.Namespace) -> int:
    """Carry out `controller preprocess`; returns the exit status."""
    console = stderr_console()
    try:
        spec = load_spec(args.spec)
        target = target_for(spec.size, args.model, args.channels)
        tensor = preprocess_image(Path(args.image).read_bytes(), spec, target)
        np.save(args.out, tensor)
    except (PreprocessError, ModelFormatError) as exc:
        print_error(console, exc)
        return 2
    except OSError as exc:
        print_error(console, f"{exc.filename}: {exc.strerror}")
        return 2
    console.print(f"{args.out}: {tensor.dtype} {list(tensor.shape)}, min {tensor.min()}, max {tensor.max()}, "
                  f"mean {tensor.astype(np.float64).mean():.6g}", highlight=False)
    return 0
