"""Seals on what boot2ipxe trusts without checking again: blob stamps, stored recipes, checked images.

A seal is an HMAC-SHA256 under a key kept outside the cache, in ``${XDG_STATE_HOME:-~/.local/state}/boot2ipxe/
cache.key`` (32 random bytes, mode 0600, made on first use). Whoever can write the cache but cannot read that
key cannot make boot2ipxe skip a check or run a command: an entry whose seal does not verify is a miss, so a
cache shared with others, copied from another machine or restored by CI is checked again once, then sealed
anew. Without a usable key (no writable state directory) nothing is trusted and every check runs.
"""

from __future__ import annotations

import _thread
import hashlib
import hmac
import os

KEY_BYTES = 32


def state_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "boot2ipxe")


def key() -> bytes | None:
    return _key_at(os.path.join(state_dir(), "cache.key"))


_lock = _thread.allocate_lock()
_keys: dict[str, bytes | None] = {}  # path -> key, per process


def _key_at(path: str) -> bytes | None:
    """The key in ``path``, made if there is none: written whole to a temporary file, then hard-linked into place,
    so that another thread or process sees either no key or the whole key, and all agree on one."""
    with _lock:
        if path not in _keys:
            _keys[path] = _read_or_make(path)
        return _keys[path]


def _read_or_make(path: str) -> bytes | None:
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    except OSError:
        return None
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.urandom(4).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(KEY_BYTES))
            try:
                os.link(tmp, path)
            except FileExistsError:  # another process made one first: use that one
                pass
        finally:
            os.unlink(tmp)
        return _read_key(path)
    except OSError:
        return None


def _read_key(path: str) -> bytes | None:
    with open(path, "rb") as f:
        data = f.read(KEY_BYTES + 1)
    return data if len(data) == KEY_BYTES else None


def seal(data: bytes) -> str | None:
    """The seal of ``data``, or None when there is no key."""
    secret = key()
    return hmac.new(secret, data, hashlib.sha256).hexdigest() if secret is not None else None


def verify(data: bytes, tag: str) -> bool:
    expected = seal(data)
    return expected is not None and hmac.compare_digest(expected, tag)
