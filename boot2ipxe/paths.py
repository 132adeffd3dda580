"""Path helpers for the modules a warm build runs: they take a ``str`` or a ``pathlib.Path`` (``PathLike``) and never
import pathlib themselves."""

from __future__ import annotations

import os

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeAlias

    PathLike: TypeAlias = "str | os.PathLike[str]"


def remove_if_present(path: PathLike) -> None:
    """``Path.unlink(missing_ok=True)``."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
