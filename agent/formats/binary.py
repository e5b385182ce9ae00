"""What a benchmark binary is, read from its first bytes: a program at all, and for which ABI."""

from __future__ import annotations

import struct
from typing import Optional

# ELF e_machine values of the ABIs Android ships.
_ELF_ABIS = {183: "arm64-v8a", 40: "armeabi-v7a", 62: "x86_64", 3: "x86", 243: "riscv64"}


class BinaryFormatError(ValueError):
    """Bytes that cannot be a program a device runs."""


def check_program(head: bytes) -> None:
    """Accept an ELF executable or a `#!` script; BinaryFormatError otherwise."""
    if not (head.startswith(b"\x7fELF") or head.startswith(b"#!")):
        raise BinaryFormatError("not a program: expected an ELF executable or a #! script")


def elf_abi(head: bytes) -> Optional[str]:
    """The Android ABI an ELF header is built for; None for scripts and unknown machines."""
    if len(head) < 20 or not head.startswith(b"\x7fELF"):
        return None
    endian = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack_from(endian + "H", head, 18)
    return _ELF_ABIS.get(machine, f"ELF machine {machine}")
