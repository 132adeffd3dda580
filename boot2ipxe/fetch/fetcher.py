"""Obtaining every blob specs pin, verified by sha256, from the cache or else from its origins.

API for the build stage::

    from boot2ipxe.fetch.cache import Cache, default_dir
    from boot2ipxe.fetch.fetcher import FetchedBlob, Fetcher, fetch_for_build

    blobs = Fetcher(Cache(default_dir()), mirrors, offline=False).ensure(spec)  # {source id: FetchedBlob}
    blob = blobs["u-boot.bin"]
    blob.path    # read-only file in the cache whose sha256 was verified in this process
    blob.sha256, blob.size
    blob.origin  # for the image manifest, e.g. "${debian}/pool/…/u-boot-rpi_….deb (member usr/lib/…/u-boot.bin)"

    blobs = fetch_for_build(spec, mirrors, cache_dir=None, offline=False)  # the same, with progress on a TTY

``ensure`` raises :class:`report.FetchFailed` (exit 1) with one ``FILE:sources["id"]: …`` line per blob no origin
could give, each naming every origin tried and why it failed. ``Fetcher.fetch(specs)`` does several specs
at once (blobs shared between specs are fetched once) and returns a :class:`Report` instead of raising.

How: a blob already in the cache is used without any network request (hashed: every use of a cached blob
is). Otherwise, under the blob's lock, its origins are tried in order: a ``url`` (``${name}`` resolved by
``mirrors.Mirrors``; http(s) through ``download.py``, ``file://`` read locally) or a ``path``;
with ``extract``, the archive is itself obtained into the cache by its ``archive-sha256`` and then
opened, once per run, taking out every member any pending blob wants from it (``archive.py``). Bytes
enter the cache only when their sha256 matches the pin. ``offline=True`` makes no network request:
only the cache and local files (``path`` origins, ``file://`` mirrors) are used.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from boot2ipxe.errors import FetchError, InputError, key_path
from boot2ipxe.fetch import archive
from boot2ipxe.fetch.cache import Cache, default_dir, hash_file
from boot2ipxe.fetch.download import DownloadError, NetConfig, download
from boot2ipxe.fetch.report import (
    FetchFailed,
    Outcome,
    QuietReporter,
    Report,
    Reporter,
    Transfer,
    outcome_of,
    url_name,
)
from boot2ipxe.spec.mirrors import Mirrors
from boot2ipxe.spec.model import Blob, Origin, Source, Spec

if TYPE_CHECKING:
    import requests  # imported when the first download starts: a build with every blob cached never needs it

DEFAULT_NET = NetConfig()


FetchedBlob = Blob  # the fetch stage's name for it


class OriginFailed(Exception):
    """One origin did not give the pinned bytes; the message is the reason."""


_Result = tuple[FetchedBlob | None, str, list[str]]  # (blob, status, why each origin failed)


@dataclass
class _Need:
    """One distinct blob (by sha256) that at least one spec source needs."""

    sha256: str
    size: int | None
    origins: list[Origin]
    users: list[tuple[Spec, Source]]


def spread(needs: Sequence[_Need]) -> list[_Need]:
    """The needs in an order where the first ones each come from a different archive (or file): blobs taken from
    one archive wait for its download, so workers given them first would all wait on one download while the others
    had not started. Within one archive the order is kept."""
    groups: dict[str, list[_Need]] = {}
    for need in needs:
        archive = next((o.archive_sha256 for o in need.origins if o.extract and o.archive_sha256), None)
        groups.setdefault(archive or need.sha256, []).append(need)
    return [need for turn in itertools.zip_longest(*groups.values()) for need in turn if need is not None]


class Fetcher:
    """Obtains the blobs specs pin. Thread-safe per call; one instance may serve several calls."""

    def __init__(
        self,
        cache: Cache,
        mirrors: Mirrors,
        offline: bool = False,
        *,
        net: NetConfig | None = None,
        jobs: int = 4,
        reporter: Reporter | None = None,
        max_member_size: int | None = None,
    ) -> None:
        self.cache = cache
        self.mirrors = mirrors
        self.offline = offline
        self.net = net or DEFAULT_NET
        self.jobs = max(1, jobs)
        self.reporter: Reporter = reporter or QuietReporter()
        self.max_member_size = max_member_size
        self._lock = threading.Lock()
        self._thread_locks: dict[str, threading.Lock] = {}
        self._sessions = threading.local()
        self._resolved: dict[str, str] = {}
        self._failed: dict[tuple[str, str], str] = {}  # (location, sha256) -> reason, for archives many blobs share
        self._dead_hosts: dict[str, str] = {}
        self._wanted: dict[str, dict[str, str]] = {}  # archive sha256 -> {member: sha256 of the blob wanting it}
        self._extractions: dict[str, archive.Extraction] = {}
        self._temps: list[Path] = []
        self._transfers: list[Transfer] = []
        self._cancel = threading.Event()  # set on an exception (Ctrl-C) in the caller: workers stop soon

    def ensure(self, spec: Spec) -> dict[str, FetchedBlob]:
        """Every source of ``spec`` as a verified cached file; FetchFailed naming each one that failed."""
        report = self.fetch([spec])
        if report.failures:
            raise FetchFailed(report.failures)
        return report.blobs(spec)

    def fetch(self, specs: Sequence[Spec]) -> Report:
        needs: dict[str, _Need] = {}
        for spec in specs:
            for source in spec.sources.values():
                need = needs.setdefault(source.sha256, _Need(source.sha256, source.size, [], []))
                need.users.append((spec, source))
                need.size = need.size if need.size is not None else source.size
                need.origins += [o for o in source.origins if o not in need.origins]
        outcomes: dict[tuple[int, str], Outcome] = {}

        def record(need: _Need, result: _Result) -> None:
            for spec, source in need.users:
                outcomes[id(spec), source.id] = outcome = outcome_of(
                    spec, source, *result, offline=self.offline, cache=self.cache.root
                )
                self.reporter.outcome(outcome)

        pending = []
        for need in needs.values():
            path = self.cache.lookup(need.sha256)
            if path is None:
                pending.append(need)
            else:
                record(need, (self._cached(need.sha256, path), "cached", []))
        self._plan_extractions(pending)
        self._cancel.clear()
        self._failed.clear()
        self._dead_hosts.clear()
        self._transfers.clear()
        pool = ThreadPoolExecutor(max_workers=min(self.jobs, len(pending) or 1))
        try:
            started = {id(need): pool.submit(self._obtain, need) for need in spread(pending)}
            for need in pending:  # reported in the specs' order
                record(need, started[id(need)].result())
        except BaseException:
            self._cancel.set()  # running downloads stop at their next chunk
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            for tmp in self._temps:
                tmp.unlink(missing_ok=True)
            self._temps.clear()
            self._extractions.clear()
            self._wanted.clear()
        transfers = sorted(self._transfers, key=lambda t: t.started)
        return Report([outcomes[id(spec), source.id] for spec in specs for source in spec.sources.values()], transfers)

    def import_files(self, files: Sequence[Path], specs: Sequence[Spec]) -> list[tuple[Path, str, list[str]]]:
        """Put each file into the cache if a spec pins its sha256 (as a blob or an archive-sha256).

        Returns (file, sha256, what it matched) per file; an empty list means it matched nothing and was not stored.
        """
        pins: dict[str, list[str]] = {}
        for spec in specs:
            for source in spec.sources.values():
                where = f"{spec.display_path}:{key_path(['sources', source.id])}"
                pins.setdefault(source.sha256, []).append(where)
                for i, origin in enumerate(source.origins):
                    if origin.archive_sha256:
                        pins.setdefault(origin.archive_sha256, []).append(f"{where}.origins[{i}] (archive)")
        done = []
        for file in files:
            try:
                digest = hash_file(file)
            except OSError as exc:
                raise InputError(f"{file}: cannot read: {exc.strerror}") from None
            matched = list(dict.fromkeys(pins.get(digest, [])))
            if matched:
                with self._sha_lock(digest):
                    if self.cache.lookup(digest) is None:
                        try:
                            self.cache.store_copy(file, digest, f"imported {file.name}")
                        except (ValueError, OSError) as exc:
                            raise InputError(f"{file}: changed or unreadable while importing it ({exc}); try again") from None
            done.append((file, digest, matched))
        return done

    # -- one blob -------------------------------------------------------------------------------------

    def _obtain(self, need: _Need) -> _Result:
        reasons: list[str] = []
        with self._sha_lock(need.sha256):
            path = self.cache.lookup(need.sha256)  # another process may have stored it while we waited
            if path is not None:
                return self._cached(need.sha256, path), "cached", []
            self.cache.discard(need.sha256)  # a damaged copy, if there is one
            for n, origin in enumerate(need.origins):
                if self._cancel.is_set():
                    break
                try:
                    path = self._from_origin(need, origin, last=n == len(need.origins) - 1)
                    return FetchedBlob(path, need.sha256, path.stat().st_size, origin.describe()), "fetched", []
                except (OriginFailed, FetchError, OSError) as exc:
                    reasons.append(f"{self._where(origin)}: {exc}")
        return None, "failed", reasons

    def _from_origin(self, need: _Need, origin: Origin, last: bool) -> Path:
        if origin.extract is None:
            return self._direct(origin, need.sha256, need.size, last)
        if origin.archive_sha256 is None:
            raise OriginFailed("extract needs archive-sha256: an archive is verified before it is opened")
        member = _member(origin.extract)
        if origin.archive_sha256 == need.sha256:
            raise OriginFailed("archive-sha256 is the blob's own sha256")
        archive_path = self.cache.lookup(origin.archive_sha256)
        if archive_path is None:
            with self._sha_lock(origin.archive_sha256):
                archive_path = self.cache.lookup(origin.archive_sha256)
                if archive_path is None:
                    self.cache.discard(origin.archive_sha256)
                    archive_path = self._direct(origin, origin.archive_sha256, None, last)
        extraction = self._extract(origin.archive_sha256, archive_path)
        with self._lock:
            problem, found = extraction.problems.get(member), extraction.found.get(member)
        if problem is not None or found is None:
            raise OriginFailed(problem or f"{member} was not extracted")
        if found.sha256 != need.sha256:
            raise OriginFailed(f"member {member} has sha256 {found.sha256}, not the pinned {need.sha256}")
        return self.cache.commit(found.path, need.sha256, found.sha256, origin.describe())

    def _direct(self, origin: Origin, sha256: str, size: int | None, last: bool) -> Path:
        """The bytes at the origin's url or path (not extracted) into the cache as ``sha256``.

        Only the last origin of a source is retried: before it, the next origin is the better retry.
        """
        label = str(origin.path) if origin.path is not None else str(origin.url)
        location, local = self._locate(origin)
        with self._lock:
            if (location, sha256) in self._failed:
                raise OriginFailed(self._failed[(location, sha256)])
        try:
            if local is not None:
                return self._copy(local, sha256, label)
            return self._download(location, sha256, size, label, self.net if last else replace(self.net, attempts=1))
        except OriginFailed as exc:
            with self._lock:
                self._failed[(location, sha256)] = str(exc)
            raise

    def _copy(self, local: Path, sha256: str, label: str) -> Path:
        if not local.is_file():
            raise OriginFailed(f"no such file {local}")
        try:
            return self.cache.store_copy(local, sha256, label)
        except ValueError as exc:
            raise OriginFailed(f"has {exc}") from None
        except OSError as exc:
            raise OriginFailed(f"cannot read {local}: {exc.strerror}") from None

    def _download(self, url: str, sha256: str, size: int | None, label: str, net: NetConfig) -> Path:
        host = urlsplit(url).netloc
        with self._lock:
            dead = self._dead_hosts.get(host)
        if self.offline:
            raise OriginFailed("not downloaded (--offline)")
        if dead is not None:
            raise OriginFailed(f"{dead} (host failed earlier in this run)")
        partial = self.cache.partial(sha256)
        name = url_name(url) or url
        for restart in (False, True):
            resumed = partial.exists() and partial.stat().st_size > 0
            try:
                digest, received, started = download(
                    self._session(), url, partial, net, size, lambda d, t: self._progress(name, d, t)
                )
                with self._lock:
                    self._transfers.append(Transfer(url, received, started, time.monotonic()))
            except DownloadError as exc:
                if exc.connection:
                    with self._lock:
                        self._dead_hosts[host] = str(exc)
                raise OriginFailed(str(exc)) from None
            if digest == sha256:
                return self.cache.commit(partial, sha256, digest, label)
            partial.unlink(missing_ok=True)
            if not resumed or restart:  # a stale partial from an earlier run gets one fresh download
                raise OriginFailed(f"served bytes with sha256 {digest}, not the pinned {sha256}")
        raise AssertionError("unreachable")

    def _extract(self, archive_sha256: str, path: Path) -> archive.Extraction:
        """Every wanted member of one archive, in one pass, once per run."""
        with self._thread_lock("extract:" + archive_sha256):
            with self._lock:
                if archive_sha256 in self._extractions:
                    return self._extractions[archive_sha256]
                wanted = dict(self._wanted.get(archive_sha256, {}))
            dest = {}
            for member, sha256 in wanted.items():
                dest[member] = self.cache.temp(sha256)
                with self._lock:
                    self._temps.append(dest[member])
            try:
                result = archive.extract(path, list(wanted), dest, self.max_member_size)
            except archive.ArchiveError as exc:
                result = archive.Extraction(problems=dict.fromkeys(wanted, f"archive {archive_sha256[:12]}…: {exc}"))
            with self._lock:
                self._extractions[archive_sha256] = result
            return result

    def _plan_extractions(self, pending: Sequence[_Need]) -> None:
        for need in pending:
            for origin in need.origins:
                if origin.extract and origin.archive_sha256:
                    with contextlib.suppress(OriginFailed):
                        self._wanted.setdefault(origin.archive_sha256, {}).setdefault(_member(origin.extract), need.sha256)

    # -- helpers --------------------------------------------------------------------------------------

    def _progress(self, label: str, done: int, total: int | None) -> None:
        if self._cancel.is_set():
            raise OriginFailed("interrupted")
        self.reporter.progress(label, done, total)

    def _cached(self, sha256: str, path: Path) -> FetchedBlob:
        return FetchedBlob(path, sha256, path.stat().st_size, self.cache.origin(sha256))

    def _where(self, origin: Origin) -> str:
        try:
            where = self._resolve(origin)
        except OriginFailed:
            where = str(origin.url)
        return f"{where} (member {origin.extract})" if origin.extract else where

    def _resolve(self, origin: Origin) -> str:
        """The origin's path, or its URL with mirrors resolved (once per URL)."""
        if origin.path is not None:
            return str(origin.path)
        assert origin.url is not None
        with self._lock:
            url = self._resolved.get(origin.url)
        if url is None:
            try:
                url = self.mirrors.resolve(origin.url)
            except InputError as exc:
                raise OriginFailed(str(exc)) from None
            with self._lock:
                self._resolved[origin.url] = url
        return url

    def _locate(self, origin: Origin) -> tuple[str, Path | None]:
        """(what to show, a local file or None for http(s))."""
        url = self._resolve(origin)
        if origin.path is not None:
            return url, origin.path
        parts = urlsplit(url)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise OriginFailed(f"file:// URL with a host ({parts.netloc}) is not supported")
            from urllib.request import url2pathname

            return url, Path(url2pathname(unquote(parts.path)))
        if parts.scheme not in ("http", "https"):
            raise OriginFailed(f"unsupported URL scheme {parts.scheme!r}")
        return url, None

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:
            import requests

            session = self._sessions.session = requests.Session()
        return session

    def _thread_lock(self, key: str) -> threading.Lock:
        with self._lock:
            return self._thread_locks.setdefault(key, threading.Lock())

    @contextlib.contextmanager
    def _sha_lock(self, sha256: str) -> Iterator[None]:
        """Exclusive within this process (threads) and across processes (fcntl)."""
        with self._thread_lock(sha256), self.cache.locked(sha256):
            yield


def _member(name: str) -> str:
    try:
        return archive.member_name(name)
    except archive.ArchiveError:
        raise OriginFailed(f"extract: {name!r} must be a relative path without '..'") from None


def fetch_for_build(
    spec: Spec, mirrors: Mirrors, cache_dir: Path | None = None, offline: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, FetchedBlob]:
    """What ``build`` calls: the cache from --cache-dir or the default, progress on stderr when it is a TTY."""
    from boot2ipxe.progress import TtyProgress

    reporter = TtyProgress(sys.stderr) if sys.stderr.isatty() else None
    try:
        return Fetcher(Cache(cache_dir or default_dir(environ)), mirrors, offline, reporter=reporter).ensure(spec)
    finally:
        if reporter is not None:
            reporter.close()
