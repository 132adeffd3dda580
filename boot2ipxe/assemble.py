"""Assemble stage: run a recipe, rootless (sfdisk, mtools, mke2fs on a plain file), and check what it wrote.

Everything is written to a temporary file beside the target; the recipe's lanes (the partition table, each
FAT, each ext4) write disjoint byte ranges and run at the same time. The image is then checked against the
plan (``verify.py``) and hashed, and only then renamed into place, with ``IMAGE.sha256``,
``IMAGE.manifest.json`` and ``IMAGE.bmap`` beside it. The same plan, blobs and SOURCE_DATE_EPOCH give the
same bytes on any machine, in any time zone. With a build cache, an image whose bytes match one that
already passed the same checks is neither read back nor hashed again (``buildcache.py``).

This module imports little: a warm build runs it straight from a stored recipe.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import Boot2ipxeError, InputError
from boot2ipxe.outputs import write_atomic
from boot2ipxe.sparse import bmap_for, full_sha256, place, scan
from boot2ipxe.tools import run

if TYPE_CHECKING:  # a warm build never plans: these are imported by build_image only
    from typing import Any

    from boot2ipxe.buildcache import BuildCache
    from boot2ipxe.model import Blob
    from boot2ipxe.plan import Plan
    from boot2ipxe.recipe import Recipe

FAT_EPOCH = 315532800  # FAT cannot store times before 1980-01-01


class BuildResult:
    __slots__ = ("image", "manifest", "reused", "sha256")

    def __init__(self, image: Path, sha256: str, manifest: dict[str, Any], reused: bool) -> None:
        self.image = image
        self.sha256 = sha256
        self.manifest = manifest
        self.reused = reused  # the image's bytes matched an image already checked and hashed (build cache)


@functools.cache
def _mke2fs_config() -> str:
    return str(Path(__file__).resolve().parent / "data" / "mke2fs.conf")


def tool_env(epoch: int) -> dict[str, str]:
    """Environment that makes mtools and e2fsprogs deterministic and deaf to user configuration."""
    return {
        "TZ": "UTC",
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": str(epoch),
        "E2FSPROGS_FAKE_TIME": str(epoch),
        "MTOOLS_SKIP_CHECK": "1",
        "MTOOLSRC": os.devnull,
        "MKE2FS_CONFIG": _mke2fs_config(),
    }


@contextlib.contextmanager
def pending_file(target: Path, suffix: str = "") -> Iterator[Path]:
    """A new empty file beside ``target``, mode 0600 (a machine image holds its key); removed unless the caller
    renamed it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.{os.urandom(4).hex()}{suffix}.partial")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged(recipe: Recipe) -> Iterator[Path]:
    """The files mcopy copies, in a private temporary directory: rendered text, and blobs as symlinks."""
    root = Path(os.environ.get("TMPDIR") or "/tmp") / f"boot2ipxe-stage-{os.urandom(6).hex()}"
    root.mkdir(mode=0o700)
    made: list[Path] = []
    try:
        for item in recipe["stage"]:
            path = root / item["path"]
            for parent in reversed(path.relative_to(root).parents[:-1]):
                if not (root / parent).is_dir():
                    (root / parent).mkdir()
                    made.append(root / parent)
            if "text" in item:
                path.write_text(item["text"], encoding="utf-8")
            else:
                path.symlink_to(recipe["blobs"][item["blob"]]["path"])
            made.append(path)
        yield root
    finally:
        for path in reversed(made):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    path.unlink()
        with contextlib.suppress(OSError):
            root.rmdir()


@contextlib.contextmanager
def scratch_files(recipe: Recipe, output: Path) -> Iterator[dict[str, Path]]:
    """Each FAT partition's own scratch file beside the output, of the partition's size; removed at the end."""
    with contextlib.ExitStack() as stack:
        files = {}
        for number, size in recipe["scratch"].items():
            files[number] = stack.enter_context(pending_file(output, f".p{number}"))
            os.truncate(files[number], size)
        yield files


def _argv(step: list[Any], image: Path, stage: Path, scratch: Mapping[str, Path]) -> list[str]:
    out = []
    for item in step:
        if not isinstance(item, list):
            out.append(item)
        elif item[0] == "image":
            out.append(f"{image}{item[1]}")
        else:
            out.append(str(scratch[item[1]] if item[0] == "partition" else stage / item[1]))
    return out


def run_lanes(
    lanes: list[list[Any]], image: Path, stage: Path, env: Mapping[str, str], scratch: Mapping[str, Path] | None = None
) -> None:
    """Run every lane at once (the first in this thread). When lanes fail, raise the error that says the disk is
    full if one does (on a full disk some tools fail without saying why), else the first in lane order."""
    errors: list[BaseException | None] = [None] * len(lanes)
    files = scratch or {}

    def lane(n: int) -> None:
        try:
            for step in lanes[n]:
                if "place" in step:
                    number, offset, start, end = step["place"]
                    place(files[number], image, offset, (start, end))
                else:
                    stdin = step.get("stdin")
                    run(_argv(step["argv"], image, stage, files), stdin=stdin.encode() if stdin else None, env=env)
        except BaseException as exc:  # re-raised in the calling thread below
            errors[n] = exc

    threads = [threading.Thread(target=lane, args=(n,), daemon=True) for n in range(1, len(lanes))]
    for thread in threads:
        thread.start()
    if lanes:
        lane(0)
    for thread in threads:
        thread.join()
    failed = [error for error in errors if error is not None]
    if failed:
        raise next((error for error in failed if os.strerror(errno.ENOSPC) in str(error)), failed[0])


def _write_raw(image: Path, recipe: Recipe) -> None:
    if not recipe["raw"]:
        return
    fd = os.open(image, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for raw in recipe["raw"]:
            os.pwrite(fd, Path(recipe["blobs"][raw["blob"]]["path"]).read_bytes(), raw["offset"])
    finally:
        os.close(fd)


def execute(recipe: Recipe, output: Path, cache: BuildCache | None = None, reuse: bool = True) -> BuildResult:
    """Write the image a recipe describes at ``output`` (atomically), with its .sha256, .manifest.json and .bmap.

    With a build cache, an image identical to one already checked and hashed is not checked and hashed again,
    unless ``reuse`` is false; the cache learns each new image either way.
    """
    if output.is_dir():
        raise InputError(f"{output}: is a directory; give an image file name with -o")
    env = tool_env(max(recipe["epoch"], FAT_EPOCH))
    sha_file, manifest_file, bmap_file = (output.with_name(output.name + ext) for ext in (".sha256", ".manifest.json", ".bmap"))
    cleaner = None
    try:
        with pending_file(output) as tmp, pending_file(bmap_file) as tmp_bmap:
            with contextlib.ExitStack() as work:
                stage = work.enter_context(staged(recipe))
                scratch = work.enter_context(scratch_files(recipe, output))
                os.truncate(tmp, recipe["size"])
                run_lanes(recipe["lanes"], tmp, stage, env, scratch)
                _write_raw(tmp, recipe)
                # The staged files and scratch files are removed while the image is scanned (joined below).
                cleaner = threading.Thread(target=work.pop_all().close, daemon=True)
                cleaner.start()
            found = scan(tmp)
            digest = cache.known_image(found.content_key, recipe["expect"]) if cache is not None and reuse else None
            reused = digest is not None
            if digest is None:
                from boot2ipxe.verify import verify_image

                verify_image(tmp, recipe["expect"])
                digest = full_sha256(tmp, found.ranges)
                if cache is not None:
                    cache.remember_image(found.content_key, recipe["expect"], digest)
            tmp_bmap.write_text(bmap_for(found), encoding="utf-8")
            manifest = {**recipe["manifest"], "image": {**recipe["manifest"]["image"], "sha256": digest}}
            for sidecar in (sha_file, manifest_file, bmap_file):
                sidecar.unlink(missing_ok=True)
            tmp.replace(output)
            tmp_bmap.replace(bmap_file)
    except OSError as exc:
        raise Boot2ipxeError(f"{output}: cannot write the image: {exc.strerror or exc}") from None
    finally:
        if cleaner is not None:
            cleaner.join()
    # Not fsynced, as the image beside them is not: after a crash, build again.
    write_atomic(sha_file, f"{digest}  {output.name}\n".encode(), durable=False)
    write_atomic(manifest_file, (json.dumps(manifest, indent=2) + "\n").encode(), durable=False)
    return BuildResult(output, digest, manifest, reused)


def build_image(plan: Plan, blobs: Mapping[str, Blob], output: Path, epoch: int, cache: BuildCache | None = None) -> BuildResult:
    """Write the image a plan describes: its recipe, executed (see :func:`execute`)."""
    from boot2ipxe.recipe import make_recipe

    return execute(make_recipe(plan, blobs, epoch), output, cache)
