"""Reading TOML files (agent configuration, preprocessing specs, device profiles) with one-line errors."""

from __future__ import annotations

import os

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib


class TomlFileError(ValueError):
    """A TOML file that cannot be read or parsed; the message is one line naming the file."""


def read_toml(path: os.PathLike | str) -> dict:
    """The table a TOML file holds; TomlFileError when it is unreadable or not valid TOML."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise TomlFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TomlFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        # TOML is UTF-8 by definition: a file saved in Latin-1 fails here, before it is parsed.
        bad = exc.object[exc.start]
        raise TomlFileError(f"{path}: not UTF-8 text (byte 0x{bad:02x} at offset {exc.start})") from None
