"""The path type the modules a warm build runs take: a ``str`` or a ``pathlib.Path`` (they never import pathlib)."""

from __future__ import annotations

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    import os
    from typing import TypeAlias

    PathLike: TypeAlias = "str | os.PathLike[str]"
