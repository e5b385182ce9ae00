"""Reading /proc and /sys below a configurable root.

Every device read goes through `SysRoot`, so a tree captured from a real device can stand
in for `/` in tests (`agent info --root DIR`).
"""

from __future__ import annotations

import glob
import os
from typing import Optional


class SysRoot:
    """Reads files below `root` (normally `/`); a missing file reads as None."""

    def __init__(self, root: str = "/"):
        self.root = root

    def path(self, path: str) -> str:
        """`path` (absolute on the device) under this root."""
        return os.path.join(self.root, path.lstrip("/"))

    def read(self, path: str) -> Optional[str]:
        """The stripped text of a file under the root, or None when unreadable."""
        try:
            with open(self.path(path), "rb") as f:
                return f.read().decode("utf-8", "replace").replace("\x00", "").strip()
        except OSError:
            return None

    def read_int(self, path: str) -> Optional[int]:
        """A file under the root read as an integer, or None."""
        text = self.read(path)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return None

    def glob(self, pattern: str) -> list[str]:
        """Matching paths, relative to the root, sorted."""
        base = self.path("")
        return sorted("/" + os.path.relpath(p, base) for p in glob.glob(self.path(pattern)))
