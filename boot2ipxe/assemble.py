"""Assemble stage: run a recipe, rootless (mtools and mke2fs on plain files), and check what it wrote.

Everything is written to a temporary file beside the target: the partition table's bytes (``table.py``), then
the recipe's lanes (each FAT, each ext4), which write disjoint byte ranges and run at the same time, then the raw
bootloader writes. The image is then checked against the
plan (``verify.py``) and hashed, and only then renamed into place, with ``IMAGE.sha256``,
``IMAGE.manifest.json`` and ``IMAGE.bmap`` beside it. The same plan, blobs and SOURCE_DATE_EPOCH give the
same bytes on any machine, in any time zone. With a build cache, an image whose bytes match one that
already passed the same checks is neither read back nor hashed again (``buildcache.py``).

A warm build runs this module straight from a stored recipe, so it imports only ``os`` and modules as light:
paths are strings (it takes ``pathlib.Path`` too), JSON is written by ``jsonout``, tools are spawned by
``tools``, threads are ``parallel``'s.
"""

from __future__ import annotations

import errno
import os

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import Boot2ipxeError, InputError
from boot2ipxe.jsonout import dumps
from boot2ipxe.outputs import write_atomic
from boot2ipxe.parallel import Background, at_once
from boot2ipxe.paths import remove_if_present
from boot2ipxe.sparse import bmap_for, full_sha256, place, scan
from boot2ipxe.tools import run

if TYPE_CHECKING:  # a warm build never plans: these are imported by build_image only
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType
    from typing import Any

    from boot2ipxe.buildcache import BuildCache
    from boot2ipxe.model import Blob
    from boot2ipxe.paths import PathLike
    from boot2ipxe.plan import Plan
    from boot2ipxe.recipe import Recipe

FAT_EPOCH = 315532800  # FAT cannot store times before 1980-01-01
MKE2FS_CONFIG = os.path.join(os.path.dirname(os.path.realpath(__file__)), "data", "mke2fs.conf")


class BuildResult:
    __slots__ = ("image", "manifest", "reused", "sha256")

    def __init__(self, image: str, sha256: str, manifest: dict[str, Any], reused: bool) -> None:
        self.image = image
        self.sha256 = sha256
        self.manifest = manifest
        self.reused = reused  # the image's bytes matched an image already checked and hashed (build cache)


def tool_env(epoch: int) -> dict[str, str]:
    """Environment that makes mtools and e2fsprogs deterministic and deaf to user configuration."""
    return {
        "TZ": "UTC",
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": str(epoch),
        "E2FSPROGS_FAKE_TIME": str(epoch),
        "MTOOLS_SKIP_CHECK": "1",
        "MTOOLSRC": os.devnull,
        "MKE2FS_CONFIG": MKE2FS_CONFIG,
    }


def new_pending(target: PathLike, suffix: str = "") -> str:
    """A new empty file beside ``target``, mode 0600 (a machine image holds its key); the caller removes it or
    renames it into place."""
    directory, name = os.path.split(os.fspath(target))
    if directory:
        os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f".{name}.{os.urandom(4).hex()}{suffix}.partial")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
    return path


class pending_file:  # lower case: used as a context manager, as contextlib's would be
    """``with pending_file(target) as tmp``: :func:`new_pending`, removed at the end unless renamed into place."""

    def __init__(self, target: PathLike, suffix: str = "") -> None:
        self.path = new_pending(target, suffix)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        remove_if_present(self.path)


class Workspace:
    """The files a recipe's lanes use besides the image: staged files for mcopy (rendered text, and blobs as
    symlinks) in a private temporary directory, and each FAT partition's scratch file beside the output."""

    def __init__(self, recipe: Recipe, output: str) -> None:
        self.made: list[str] = []  # in creation order; removed in reverse
        self.stage = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"boot2ipxe-stage-{os.urandom(6).hex()}")
        self.scratch: dict[str, str] = {}
        try:
            os.mkdir(self.stage, 0o700)
            self.made.append(self.stage)
            for item in recipe["stage"]:
                self._stage(item, recipe)
            for number, size in recipe["scratch"].items():
                self.scratch[number] = new_pending(output, f".p{number}")
                self.made.append(self.scratch[number])
                os.truncate(self.scratch[number], size)
        except BaseException:
            self.remove()
            raise

    def _stage(self, item: Mapping[str, str], recipe: Recipe) -> None:
        parts = item["path"].split("/")
        for depth in range(1, len(parts)):
            directory = os.path.join(self.stage, *parts[:depth])
            if not os.path.isdir(directory):
                os.mkdir(directory)
                self.made.append(directory)
        path = os.path.join(self.stage, *parts)
        if "text" in item:
            with open(path, "w", encoding="utf-8") as f:
                f.write(item["text"])
        else:
            os.symlink(recipe["blobs"][item["blob"]]["path"], path)
        self.made.append(path)

    def remove(self) -> None:
        for path in reversed(self.made):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)
            except OSError:
                pass
        self.made = []


def _argv(step: list[Any], image: str, stage: str, scratch: Mapping[str, str]) -> list[str]:
    out = []
    for item in step:
        if not isinstance(item, list):
            out.append(item)
        elif item[0] == "image":
            out.append(f"{image}{item[1]}")
        else:
            out.append(scratch[item[1]] if item[0] == "partition" else os.path.join(stage, item[1]))
    return out


def run_lanes(
    lanes: list[list[Any]], image: str, stage: str, env: Mapping[str, str], scratch: Mapping[str, str] | None = None
) -> None:
    """Run every lane at once (the first in this thread). When lanes fail, raise the error that says the disk is
    full if one does (on a full disk some tools fail without saying why), else the first in lane order."""
    files = scratch or {}

    def lane(steps: list[Any]) -> Callable[[], None]:
        def work() -> None:
            for step in steps:
                if "place" in step:
                    number, offset, start, end = step["place"]
                    place(files[number], image, offset, (start, end))
                else:
                    stdin = step.get("stdin")
                    run(_argv(step["argv"], image, stage, files), stdin=stdin.encode() if stdin else None, env=env)

        return work

    failed = [error for error in at_once([lane(steps) for steps in lanes]) if error is not None]
    if failed:
        raise next((error for error in failed if os.strerror(errno.ENOSPC) in str(error)), failed[0])


def _write_at(image: str, writes: Iterable[tuple[int, bytes]]) -> None:
    fd = os.open(image, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for offset, data in writes:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _blob_bytes(recipe: Recipe, sha256: str) -> bytes:
    with open(recipe["blobs"][sha256]["path"], "rb") as f:
        return f.read()


def execute(recipe: Recipe, output: PathLike, cache: BuildCache | None = None, reuse: bool = True) -> BuildResult:
    """Write the image a recipe describes at ``output`` (atomically), with its .sha256, .manifest.json and .bmap.

    With a build cache, an image identical to one already checked and hashed is not checked and hashed again,
    unless ``reuse`` is false; the cache learns each new image either way.
    """
    output = os.fspath(output)
    if os.path.isdir(output):
        raise InputError(f"{output}: is a directory; give an image file name with -o")
    env = tool_env(max(recipe["epoch"], FAT_EPOCH))
    sha_file, manifest_file, bmap_file = (output + ext for ext in (".sha256", ".manifest.json", ".bmap"))
    cleaner = None
    try:
        with pending_file(output) as tmp, pending_file(bmap_file) as tmp_bmap:
            work = Workspace(recipe, output)
            try:
                os.truncate(tmp, recipe["size"])
                _write_at(tmp, ((offset, bytes.fromhex(data)) for offset, data in recipe["table"]))
                run_lanes(recipe["lanes"], tmp, work.stage, env, work.scratch)
                _write_at(tmp, ((raw["offset"], _blob_bytes(recipe, raw["blob"])) for raw in recipe["raw"]))
            except BaseException:
                work.remove()
                raise
            cleaner = Background(work.remove)  # the staged and scratch files go while the image is scanned
            found = scan(tmp)
            digest = cache.known_image(found.content_key, recipe["expect"]) if cache is not None and reuse else None
            reused = digest is not None
            if digest is None:
                from boot2ipxe.verify import verify_image

                verify_image(tmp, recipe["expect"])
                digest = full_sha256(tmp, found.ranges)
                if cache is not None:
                    cache.remember_image(found.content_key, recipe["expect"], digest)
            with open(tmp_bmap, "w", encoding="utf-8") as f:
                f.write(bmap_for(found))
            manifest = {**recipe["manifest"], "image": {**recipe["manifest"]["image"], "sha256": digest}}
            for sidecar in (sha_file, manifest_file, bmap_file):
                remove_if_present(sidecar)
            os.replace(tmp, output)
            os.replace(tmp_bmap, bmap_file)
    except OSError as exc:
        raise Boot2ipxeError(f"{output}: cannot write the image: {exc.strerror or exc}") from None
    finally:
        if cleaner is not None:
            cleaner.join()
    # Not fsynced, as the image beside them is not: after a crash, build again.
    write_atomic(sha_file, f"{digest}  {os.path.basename(output)}\n".encode(), durable=False)
    write_atomic(manifest_file, (dumps(manifest, indent=2) + "\n").encode(), durable=False)
    return BuildResult(output, digest, manifest, reused)


def build_image(
    plan: Plan, blobs: Mapping[str, Blob], output: PathLike, epoch: int, cache: BuildCache | None = None
) -> BuildResult:
    """Write the image a plan describes: its recipe, executed (see :func:`execute`)."""
    from boot2ipxe.recipe import make_recipe

    return execute(make_recipe(plan, blobs, epoch), output, cache)
