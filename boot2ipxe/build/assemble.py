"""Write the image a plan describes, rootless, and check it before it takes the output's name.

Everything is written to a temporary file beside the target: the partition table's bytes (``formats/table.py``,
computed from the plan), then each filesystem (``filesystems.py``; they write disjoint byte ranges, so they run at
the same time), then the raw bootloader writes. The image is read back and compared with the plan
(``verify.py``), hashed, and only then renamed into place, with ``IMAGE.sha256``, ``IMAGE.manifest.json`` and
``IMAGE.bmap`` beside it. The same plan, blobs and SOURCE_DATE_EPOCH give the same bytes on any machine, in any
time zone.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boot2ipxe.build.filesystems import make_ext4, make_vfat, stage_files
from boot2ipxe.build.manifest import manifest, used_sources
from boot2ipxe.build.verify import verify_image
from boot2ipxe.errors import Boot2ipxeError, BuildError, InputError
from boot2ipxe.files import json_text, pending_file, write_atomic
from boot2ipxe.formats.sparse import bmap_for, full_sha256, scan
from boot2ipxe.formats.table import table_writes
from boot2ipxe.plan.layout import Plan
from boot2ipxe.spec.model import Blob
from boot2ipxe.tools import filesystem_tool_env


@dataclass(frozen=True)
class BuildResult:
    image: Path
    sha256: str
    manifest: dict[str, Any]


def write_at(image: Path, writes: Iterable[tuple[int, bytes]]) -> None:
    with image.open("r+b") as f:
        for offset, data in writes:
            f.seek(offset)
            f.write(data)


def build_image(plan: Plan, blobs: Mapping[str, Blob], output: Path, epoch: int) -> BuildResult:
    """Write ``output`` (atomically) with its .sha256, .manifest.json and .bmap; see the module docstring."""
    missing = [sid for sid in used_sources(plan) if sid not in blobs]
    if missing:
        raise BuildError(f"no fetched blob for sources: {', '.join(missing)}")
    if output.is_dir():
        raise InputError(f"{output}: is a directory; give an image file name with -o")
    env = filesystem_tool_env(epoch)
    sidecars = {ext: output.with_name(output.name + ext) for ext in (".sha256", ".manifest.json", ".bmap")}
    try:
        with pending_file(output) as image, tempfile.TemporaryDirectory(prefix="boot2ipxe-build-") as work:
            os.truncate(image, plan.size)
            write_at(image, table_writes(plan.partition_table()))
            _write_filesystems(plan, blobs, image, Path(work), env)
            write_at(image, ((raw.offset, blobs[raw.source].path.read_bytes()) for raw in plan.raw))
            verify_image(image, plan)
            found = scan(image)
            digest = full_sha256(image, found.ranges)
            result = BuildResult(output, digest, manifest(plan, blobs, epoch, digest))
            for sidecar in sidecars.values():
                sidecar.unlink(missing_ok=True)
            image.replace(output)
    except OSError as exc:
        raise Boot2ipxeError(f"{output}: cannot write the image: {exc.strerror or exc}") from None
    write_atomic(sidecars[".bmap"], bmap_for(found).encode())
    write_atomic(sidecars[".sha256"], f"{digest}  {output.name}\n".encode())
    write_atomic(sidecars[".manifest.json"], json_text(result.manifest).encode())
    return result


def _write_filesystems(plan: Plan, blobs: Mapping[str, Blob], image: Path, work: Path, env: Mapping[str, str]) -> None:
    """Every vfat and ext4 partition, at the same time. When several fail, the error that says the disk is full
    wins if there is one (on a full disk some tools fail without saying why), else the first in table order."""
    jobs: list[Callable[[], None]] = []
    for p in plan.partitions:
        if p.fat is not None:
            stage, scratch = work / f"p{p.index}", work / f"p{p.index}.fat"
            stage.mkdir()
            stage_files(p, blobs, stage)
            with scratch.open("wb") as f:
                f.truncate(p.size)
            jobs.append(functools.partial(make_vfat, p, image, scratch, stage, env))
        elif p.ext4 is not None:
            jobs.append(functools.partial(make_ext4, p, image, env))
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = [pool.submit(job) for job in jobs]
    errors = [e for e in (f.exception() for f in futures) if e is not None]
    if errors:
        raise next((e for e in errors if os.strerror(errno.ENOSPC) in str(e)), errors[0])
