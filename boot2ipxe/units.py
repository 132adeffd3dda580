"""The sector size, and sizes: parsing ``512``, ``8KiB``, ``4MiB``, ``1GiB``, ``2TiB`` and printing them back."""

from __future__ import annotations

import re

SECTOR = 512  # bytes; the one sector size boot2ipxe writes and reads
KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

UNITS = {"": 1, "B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB}
SIZE_RE = re.compile(r"^\s*([0-9]+)\s*(B|KiB|MiB|GiB|TiB)?\s*$")
# Anything bigger is surely a typo; also keeps arithmetic on absurd YAML integers cheap.
MAX_SIZE = 64 * TiB


def parse_size(value: int | str) -> int:
    """Bytes for a size given as an integer or a string with a binary unit. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512, 8KiB, 4MiB or 1GiB")
    if isinstance(value, int):
        number = value
    else:
        match = SIZE_RE.match(value)
        if not match:
            raise ValueError(f"'{value}' is not a size: use bytes or a number with KiB, MiB, GiB or TiB")
        number = int(match.group(1)) * UNITS[match.group(2) or ""]
    if number < 0:
        raise ValueError("a size cannot be negative")
    if number > MAX_SIZE:
        raise ValueError(f"{format_size(number)} is larger than the {format_size(MAX_SIZE)} limit")
    return number


def format_size(size: int) -> str:
    """Exact, in the largest unit that divides the size: 4194304 -> '4MiB', 1536 -> '1536'."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % UNITS[unit] == 0:
            return f"{size // UNITS[unit]}{unit}"
    return str(size)


def human_size(size: int) -> str:
    """Approximate, for messages: 1.2 MiB."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def align_up(value: int, alignment: int) -> int:
    return ceil_div(value, alignment) * alignment
