"""Where boot2ipxe keeps its cache and looks for its configuration (no pathlib: a warm build needs the paths,
not the parser)."""

from __future__ import annotations

import os

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$BOOT2IPXE_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/boot2ipxe``."""
    env = os.environ if environ is None else environ
    if env.get("BOOT2IPXE_CACHE"):
        return os.path.expanduser(env["BOOT2IPXE_CACHE"])
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.expanduser(base), "boot2ipxe")


def config_file() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "boot2ipxe", "config.toml")


def config_path() -> Path:
    from pathlib import Path

    return Path(config_file())
