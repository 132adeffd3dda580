"""One handler per filesystem: how a planned vfat or ext4 partition is written into the image, rootless.

Each handler writes only its partition's byte range of the image, so the build runs them at the same time.
Every command's argv is computed from the plan (``plan/layout.py``) and run through ``tools.run``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from boot2ipxe.formats.fat import FatGeometry
from boot2ipxe.formats.sparse import place
from boot2ipxe.plan.layout import PlannedPartition
from boot2ipxe.spec.model import Blob
from boot2ipxe.tools import run
from boot2ipxe.units import SECTOR


def mformat_argv(target: str, p: PlannedPartition, g: FatGeometry) -> list[str]:
    """mformat told every geometry field the plan computed (``build/verify.py`` reads them back)."""
    argv = ["mformat", "-i", target, "-T", str(g.sectors), "-H", str(g.hidden_sectors)]
    argv += ["-h", "64", "-s", "32", "-c", str(g.sectors_per_cluster), "-R", str(g.reserved_sectors)]
    argv += ["-L", str(g.fat_sectors), "-d", str(g.fat_count), "-N", p.fs_id]
    argv += ["-F"] if g.bits == 32 else ["-r", str(g.root_dir_sectors)]
    if p.label:
        argv += ["-v", p.label]
    return [*argv, "::"]


def mke2fs_argv(image: Path, p: PlannedPartition) -> list[str]:
    assert p.ext4 is not None
    extended = f"offset={p.offset},hash_seed={p.ext4.hash_seed},root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard"
    argv = ["mke2fs", "-q", "-F", "-t", "ext4", "-b", str(p.ext4.block_size), "-U", p.ext4.uuid, "-E", extended]
    if p.label:
        argv += ["-L", p.label]
    return [*argv, str(image), str(p.ext4.blocks)]


def make_ext4(p: PlannedPartition, image: Path, env: Mapping[str, str]) -> None:
    """mke2fs writes the filesystem in place, at the partition's offset (only the blocks it needs)."""
    run(mke2fs_argv(image, p), env=env)


def stage_files(p: PlannedPartition, blobs: Mapping[str, Blob], stage: Path) -> None:
    """The partition's files as mcopy will copy them: rendered text written, blobs linked from the cache."""
    for f in p.files:
        path = stage.joinpath(*PurePosixPath(f.dest).parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        if f.data is not None:
            path.write_bytes(f.data)
        else:
            path.symlink_to(blobs[f.source or ""].path)


def make_vfat(p: PlannedPartition, image: Path, scratch: Path, stage: Path, env: Mapping[str, str]) -> None:
    """mformat and mtools in the partition's own scratch file, then its blocks that hold data placed into the image.

    mformat writes both FATs whole, nearly all zeros: placing only the data keeps the image sparse. Files are
    copied with as few mtools runs as keep cluster allocation the same on every machine: one ``mcopy -s`` copies
    the root's files and its *chain* directories (each directory in them holds one entry), in sorted order —
    mcopy recurses in the staging directory's readdir order, which differs between machines, so it is only given
    directories where that order cannot matter; the other directories are made with one mmd and filled with one
    mcopy each, names sorted.
    """
    assert p.fat is not None
    g = p.fat
    target = str(scratch)
    run(mformat_argv(target, p, g), env=env)
    children: dict[str, set[str]] = {}
    for f in p.files:
        parts = PurePosixPath(f.dest).parts
        for depth in range(len(parts)):
            children.setdefault("/".join(parts[:depth]), set()).add("/".join(parts[: depth + 1]))

    def chain(path: str) -> bool:
        return path not in children or (len(children[path]) == 1 and chain(next(iter(children[path]))))

    top = sorted(children.get("", set()), key=str.casefold)
    at_once = [path for path in top if chain(path)]
    if at_once:
        run(["mcopy", "-s", "-Q", "-i", target, *(str(stage / path) for path in at_once), "::/"], env=env)
    rest = [path for path in top if path not in at_once]
    directories = sorted({d for path in rest for d in _subdirectories(path, children)}, key=_by_depth)
    if directories:
        run(["mmd", "-i", target, *(f"::/{d}" for d in directories)], env=env)
    for directory in directories:
        files = sorted((c for c in children[directory] if c not in children), key=str.casefold)
        if files:
            run(["mcopy", "-Q", "-i", target, *(str(stage / path) for path in files), f"::/{directory}/"], env=env)
    fats = (g.reserved_sectors * SECTOR, (g.reserved_sectors + g.fat_count * g.fat_sectors) * SECTOR)
    place(scratch, image, p.offset, fats)


def _by_depth(path: str) -> tuple[int, str]:
    return path.count("/"), path.casefold()


def _subdirectories(path: str, children: Mapping[str, set[str]]) -> list[str]:
    """``path`` and every directory under it."""
    if path not in children:
        return []
    return [path, *(d for child in children[path] for d in _subdirectories(child, children))]
