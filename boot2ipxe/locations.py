"""Where boot2ipxe looks for its configuration (a module of its own: a warm build needs the path, not the parser)."""

from __future__ import annotations

import os
from pathlib import Path


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "boot2ipxe" / "config.toml"
