"""Taking members out of archives: ``.deb`` (ar + ``data.tar.{xz,zst,gz,bz2}``), ``.tar.*`` and ``.zip``.

Only call this on an archive whose sha256 was verified. Everything is streamed (no archive is held in
memory) and several members come out of one pass. The format is recognised by its first bytes, never by
a file name. Refused, each with a one-line reason:

- any member whose name is absolute or contains ``..`` (the whole archive is refused when one is read);
- a wanted member that is a symbolic or hard link (the reason names the link's target: extract that),
  a device file, FIFO or directory;
- a wanted member larger than ``MAX_MEMBER_SIZE`` (checked on the header and on the bytes actually read).

Member names match with or without a leading ``./``. ``.zst`` compression needs the ``zstandard`` package.
"""

from __future__ import annotations

import difflib
import io
import stat
import tarfile
import zipfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from boot2ipxe.fetch.cache import CHUNK, copy_hashed
from boot2ipxe.units import human_size

MAX_MEMBER_SIZE = 512 * 1024 * 1024

AR_MAGIC = b"!<arch>\n"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSED_TAR = {b"\x1f\x8b": "gz", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz"}


class ArchiveError(Exception):
    """The archive as a whole cannot be used (unknown format, corrupt, a dangerous member name)."""


@dataclass(frozen=True)
class Member:
    path: Path  # the temporary file the member was written to
    sha256: str
    size: int


@dataclass
class Extraction:
    found: dict[str, Member] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)  # wanted name -> why it was not extracted


def member_name(name: str) -> str:
    """The canonical form of a member name (no leading ``./``); ArchiveError if absolute or with ``..``."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise ArchiveError(f"member {name!r} has an absolute path or '..': refusing the archive")
    return str(path)


def extract(archive: Path, wanted: Collection[str], dest: dict[str, Path], max_size: int | None = None) -> Extraction:
    """Write each member named in ``wanted`` to ``dest[name]`` (a temporary path the caller owns and removes).

    ``wanted`` names are canonical (see :func:`member_name`). Raises ArchiveError for the archive as a whole.
    """
    limit = MAX_MEMBER_SIZE if max_size is None else max_size
    result = Extraction()
    try:
        with archive.open("rb") as f:
            head = f.read(512)
            f.seek(0)
            if head.startswith(AR_MAGIC):
                name, data = _deb_data(f)
                with _open_tar(data, name.removeprefix("data.tar").lstrip(".") or None) as tf:
                    _scan_tar(tf, wanted, dest, limit, result)
            elif head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
                _scan_zip(f, wanted, dest, limit, result)
            else:
                kind = _tar_compression(head)
                with _open_tar(f, kind) as tf:
                    _scan_tar(tf, wanted, dest, limit, result)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise ArchiveError(f"corrupt or unreadable archive: {exc}") from None
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise ArchiveError(f"corrupt or unreadable archive: {exc}") from None
    return result


def _tar_compression(head: bytes) -> str | None:
    for magic, kind in COMPRESSED_TAR.items():
        if head.startswith(magic):
            return kind
    if head.startswith(ZSTD_MAGIC):
        return "zst"
    if head[257:262] == b"ustar":
        return None
    raise ArchiveError("not a .deb, tar or zip archive (unrecognised first bytes)")


class _Slice(io.RawIOBase):
    """At most ``size`` bytes of an underlying file, from its current position."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        n = min(len(view), self.left)
        if n <= 0:
            return 0
        data = self.f.read(n)
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _deb_data(f: BinaryIO) -> tuple[str, BinaryIO]:
    """The ``data.tar*`` member of an ar archive, as (name, stream)."""
    f.read(len(AR_MAGIC))
    while header := f.read(60):
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ArchiveError("corrupt .deb: bad ar member header")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ArchiveError("corrupt .deb: bad ar member size") from None
        if name.startswith("data.tar"):
            return name, io.BufferedReader(_Slice(f, size), CHUNK)
        f.seek(size + (size & 1), io.SEEK_CUR)
    raise ArchiveError("not a Debian package: no data.tar member in the ar archive")


def _open_tar(f: BinaryIO, compression: str | None) -> tarfile.TarFile:
    if compression == "zst":
        try:
            import zstandard  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ArchiveError("zstd-compressed tar: install the 'zstandard' Python package (pip install zstandard)") from None
        reader: IO[bytes] = zstandard.ZstdDecompressor().stream_reader(f)
        return tarfile.open(fileobj=reader, mode="r|")
    if compression is None:
        return tarfile.open(fileobj=f, mode="r|")
    if compression == "gz":
        return tarfile.open(fileobj=f, mode="r|gz")
    if compression == "bz2":
        return tarfile.open(fileobj=f, mode="r|bz2")
    if compression == "xz":
        return tarfile.open(fileobj=f, mode="r|xz")
    raise ArchiveError(f"unsupported compression data.tar.{compression}")


def _iter_tar(tf: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (info := tf.next()) is not None:
        yield info


def _scan_tar(tf: tarfile.TarFile, wanted: Collection[str], dest: dict[str, Path], limit: int, result: Extraction) -> None:
    remaining = set(wanted)
    seen: list[str] = []
    for info in _iter_tar(tf):
        name = member_name(info.name)
        seen.append(name)
        if name not in remaining:
            continue
        remaining.discard(name)
        problem = _tar_problem(name, info, limit)
        if problem is None:
            reader = tf.extractfile(info)
            assert reader is not None
            problem = _copy(name, reader, dest[name], limit, result)
        if problem is not None:
            result.problems[name] = problem
        if not remaining:
            return
    for name in remaining:
        result.problems[name] = _missing(name, seen)


def _tar_problem(name: str, info: tarfile.TarInfo, limit: int) -> str | None:
    if info.issym():
        target = str(PurePosixPath(name).parent / info.linkname)
        return f"{name} is a symbolic link to {info.linkname} ({target} in the archive): extract that member instead"
    if info.islnk():
        return f"{name} is a hard link to {info.linkname}: extract that member instead"
    if info.ischr() or info.isblk():
        return f"{name} is a device file, not a regular file"
    if info.isfifo():
        return f"{name} is a FIFO, not a regular file"
    if info.isdir():
        return f"{name} is a directory, not a file"
    if not info.isreg():
        return f"{name} is not a regular file"
    if info.size > limit:
        return f"{name} is {human_size(info.size)}, over the {human_size(limit)} bound for archive members"
    return None


def _scan_zip(f: BinaryIO, wanted: Collection[str], dest: dict[str, Path], limit: int, result: Extraction) -> None:
    with zipfile.ZipFile(f) as zf:
        members = {member_name(info.filename): info for info in zf.infolist()}
        for name in wanted:
            info = members.get(name)
            if info is None:
                result.problems[name] = _missing(name, list(members))
                continue
            mode = info.external_attr >> 16
            problem = None
            if stat.S_ISLNK(mode):
                with zf.open(info) as reader:
                    link = reader.read(4096).decode("utf-8", "replace")
                problem = f"{name} is a symbolic link to {link}: extract that member instead"
            elif info.is_dir() or stat.S_ISDIR(mode):
                problem = f"{name} is a directory, not a file"
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                problem = f"{name} is a device file or FIFO, not a regular file"
            elif info.file_size > limit:
                problem = f"{name} is {human_size(info.file_size)}, over the {human_size(limit)} bound for archive members"
            else:
                with zf.open(info) as reader:
                    problem = _copy(name, reader, dest[name], limit, result)
            if problem is not None:
                result.problems[name] = problem


def _copy(name: str, reader: IO[bytes], target: Path, limit: int, result: Extraction) -> str | None:
    with target.open("wb") as out:
        copied = copy_hashed(reader, out, limit)
    if copied is None:
        target.unlink(missing_ok=True)
        return f"{name} is larger than the {human_size(limit)} bound for archive members"
    result.found[name] = Member(target, *copied)
    return None


def _missing(name: str, seen: list[str]) -> str:
    close = difflib.get_close_matches(name, seen, n=1, cutoff=0.8)
    return f"no member {name} in the archive" + (f" (did you mean {close[0]}?)" if close else "")
