"""The content-addressed blob cache: verified bytes, keyed by their sha256.

Where: ``--cache-dir``, else ``$BOOT2IPXE_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/boot2ipxe`` (:func:`default_dir`).
Layout, one shard directory per first two hex digits::

    blobs/sha256/ab/abcd…          the bytes whose sha256 is the name; read-only
    blobs/sha256/ab/abcd….origin   one line: where the bytes came from (for image manifests)
    blobs/sha256/ab/.abcd….lock    fcntl lock held while the blob is being obtained
    blobs/sha256/ab/.abcd….part    a partial download, resumed with an HTTP Range request
    blobs/sha256/ab/.tmp-…         files being written; renamed into place only once verified

Invariants: a file at a blob path only ever appears by ``os.replace`` of a temporary file in the same
directory, after its sha256 was checked, so several builds can share one cache and no reader ever sees
a partial or unverified blob. Nothing in the cache is trusted without checking: :meth:`Cache.lookup` hashes the
blob every time it is used (a few milliseconds for the few MiB a build places), so a cache shared between users,
restored by CI from elsewhere or damaged on disk can never put other bytes in an image. A blob whose bytes no
longer match is reported as missing; whoever next obtains it replaces it under the blob's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from boot2ipxe.errors import FetchError

CHUNK = 1 << 20
HEX = frozenset("0123456789abcdef")


def default_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$BOOT2IPXE_CACHE``, else ``${XDG_CACHE_HOME:-~/.cache}/boot2ipxe``."""
    env = os.environ if environ is None else environ
    if env.get("BOOT2IPXE_CACHE"):
        return Path(env["BOOT2IPXE_CACHE"]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "boot2ipxe"


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text) <= HEX


def hash_file(path: Path) -> str:
    """sha256 of a file, streamed. The one place the cache hashes a stored file (tests count calls)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def copy_hashed(source: IO[bytes], target: IO[bytes], limit: int | None = None) -> tuple[str, int] | None:
    """Stream ``source`` into ``target``: (sha256, size) of the bytes, or None once more than ``limit`` came."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest(), size


class Cache:
    """A cache directory. Safe to share between threads and processes; see the module docstring."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()  # blob paths are handed to tools run elsewhere (symlinked into staging)

    def __repr__(self) -> str:
        return f"Cache({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        if not isinstance(sha256, str) or not is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / "blobs" / "sha256" / sha256[:2] / sha256

    def _origin_path(self, sha256: str) -> Path:
        path = self.path(sha256)
        return path.with_name(path.name + ".origin")

    def shard(self, sha256: str) -> Path:
        """The blob's directory, created on demand (with a one-line error if it cannot be)."""
        directory = self.path(sha256).parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FetchError(
                f"cannot create the cache directory {directory}: {exc.strerror}; set --cache-dir or BOOT2IPXE_CACHE"
            ) from None
        return directory

    def partial(self, sha256: str) -> Path:
        return self.shard(sha256) / f".{sha256}.part"

    def lookup(self, sha256: str) -> Path | None:
        """The blob's path if it is cached and its bytes match (hashed now); None if missing or damaged."""
        path = self.path(sha256)
        try:
            return path if path.is_file() and hash_file(path) == sha256 else None
        except OSError:
            return None

    def origin(self, sha256: str) -> str:
        try:
            return self._origin_path(sha256).read_text(encoding="utf-8").strip() or "cache"
        except (OSError, UnicodeError):
            return "cache"

    @contextlib.contextmanager
    def locked(self, sha256: str) -> Iterator[None]:
        """Exclusive fcntl lock for obtaining one blob; other processes wait, then find it cached."""
        lock_path = self.shard(sha256) / f".{sha256}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def temp(self, sha256: str) -> Path:
        """A new empty temporary file beside the blob (the caller commits or removes it)."""
        path = self.shard(sha256) / f".tmp-{os.urandom(6).hex()}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        return path

    def commit(self, tmp: Path, sha256: str, digest: str, origin: str) -> Path:
        """Move a verified temporary file into place. ``digest`` is the sha256 computed while writing it.

        On a mismatch the temporary file is removed and ValueError raised: nothing bad enters the cache.
        """
        if digest != sha256:
            tmp.unlink(missing_ok=True)
            raise ValueError(f"sha256 {digest}, not the pinned {sha256}")
        path = self.path(sha256)
        try:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            tmp.chmod(0o444)
            tmp.replace(path)
            self._write_origin(sha256, origin)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise FetchError(f"cannot store {sha256} in the cache {self.root}: {exc.strerror or exc}") from None
        return path

    def commit_file(self, tmp: Path, sha256: str, origin: str) -> Path:
        """Hash a complete temporary file in the blob's directory (e.g. a finished download) and commit it."""
        return self.commit(tmp, sha256, hash_file(tmp), origin)

    def store_copy(self, source: Path, sha256: str, origin: str) -> Path:
        """Copy a local file into the cache if its bytes match; ValueError (nothing stored) if not."""
        tmp = self.temp(sha256)
        try:
            with source.open("rb") as src, tmp.open("wb") as out:
                copied = copy_hashed(src, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        assert copied is not None
        return self.commit(tmp, sha256, copied[0], origin)

    def discard(self, sha256: str) -> None:
        """Remove a damaged blob (call with the blob's lock held)."""
        self.path(sha256).unlink(missing_ok=True)

    def _write_origin(self, sha256: str, origin: str) -> None:
        tmp = self.temp(sha256)
        try:
            tmp.write_text(origin.replace("\n", " ") + "\n", encoding="utf-8")
            tmp.chmod(0o644)
            tmp.replace(self._origin_path(sha256))
        finally:
            tmp.unlink(missing_ok=True)

    def leftovers(self) -> list[Path]:
        """Temporary and partial files (for tests and diagnostics); locks are not leftovers."""
        base = self.root / "blobs"
        return sorted(p for p in base.rglob(".*") if not p.name.endswith(".lock")) if base.is_dir() else []
