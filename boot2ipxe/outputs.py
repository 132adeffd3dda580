"""Writing outputs: a temporary file beside the target, renamed into place once complete.

Secret files (private keys, scripts or secrets templates that embed them) are *created* with mode 0600
through ``os.open``; their mode is never widened nor changed after the bytes are written.
"""

from __future__ import annotations

import os

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import Boot2ipxeError, InputError
from boot2ipxe.paths import remove_if_present

if TYPE_CHECKING:  # pathlib is not imported here: a warm build writes its sidecars through this module
    from pathlib import Path

    from boot2ipxe.paths import PathLike

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
PRIVATE_DIR_MODE = 0o700


def write_atomic(target: PathLike, data: bytes, *, mode: int = PUBLIC_MODE, overwrite: bool = True, durable: bool = True) -> None:
    """Write ``data`` to ``target`` through a temporary file created with ``mode`` (minus the umask).

    With ``overwrite=False`` an existing target is never replaced, even by a concurrent writer
    (the temporary file is hard-linked into place). ``durable`` fsyncs the bytes before the rename.
    """
    directory, name = os.path.split(os.fspath(target))
    tmp = os.path.join(directory, f".{name}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileNotFoundError:
        raise InputError(f"{directory or '.'}: no such directory") from None
    except OSError as exc:
        raise Boot2ipxeError(f"{target}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise InputError(f"{target}: already exists; refusing to overwrite it") from None
    except OSError as exc:
        raise Boot2ipxeError(f"{target}: cannot write: {exc.strerror}") from None
    finally:
        remove_if_present(tmp)


def write_secret(target: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write a file only its owner may read (mode 0600 from creation)."""
    write_atomic(target, data, mode=SECRET_MODE, overwrite=overwrite)


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
