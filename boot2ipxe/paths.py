"""The path type the modules a warm build runs take: a ``str`` or a ``pathlib.Path`` (they never import pathlib)."""

from __future__ import annotations

import os

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import TypeAlias

    PathLike: TypeAlias = "str | os.PathLike[str]"


def sibling(path: PathLike, name: str) -> str:
    """The path of ``name`` in ``path``'s directory (``Path.with_name``)."""
    return os.path.join(os.path.dirname(os.fspath(path)), name)
