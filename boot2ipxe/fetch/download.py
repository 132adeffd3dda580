"""HTTP(S) downloads for the fetch stage: timeouts, retries with back-off, resume with Range.

:func:`download` appends to a partial file and resumes it with ``Range: bytes=N-`` on the next attempt
(or the next run) when the server honours Range; a server that answers 200 instead restarts it from the
first byte. Connection errors, timeouts, bodies cut short and HTTP 5xx/408/429 are retried up to
``NetConfig.attempts`` times with exponential back-off; other HTTP errors, TLS errors and unknown host
names are not. Every failure is a :class:`DownloadError` whose message is one line fit for users.
The bytes are hashed as they arrive (a resumed file's first part once, before the rest): the caller gets
the sha256 of the complete file without reading it again, and checks it (see ``fetch.py``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import urlsplit

from boot2ipxe import __version__
from boot2ipxe.units import human_size

if TYPE_CHECKING:
    import requests  # imported by the first download: commands that never download do not pay for it

ProgressFn = Callable[[int, int | None], None]  # (bytes so far, total or None)
# The most one read returns: each read goes through urllib3 and http.client in Python, and on a fast link 1 MiB
# reads spend a sixteenth of the time 64 KiB reads spent there (bench/run.py, "cold fetch"). A read returns what
# has arrived (read1), so a slow link still writes, and can resume from, every few KiB it receives.
CHUNK = 1 << 20


@dataclass(frozen=True)
class NetConfig:
    connect_timeout: float = 10.0  # seconds to establish a connection
    read_timeout: float = 30.0  # seconds without a byte before giving up on a response
    attempts: int = 4  # per URL: the first try and three retries
    backoff: float = 1.0  # seconds before the first retry, doubled for each further one
    max_bytes: int = 4 * 1024**3  # a download larger than this is refused unless the size is pinned


class Downloaded(NamedTuple):
    sha256: str  # of the whole file, resumed part included
    received: int  # bytes this call received (over every attempt)
    started: float  # time.monotonic() when the first request went out


@dataclass
class _Tally:
    """A download's state across its attempts (and within one, for the messages)."""

    received: int = 0  # bytes received over every attempt
    started: float | None = None
    position: int = 0  # bytes the partial file holds in this attempt
    responded: bool = False  # this attempt got a response


class DownloadError(Exception):
    """One line: why this URL did not give its bytes."""

    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection  # the host itself failed (not an HTTP status): skip it for the run


class _Retry(Exception):
    def __init__(self, message: str, *, connection: bool = False) -> None:
        super().__init__(message)
        self.connection = connection


def download(
    session: requests.Session,
    url: str,
    partial: Path,
    net: NetConfig,
    expected_size: int | None = None,
    progress: ProgressFn | None = None,
) -> Downloaded:
    """Fetch ``url`` into ``partial`` (resuming what it already holds). On return the file is complete."""
    last, connection = "", False
    tally = _Tally()
    for attempt in range(1, net.attempts + 1):
        if attempt > 1:
            time.sleep(min(net.backoff * 2 ** (attempt - 2), 30.0))
        try:
            digest = _attempt(session, url, partial, net, expected_size, progress, tally)
            return Downloaded(digest, tally.received, tally.started if tally.started is not None else time.monotonic())
        except _Retry as exc:
            last = str(exc)
            connection = exc.connection
    attempts = f"{net.attempts} attempts" if net.attempts != 1 else "1 attempt"
    raise DownloadError(f"{last} (after {attempts})", connection=connection)


def _attempt(
    session: requests.Session,
    url: str,
    partial: Path,
    net: NetConfig,
    expected_size: int | None,
    progress: ProgressFn | None,
    tally: _Tally,
) -> str:
    """One request: the sha256 of the complete file, or _Retry / DownloadError saying why not."""
    import requests

    have = partial.stat().st_size if partial.exists() else 0
    if expected_size is not None and have > expected_size:
        partial.unlink()
        have = 0
    headers = {"User-Agent": f"boot2ipxe/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    tally.position, tally.responded = have, False
    if tally.started is None:
        tally.started = time.monotonic()
    try:
        with session.get(url, headers=headers, stream=True, timeout=(net.connect_timeout, net.read_timeout)) as r:
            tally.responded = True
            return _receive(r, partial, have, net, expected_size, progress, tally)
    except requests.exceptions.RequestException as exc:
        raise _failure(exc, url, net, tally) from None


def _receive(
    r: requests.Response,
    partial: Path,
    have: int,
    net: NetConfig,
    expected_size: int | None,
    progress: ProgressFn | None,
    tally: _Tally,
) -> str:
    """Append the response's body to ``partial`` (which holds ``have`` bytes), hashing it as it arrives."""
    start = _check_response(r, partial, have)
    if start is None:
        return _hash_prefix(partial, have).hexdigest()
    have = tally.position = start
    digest = _hash_prefix(partial, have)
    length = r.headers.get("Content-Length")
    total = have + int(length) if length and length.isdigit() else None
    if expected_size is not None and total is not None and total != expected_size:
        raise DownloadError(f"server sends {total} bytes, the spec pins size {expected_size}")
    limit = expected_size if expected_size is not None else net.max_bytes
    with partial.open("ab" if have else "wb") as f:
        for chunk in _chunks(r):
            f.write(chunk)
            digest.update(chunk)
            have = tally.position = have + len(chunk)
            tally.received += len(chunk)
            if have > limit:
                f.close()
                partial.unlink()
                raise DownloadError(f"more than {human_size(limit)} sent; refusing the rest")
            if progress is not None:
                progress(have, total)
    if total is not None and have < total:
        raise _Retry(f"connection closed after {have} of {total} bytes")
    return digest.hexdigest()


def _failure(exc: requests.exceptions.RequestException, url: str, net: NetConfig, tally: _Tally) -> Exception:
    """The _Retry (worth another attempt) or DownloadError (not) that a requests exception means."""
    import requests

    have = tally.position
    if isinstance(exc, requests.exceptions.SSLError):
        return DownloadError(f"TLS error: {_root_cause(exc)}", connection=True)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return _Retry(f"no connection within {net.connect_timeout:g} s", connection=True)
    if not isinstance(
        exc, requests.exceptions.ReadTimeout | requests.exceptions.ChunkedEncodingError | requests.exceptions.ConnectionError
    ):
        return DownloadError(f"request failed: {_root_cause(exc)}")
    cause = _root_cause(exc)
    if any(type(e).__name__ == "NameResolutionError" for e in _chain(exc)):
        return DownloadError(f"cannot resolve host {urlsplit(url).hostname}", connection=True)
    if isinstance(exc, requests.exceptions.ReadTimeout) or "timed out" in cause:
        return _Retry(f"no data for {net.read_timeout:g} s" + (f" after {have} bytes" if have else ""))
    if tally.responded:
        return _Retry(f"connection broken after {have} bytes ({cause})")
    return _Retry(f"cannot connect: {cause}", connection=True)


def _chunks(r: requests.Response) -> Iterator[bytes]:
    """The body as it arrives, up to CHUNK bytes at a time; urllib3's errors turned into requests' as
    ``Response.iter_content`` turns them (which reads exactly its chunk size, waiting for all of it)."""
    import requests
    import urllib3.exceptions

    read = r.raw.read1
    try:
        while chunk := read(CHUNK, decode_content=False):
            yield chunk
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc


def _hash_prefix(partial: Path, length: int) -> hashlib._Hash:
    """sha256 of the first ``length`` bytes of a partial download (what a resumed download continues)."""
    digest = hashlib.sha256()
    if length:
        with partial.open("rb") as f:
            while length > 0 and (chunk := f.read(min(CHUNK, length))):
                digest.update(chunk)
                length -= len(chunk)
    return digest


def _check_response(r: requests.Response, partial: Path, have: int) -> int | None:
    """Raise for an unusable status; return how many bytes of ``partial`` the response continues
    (None: the server says the partial file is already complete)."""
    if r.status_code == 416 and have:
        if r.headers.get("Content-Range", "") == f"bytes */{have}":
            return None  # the partial file already holds every byte
        partial.unlink()  # not a prefix the server can continue
        raise _Retry("HTTP 416 for a resumed download; restarting it")
    if r.status_code >= 500 or r.status_code in (408, 429):
        raise _Retry(f"HTTP {r.status_code} {r.reason}")
    if r.status_code not in (200, 206):
        raise DownloadError(f"HTTP {r.status_code} {r.reason}")
    if r.status_code == 200:
        return 0  # the whole body (the server ignored Range, if we sent one)
    start = _range_start(r)
    if start != have:
        partial.unlink(missing_ok=True)
        raise _Retry(f"server resumed at byte {start}, not {have}; restarting")
    return have


def _range_start(r: requests.Response) -> int:
    value = r.headers.get("Content-Range", "")  # bytes START-END/TOTAL
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        raise _Retry(f"HTTP 206 with an unreadable Content-Range {value!r}") from None


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and those wrapped inside it (an exception argument, else ``.reason``), outermost first."""
    chain = [exc]
    while len(chain) < 10:
        current = chain[-1]
        inner = next((a for a in current.args if isinstance(a, BaseException)), None)
        reason = getattr(inner if inner is not None else current, "reason", None)
        inner = reason if isinstance(reason, BaseException) else inner
        if inner is None:
            break
        chain.append(inner)
    return chain


def _root_cause(exc: BaseException) -> str:
    """The innermost readable reason: 'Connection refused' rather than a urllib3 pool repr."""
    current = _chain(exc)[-1]
    text = str(current)
    if "[Errno" in text:
        text = text[text.index("[Errno") :].split("]", 1)[-1].strip().rstrip(")'\"")
    return text.split("\n")[0][:200] or type(current).__name__
