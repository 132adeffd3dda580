"""Recipe stage: a plan and its fetched blobs turned into the exact commands and bytes that write the image.

A recipe is plain JSON-able data (no paths of the machine except the blobs', no objects), so the build cache
can store it: a warm build whose inputs are unchanged loads it and runs it, without parsing, validating,
rendering or planning again (``buildcache.py``). :func:`make_recipe` is pure; ``assemble.execute`` runs it.

Shape::

    format      RECIPE_FORMAT
    size        image bytes
    epoch       SOURCE_DATE_EPOCH for the tools and the manifest
    table       [offset, hex bytes] of the partition table (``table.py``), written before the lanes run
    lanes       lists of steps (one per filesystem); the lanes write disjoint byte ranges of the image and run at the same time,
                the steps of one lane in order. A step is {"argv": [...], "stdin": text or absent}; an argv
                item ["image", SUFFIX] stands for the temporary image's path followed by SUFFIX,
                ["partition", N] for partition N's own scratch file, and ["stage", PATH] for a staged file.
                A FAT is made in its partition's scratch file and its lane ends with {"place": [N, OFFSET,
                START, END]}: the scratch file's data is copied into the image at OFFSET, but for the zero
                blocks between START and END, its FATs (mformat writes them whole, nearly all zeros), which
                the image then never allocates.
    scratch     partition number -> bytes: the scratch files FAT lanes write in
    stage       files mcopy copies: {"path": relative path, "text": rendered text} or {"path", "blob": sha256}
    raw         {"offset": bytes, "blob": sha256} written after the lanes
    blobs       sha256 -> {"path"}: where the executor reads each blob (the build cache stores it without the path)
    expect      what the written image must read back as (see ``verify.py``)
    manifest    IMAGE.manifest.json, its image sha256 left null until the image is hashed
    warnings    validation warnings, printed again when the recipe is reused
"""

from __future__ import annotations

import hashlib

from boot2ipxe import TYPE_CHECKING, __version__
from boot2ipxe.errors import BuildError

if TYPE_CHECKING:  # a warm build imports this module for RECIPE_FORMAT only, not the model or the planner
    from collections.abc import Mapping
    from typing import Any

    from boot2ipxe.fat import FatGeometry
    from boot2ipxe.model import Blob
    from boot2ipxe.plan import Plan, PlannedPartition

RECIPE_FORMAT = "boot2ipxe-recipe/3"
if TYPE_CHECKING:
    Recipe = dict[str, Any]


def _image(suffix: str = "") -> list[str]:
    return ["image", suffix]


def _partition(p: PlannedPartition) -> list[str]:
    return ["partition", str(p.index)]


def mformat_argv(p: PlannedPartition, g: FatGeometry) -> list[Any]:
    argv: list[Any] = ["mformat", "-i", _partition(p), "-T", str(g.sectors), "-H", str(g.hidden_sectors)]
    argv += ["-h", "64", "-s", "32", "-c", str(g.sectors_per_cluster), "-R", str(g.reserved_sectors)]
    argv += ["-L", str(g.fat_sectors), "-d", str(g.fat_count), "-N", p.fs_id]
    argv += ["-F"] if g.bits == 32 else ["-r", str(g.root_dir_sectors)]
    if p.label:
        argv += ["-v", p.label]
    return [*argv, "::"]


def mke2fs_argv(p: PlannedPartition) -> list[Any]:
    assert p.ext4 is not None
    extended = f"offset={p.offset},hash_seed={p.ext4.hash_seed},root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard"
    argv: list[Any] = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", str(p.ext4.block_size), "-U", p.ext4.uuid, "-E", extended]
    if p.label:
        argv += ["-L", p.label]
    return [*argv, _image(), str(p.ext4.blocks)]


def _by_depth(path: str) -> tuple[int, str]:
    return path.count("/"), path.casefold()


def _fat_lane(p: PlannedPartition, g: FatGeometry, blobs: Mapping[str, Blob], stage: list[dict[str, str]]) -> list[Any]:
    """mformat, then as few mtools runs as keep cluster allocation the same on every machine, in the partition's
    scratch file; then its blocks that are not all zeros are placed in the image.

    One ``mcopy -s`` copies the root's files and its *chain* directories (each directory in them holds one
    entry), in sorted order: mcopy recurses in the staging directory's readdir order, which differs between
    machines, so it is only given directories where that order cannot matter. The other directories are
    made with one mmd and filled with one mcopy each, names sorted.
    """
    from pathlib import PurePosixPath

    target = _partition(p)
    for f in p.files:
        staged = {"path": f"p{p.index}/{f.dest}"}
        stage.append(
            {**staged, "text": f.data.decode("utf-8")} if f.data is not None else {**staged, "blob": blobs[f.source or ""].sha256}
        )
    children: dict[str, set[str]] = {}
    for f in p.files:
        parts = PurePosixPath(f.dest).parts
        for depth in range(len(parts)):
            children.setdefault("/".join(parts[:depth]), set()).add("/".join(parts[: depth + 1]))

    def chain(path: str) -> bool:
        return path not in children or (len(children[path]) == 1 and chain(next(iter(children[path]))))

    lane: list[Any] = [{"argv": mformat_argv(p, g)}]
    top = sorted(children.get("", set()), key=str.casefold)
    at_once = [path for path in top if chain(path)]
    if at_once:
        lane.append({"argv": ["mcopy", "-s", "-Q", "-i", target, *(["stage", f"p{p.index}/{path}"] for path in at_once), "::/"]})
    rest = [path for path in top if path not in at_once]
    directories = sorted({d for path in rest for d in _subdirectories(path, children)}, key=_by_depth)
    if directories:
        lane.append({"argv": ["mmd", "-i", target, *(f"::/{d}" for d in directories)]})
    for directory in directories:
        files = sorted((c for c in children[directory] if c not in children), key=str.casefold)
        if files:
            names = [["stage", f"p{p.index}/{path}"] for path in files]
            lane.append({"argv": ["mcopy", "-Q", "-i", target, *names, f"::/{directory}/"]})
    fats = (g.reserved_sectors * 512, (g.reserved_sectors + g.fat_count * g.fat_sectors) * 512)
    lane.append({"place": [str(p.index), p.offset, *fats]})
    return lane


def _subdirectories(path: str, children: Mapping[str, set[str]]) -> list[str]:
    """``path`` and every directory under it."""
    if path not in children:
        return []
    return [path, *(d for child in children[path] for d in _subdirectories(child, children))]


def expectations(plan: Plan) -> dict[str, Any]:
    """What the written image must read back as: the table and every FAT boot sector (``verify.py``)."""
    from dataclasses import asdict

    gpt = plan.table == "gpt"
    return {
        "table": plan.table,
        "partitions": [
            {
                "index": p.index,
                "start": p.start,
                "sectors": p.sectors,
                "type": p.type_code.lower(),
                "bootable": p.bootable,
                "name": p.name if gpt else None,
            }
            for p in plan.partitions
        ],
        "fat": [{"index": p.index, "offset": p.offset, "geometry": asdict(p.fat)} for p in plan.partitions if p.fat],
    }


def manifest(plan: Plan, blobs: Mapping[str, Blob], epoch: int) -> dict[str, Any]:
    spec = plan.spec
    files = []
    for p in plan.partitions:
        for f in sorted(p.files, key=lambda f: f.dest.casefold()):
            if f.data is not None:
                digest, size = hashlib.sha256(f.data).hexdigest(), len(f.data)
            else:
                blob = blobs[f.source or ""]
                digest, size = blob.sha256, blob.size
            files.append(
                {"partition": p.name, "dest": f.dest, "size": size, "sha256": digest, "kind": f.kind, "source": f.source}
            )
    used = _used_sources(plan)
    return {
        "format": "boot2ipxe-manifest/1",
        "tool": {"name": "boot2ipxe", "version": __version__},
        "spec": {"name": spec.name, "file": spec.display_path, "sha256": spec.sha256},
        "image": {"sha256": None, "size": plan.size},
        "source_date_epoch": epoch,
        "sources": [
            {"id": sid, "sha256": blobs[sid].sha256, "size": blobs[sid].size, "origin": blobs[sid].origin} for sid in used
        ],
        "files": files,
        "raw": [{"source": r.source, "offset": r.offset, "size": blobs[r.source].size} for r in plan.raw],
        "layout": plan.as_dict(),
    }


def _used_sources(plan: Plan) -> list[str]:
    """The sources a file or raw write of the plan takes, sorted."""
    return sorted({f.source for p in plan.partitions for f in p.files if f.source} | {r.source for r in plan.raw})


def make_recipe(plan: Plan, blobs: Mapping[str, Blob], epoch: int, warnings: list[str] | None = None) -> Recipe:
    missing = sorted({f.source for p in plan.partitions for f in p.files if f.source and f.source not in blobs})
    missing += sorted({r.source for r in plan.raw if r.source not in blobs})
    if missing:
        raise BuildError(f"no fetched blob for sources: {', '.join(missing)}")
    from boot2ipxe.table import table_writes

    stage: list[dict[str, str]] = []
    lanes: list[list[Any]] = []
    for p in plan.partitions:
        if p.fat is not None:
            lanes.append(_fat_lane(p, p.fat, blobs, stage))
        elif p.ext4 is not None:
            lanes.append([{"argv": mke2fs_argv(p)}])
    return {
        "format": RECIPE_FORMAT,
        "name": plan.spec.name,
        "size": plan.size,
        "epoch": epoch,
        "table": [[offset, data.hex()] for offset, data in table_writes(plan)],
        "lanes": lanes,
        "scratch": {str(p.index): p.size for p in plan.partitions if p.fat is not None},
        "stage": stage,
        "raw": [{"offset": r.offset, "blob": blobs[r.source].sha256} for r in plan.raw],
        "blobs": {blobs[sid].sha256: {"path": str(blobs[sid].path)} for sid in _used_sources(plan)},
        "expect": expectations(plan),
        "manifest": manifest(plan, blobs, epoch),
        "warnings": list(warnings or []),
    }
