"""The blob cache's read side: where a blob lives, whether its bytes still match, and where they came from.

``cache.py`` (the whole cache: fetching into it, locking, committing) is built on this module; a warm build
uses this module alone, so it imports nothing but ``os``, ``hashlib`` and ``seal``. Paths are strings here.
A blob is hashed again only when its sealed ``.verified`` stamp (device, inode, size, mtime, ctime when its
sha256 last matched) no longer matches the file; see ``cache.py`` for why that is safe.
"""

from __future__ import annotations

import _thread
import hashlib
import os

from boot2ipxe import TYPE_CHECKING, seal
from boot2ipxe.paths import remove_if_present

if TYPE_CHECKING:
    from boot2ipxe.paths import PathLike

HEX = "0123456789abcdef"

# Process-wide memo of verified blobs: path -> (sha256, device, inode, size, mtime_ns, ctime_ns).
_verified: dict[str, tuple[str, int, int, int, int, int]] = {}
_verified_lock = _thread.allocate_lock()


def is_sha256(text: str) -> bool:
    return len(text) == 64 and not text.strip(HEX)


def blob_path(root: PathLike, sha256: str) -> str:
    if not isinstance(sha256, str) or not is_sha256(sha256):
        raise ValueError(f"not a sha256: {sha256!r}")
    return os.path.join(root, "blobs", "sha256", sha256[:2], sha256)


def stamp_path(root: PathLike, sha256: str) -> str:
    return os.path.join(root, "blobs", "sha256", sha256[:2], f".{sha256}.verified")


def origin_path(root: PathLike, sha256: str) -> str:
    return blob_path(root, sha256) + ".origin"


def hash_file(path: PathLike) -> str:
    """sha256 of a file, streamed. The one place the cache hashes a stored file (tests count calls)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def stamp_text(sha256: str, st: os.stat_result) -> str | None:
    """The blob's identity when its bytes were last found to match, sealed (``seal.py``); None without a key."""
    fields = " ".join([sha256, *map(str, stat_key(st))])
    tag = seal.seal(fields.encode())
    return f"{fields} {tag}\n" if tag is not None else None


def remember(path: str, sha256: str, st: os.stat_result) -> None:
    with _verified_lock:
        _verified[path] = (sha256, *stat_key(st))


def forget(path: str) -> None:
    with _verified_lock:
        _verified.pop(path, None)


def lookup(root: PathLike, sha256: str) -> str | None:
    """The blob's path if it is cached and its bytes match; None if missing or damaged."""
    path = blob_path(root, sha256)
    try:
        st = os.stat(path)
    except OSError:
        return None
    with _verified_lock:
        memo = _verified.get(path)
    if memo is not None and memo[0] == sha256 and memo[1:] == stat_key(st):
        return path
    try:
        expected = stamp_text(sha256, st)
        with open(stamp_path(root, sha256), encoding="utf-8") as f:
            good = expected is not None and f.read() == expected
    except (OSError, UnicodeError):
        good = False
    if not good:
        try:
            good = hash_file(path) == sha256
        except OSError:
            return None
        if good:
            write_stamp(root, sha256, st)
    if good:
        remember(path, sha256, st)
        return path
    return None


def write_stamp(root: PathLike, sha256: str, st: os.stat_result) -> None:
    text = stamp_text(sha256, st)
    if text is not None:
        try:
            replace_with(stamp_path(root, sha256), text)
        except OSError:  # a read-only cache: the blob is hashed again next time
            pass


def origin(root: PathLike, sha256: str) -> str:
    try:
        with open(origin_path(root, sha256), encoding="utf-8") as f:
            return f.read().strip() or "cache"
    except OSError:
        return "cache"


def replace_with(target: str, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file in the same directory and a rename."""
    tmp = os.path.join(os.path.dirname(target), f".tmp-{os.urandom(6).hex()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        remove_if_present(tmp)
        raise
