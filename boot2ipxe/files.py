"""Reading inputs and writing outputs safely.

Inputs: every file a spec names resolves (after symlinks) inside the spec's directory tree or a directory the user
allowed (:func:`confined`), and is read only if it is a regular file no larger than a stated bound
(:func:`read_bounded`): a FIFO, a device or a huge file is refused before any byte is read.

Outputs: every command writes through this module: :func:`write_atomic` for whole files, :func:`pending_file` for
files built in place (images) and renamed when checked. Secret files (private keys, scripts or images that embed
them) are *created* with mode 0600; their mode is never widened after the bytes are written.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from boot2ipxe.errors import Boot2ipxeError, InputError

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def confined(reference: str, base: Path, roots: Sequence[Path]) -> Path | None:
    """The file ``reference`` names, relative to ``base``, after every symlink is followed — or None when it lies
    outside every one of ``roots`` (themselves resolved). Callers report None without saying anything about what
    lies outside. ValueError when no file can have that name (a NUL byte, too long, a symlink loop)."""
    if "\0" in reference:
        raise ValueError("a NUL byte")
    try:
        path = (base / reference).resolve()
        allowed = [root.resolve() for root in roots]
    except (OSError, RuntimeError) as exc:
        raise ValueError(str(exc)) from None
    return path if any(path.is_relative_to(root) for root in allowed) else None


def read_bounded(path: Path, limit: int, shown: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; InputError (naming ``shown``) for anything else.

    The file is opened without blocking and checked with fstat before a byte is read, so a FIFO or a device given
    where a file is expected is refused instead of hanging or reading without end."""
    name = shown or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name}: is a directory, not a file")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name}: is not a regular file")
        if st.st_size > limit:
            raise InputError(f"{name}: larger than {limit} bytes")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{name}: larger than {limit} bytes")
    return data


def check_output(path: Path) -> None:
    """Refuse, in one line, an output that is neither new nor a regular file — a directory, a device, a FIFO, a
    socket, or a symlink to one of those — and one whose directory is missing or not writable. Outputs are then
    written beside it and renamed over it: a symlink is replaced, never written through."""
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"{path}: cannot use as an output: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is a directory; give a file name")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: is not a regular file (a device, FIFO or socket); refusing to replace it")
    parent = path.parent
    if not parent.is_dir():
        raise InputError(f"{parent}: no such directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{parent}: not writable")


def json_text(data: object) -> str:
    """The one JSON form boot2ipxe writes: two-space indent, a final newline."""
    return json.dumps(data, indent=2) + "\n"


def write_atomic(target: Path, data: bytes, *, mode: int = PUBLIC_MODE, overwrite: bool = True) -> None:
    """Write ``data`` to ``target`` through a temporary file created with ``mode`` (minus the umask), fsynced.

    With ``overwrite=False`` an existing target is never replaced, even by a concurrent writer
    (the temporary file is hard-linked into place).
    """
    with pending_file(target, mode=mode) as tmp:
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if overwrite:
                tmp.replace(target)
            else:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise InputError(f"{target}: already exists; refusing to overwrite it") from None
        except OSError as exc:
            raise Boot2ipxeError(f"{target}: cannot write: {exc.strerror}") from None


def write_secret(target: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write a file only its owner may read (mode 0600 from creation)."""
    write_atomic(target, data, mode=SECRET_MODE, overwrite=overwrite)


@contextlib.contextmanager
def pending_file(target: Path, suffix: str = "", *, mode: int = SECRET_MODE) -> Iterator[Path]:
    """A new empty file beside ``target`` (same filesystem, so it can be renamed over it), removed on exit unless the
    caller renamed it into place. Mode 0600 by default: a machine image being written holds its key."""
    directory = target.parent
    if not directory.is_dir():
        raise InputError(f"{directory}: no such directory")
    path = directory / f".{target.name}.{os.urandom(4).hex()}{suffix}.partial"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))
    except OSError as exc:
        raise Boot2ipxeError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) for secrets: new directories get mode 0700."""
    try:
        path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{path}: exists and is not a directory") from None
    except OSError as exc:
        raise Boot2ipxeError(f"{path}: cannot create directory: {exc.strerror}") from None
    if not path.is_dir():
        raise InputError(f"{path}: exists and is not a directory")
