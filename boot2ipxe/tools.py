"""The one way external tools are run: list argv, never a shell; failures name the command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from boot2ipxe.errors import ToolError, ToolMissing

# Which Debian package provides each tool, for the "not found" message.
PACKAGES = {
    "sfdisk": "fdisk",
    "mformat": "mtools",
    "mmd": "mtools",
    "mcopy": "mtools",
    "mdel": "mtools",
    "mattrib": "mtools",
    "mke2fs": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "fsck.vfat": "dosfstools",
    "blkid": "util-linux",
    "fallocate": "util-linux",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "genimage": "genimage",
    "bmaptool": "bmap-tools",
}
EXTRA_PATH = ("/usr/sbin", "/sbin")  # mke2fs and friends live here, often not on a user's PATH


@cache
def find(tool: str) -> str:
    """Absolute path of a tool, or ToolMissing naming the package to install."""
    directories = [*os.environ.get("PATH", os.defpath).split(os.pathsep), *EXTRA_PATH]
    for directory in directories:  # as shutil.which, without importing shutil
        candidate = Path(directory or ".") / tool
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise ToolMissing(tool, PACKAGES.get(tool, tool))


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[bytes]:
    """Run a tool; raise ToolError with its stderr on a non-zero exit. ``env`` adds to the environment."""
    command = [find(argv[0]), *argv[1:]]
    full_env = {**os.environ, **env} if env else None
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, env=full_env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolError(argv, -1, f"timed out after {timeout} s") from None
    except OSError as exc:
        raise ToolError(argv, -1, str(exc)) from None
    if result.returncode != 0:
        raise ToolError(argv, result.returncode, result.stderr.decode("utf-8", "replace"))
    return result
