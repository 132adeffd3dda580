"""The one way external tools are run: list argv, never a shell; failures name the command.

Tools are started with ``os.posix_spawn`` (vfork and exec, nothing else), their output captured in memory
files: no pipes to drain, so no thread or poll loop per command, and no ``subprocess`` (with ``signal``,
``selectors`` and ``enum`` behind it) to import on a warm build's path.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # signal.py's C half, always loaded: the numbers without its enum
import os

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import ToolError, ToolMissing

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

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

RESTORED_SIGNALS = (_signal.SIGPIPE, _signal.SIGXFSZ)

_found: dict[str, str] = {}


def find(tool: str) -> str:
    """Absolute path of a tool, or ToolMissing naming the package to install (remembered per process)."""
    if tool in _found:
        return _found[tool]
    directories = [*os.environ.get("PATH", os.defpath).split(os.pathsep), *EXTRA_PATH]
    for directory in directories:  # as shutil.which, without importing shutil
        candidate = os.path.join(directory or ".", tool)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            _found[tool] = candidate
            return candidate
    raise ToolMissing(tool, PACKAGES.get(tool, tool))


class Completed:
    """A command that exited 0, with what it wrote."""

    __slots__ = ("argv", "stderr", "stdout")

    def __init__(self, argv: Sequence[str], stdout: bytes, stderr: bytes) -> None:
        self.argv = list(argv)
        self.stdout = stdout
        self.stderr = stderr


def run(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
) -> Completed:
    """Run a tool; raise ToolError with its stderr on a non-zero exit. ``env`` adds to the environment.

    Its stdin is ``stdin`` (or /dev/null), never the terminal."""
    command = [find(argv[0]), *argv[1:]]
    full_env = {**os.environ, **env} if env else os.environ
    out, err = os.memfd_create("stdout", os.MFD_CLOEXEC), os.memfd_create("stderr", os.MFD_CLOEXEC)
    given = os.memfd_create("stdin", os.MFD_CLOEXEC) if stdin is not None else None
    try:
        actions: list[tuple[Any, ...]] = [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)]
        if given is not None:
            _write_all(given, stdin or b"")
            os.lseek(given, 0, os.SEEK_SET)
            actions.append((os.POSIX_SPAWN_DUP2, given, 0))
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
        try:
            # Python ignores SIGPIPE and SIGXFSZ; a tool gets them back as subprocess gives them back.
            pid = os.posix_spawn(command[0], command, full_env, file_actions=actions, setsigdef=RESTORED_SIGNALS)
        except OSError as exc:
            raise ToolError(argv, -1, str(exc)) from None
        code = _wait(pid, timeout)
        if code is None:
            raise ToolError(argv, -1, f"timed out after {timeout} s")
        stdout, stderr = _read_all(out), _read_all(err)
    finally:
        for fd in (out, err, given):
            if fd is not None:
                os.close(fd)
    if code != 0:
        raise ToolError(argv, code, stderr.decode("utf-8", "replace"))
    return Completed(argv, stdout, stderr)


def _wait(pid: int, timeout: float | None) -> int | None:
    """The exit code of ``pid`` (negative: killed by that signal), or None when it ran past ``timeout`` (then it is
    killed and reaped)."""
    if timeout is not None:
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # a kernel without pidfds: wait without a bound
            pidfd = None
        if pidfd is not None:
            import select

            try:
                poller = select.poll()
                poller.register(pidfd, select.POLLIN)
                exited = bool(poller.poll(timeout * 1000))
            finally:
                os.close(pidfd)
            if not exited:
                os.kill(pid, _signal.SIGKILL)
                os.waitpid(pid, 0)
                return None
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks, at = [], 0
    while chunk := os.pread(fd, 1 << 20, at):
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)
