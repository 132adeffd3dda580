"""What a fetch did, per source and per download, and the one-line problems it reports."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol
from urllib.parse import unquote, urlsplit

from boot2ipxe.errors import FetchError, Problem, key_path
from boot2ipxe.spec.model import Blob, Origin, Source, Spec


@dataclass(frozen=True)
class Outcome:
    """What happened to one source of one spec: status is "cached", "fetched" or "failed"."""

    spec: Spec
    source: str
    sha256: str
    status: str
    blob: Blob | None = None
    error: Problem | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"spec": self.spec.display_path, "source": self.source, "sha256": self.sha256}
        out["status"] = self.status
        if self.blob is not None:
            out |= {"size": self.blob.size, "path": str(self.blob.path), "origin": self.blob.origin}
        if self.error is not None:
            out["error"] = self.error.message
        return out


@dataclass(frozen=True)
class Transfer:
    """One download: bytes received and the seconds from the request to the last byte written and hashed."""

    url: str
    size: int
    started: float  # time.monotonic()
    ended: float


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)

    def transfer_summary(self) -> dict[str, object]:
        """Bytes downloaded, the seconds from the first request to the last byte, and their ratio (bytes/s)."""
        size = sum(t.size for t in self.transfers)
        ended, started = (
            max((t.ended for t in self.transfers), default=0.0),
            min((t.started for t in self.transfers), default=0.0),
        )
        span = round(ended - started, 6)
        return {"bytes": size, "seconds": span, "bytes_per_second": round(size / span) if span > 0 else None}

    @property
    def failures(self) -> list[Problem]:
        return [o.error for o in self.outcomes if o.error is not None]

    def blobs(self, spec: Spec) -> dict[str, Blob]:
        return {o.source: o.blob for o in self.outcomes if o.spec is spec and o.blob is not None}


class FetchFailed(FetchError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class Reporter(Protocol):
    def progress(self, label: str, done: int, total: int | None) -> None: ...
    def outcome(self, outcome: Outcome) -> None: ...


class QuietReporter:
    def progress(self, label: str, done: int, total: int | None) -> None:
        pass

    def outcome(self, outcome: Outcome) -> None:
        pass


def outcome_of(
    spec: Spec, source: Source, blob: Blob | None, status: str, reasons: list[str], *, offline: bool, cache: Path
) -> Outcome:
    """What happened to one source: its blob, or a problem explaining every origin that failed."""
    where = key_path(["sources", source.id])
    if blob is not None and source.size is not None and blob.size != source.size:
        message = f"the bytes match sha256 but are {blob.size} bytes, not size: {source.size}; fix the size in the spec"
        return Outcome(spec, source.id, source.sha256, "failed", blob, Problem(spec.display_path, where, message))
    if blob is not None:
        return Outcome(spec, source.id, source.sha256, status, blob)
    return Outcome(
        spec,
        source.id,
        source.sha256,
        "failed",
        None,
        Problem(spec.display_path, where, _explain(spec, source, reasons, offline, cache)),
    )


def _explain(spec: Spec, source: Source, reasons: list[str], offline: bool, cache: Path) -> str:
    shown = shlex.quote(spec.display_path)
    tried = "; ".join(f"[{i}] {r}" for i, r in enumerate(reasons, 1))
    if offline:
        names = sorted({file_name(o) for o in source.origins})
        local = [r for r in reasons if not r.endswith("(--offline)")]
        return (
            f"sha256 {source.sha256} is not in the cache {cache} and --offline allows no download: "
            f"run 'boot2ipxe fetch {shown}' where the network is reachable (same cache), or "
            f"'boot2ipxe fetch {shown} --import FILE' with a copy of {' or '.join(names)}"
            + (f"; local origins: {'; '.join(local)}" if local else "")
        )
    return (
        f"no origin gave sha256 {source.sha256}: {tried}; fix the origins or the mirror (--mirror NAME=URL), "
        f"or put a copy in the cache with 'boot2ipxe fetch {shown} --import FILE'"
    )


def file_name(origin: Origin) -> str:
    """The file an origin names (what to --import): the URL's or path's last component."""
    return origin.path.name if origin.path is not None else url_name(str(origin.url))


def url_name(url: str) -> str:
    return PurePosixPath(unquote(urlsplit(url).path)).name
