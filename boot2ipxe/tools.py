"""The one way external tools are run: list argv, never a shell; failures name the command and its stderr.

``boot2ipxe --debug`` prints each command line on stderr before it runs (as mkosi does), in a form that can be
pasted into a shell to repeat a failing step by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from boot2ipxe.errors import ToolError, ToolMissing, format_argv

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
    "debugfs": "e2fsprogs",
    "fsck.vfat": "dosfstools",
    "blkid": "util-linux",
    "cp": "coreutils",
    "make": "make",
    "perl": "perl",
    "gcc": "gcc",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "riscv64-linux-gnu-gcc": "gcc-riscv64-linux-gnu",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-system-aarch64": "qemu-system-arm",
    "genimage": "genimage",
    "bmaptool": "bmap-tools",
    "zstd": "zstd",
}
EXTRA_PATH = ("/usr/sbin", "/sbin")  # mke2fs and friends live here, often not on a user's PATH

FAT_EPOCH = 315532800  # FAT cannot store times before 1980-01-01

_debug = False


def set_debug(enabled: bool) -> None:
    """Print every command on stderr before it runs (``boot2ipxe --debug``)."""
    global _debug
    _debug = enabled


def filesystem_tool_env(epoch: int) -> dict[str, str]:
    """Environment that makes mtools and e2fsprogs deterministic and deaf to user configuration."""
    mke2fs_conf = resources.files("boot2ipxe") / "data" / "mke2fs.conf"
    return {
        "TZ": "UTC",
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": str(max(epoch, FAT_EPOCH)),
        "E2FSPROGS_FAKE_TIME": str(max(epoch, FAT_EPOCH)),
        "MTOOLS_SKIP_CHECK": "1",
        "MTOOLSRC": os.devnull,
        "MKE2FS_CONFIG": str(mke2fs_conf),
    }


def find(tool: str) -> str:
    """Absolute path of a tool, or ToolMissing naming the Debian package to install."""
    path = os.pathsep.join([os.environ.get("PATH", os.defpath), *EXTRA_PATH])
    found = shutil.which(tool, path=path)
    if found is None:
        raise ToolMissing(tool, PACKAGES.get(tool, tool))
    return found


@dataclass(frozen=True)
class Completed:
    """A command that exited 0, with what it wrote."""

    argv: tuple[str, ...]
    stdout: bytes
    stderr: bytes


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = 600,
) -> Completed:
    """Run a tool and capture its output; ToolError with its stderr on a non-zero exit or a timeout.

    ``env`` adds to the environment. Its stdin is ``stdin`` (or /dev/null), never the terminal."""
    command = [find(argv[0]), *argv[1:]]
    if _debug:
        prefix = " ".join(f"{k}={v}" for k, v in (env or {}).items())
        print(f"+ {prefix + ' ' if prefix else ''}{format_argv(argv)}", file=sys.stderr, flush=True)
    try:
        done = subprocess.run(
            command,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env={**os.environ, **env} if env else None,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(argv, -1, f"timed out after {timeout} s") from None
    except OSError as exc:
        raise ToolError(argv, -1, str(exc)) from None
    if done.returncode != 0:
        raise ToolError(argv, done.returncode, done.stderr.decode("utf-8", "replace"))
    return Completed(tuple(argv), done.stdout, done.stderr)
