"""Assemble stage: write the planned image, rootless (sfdisk, mtools, mke2fs on a plain file).

Everything is written to a temporary file beside the target, checked against the plan, and only
then renamed into place, with ``IMAGE.sha256``, ``IMAGE.manifest.json`` and ``IMAGE.bmap`` beside it. The same
plan, blobs and SOURCE_DATE_EPOCH give the same bytes on any machine, in any time zone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from boot2ipxe import __version__
from boot2ipxe.errors import BuildError, InputError
from boot2ipxe.fat import SECTOR, FatGeometry, read_boot_sector
from boot2ipxe.model import Blob
from boot2ipxe.outputs import write_atomic
from boot2ipxe.sparse import hash_image
from boot2ipxe.tools import run

if TYPE_CHECKING:  # inject uses this module without planning anything (plan imports the spec stack)
    from boot2ipxe.plan import Plan, PlannedFile, PlannedPartition

FAT_EPOCH = 315532800  # FAT cannot store times before 1980-01-01


@dataclass(frozen=True)
class BuildResult:
    image: Path
    sha256: str
    manifest: dict[str, Any]


@functools.cache
def _mke2fs_config() -> str:
    return str(resources.files("boot2ipxe").joinpath("data/mke2fs.conf"))


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


def sfdisk_script(plan: Plan) -> str:
    lines = [
        f"label: {'gpt' if plan.table == 'gpt' else 'dos'}",
        f"label-id: {plan.disk_id}",
        "unit: sectors",
        "sector-size: 512",
    ]
    if plan.table == "gpt":
        lines += [f"first-lba: {plan.first_usable}", f"last-lba: {plan.last_usable}", "table-length: 128"]
    for p in plan.partitions:
        fields = [f"start={p.start}", f"size={p.sectors}", f"type={p.type_code}"]
        if plan.table == "gpt":
            fields += [f"uuid={p.uuid}", f'name="{p.name}"']
            if p.bootable:
                fields.append('attrs="LegacyBIOSBootable"')
        elif p.bootable:
            fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def mformat_argv(image: Path, p: PlannedPartition, g: FatGeometry) -> list[str]:
    argv = ["mformat", "-i", f"{image}@@{p.offset}", "-T", str(g.sectors), "-H", str(g.hidden_sectors)]
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


class Assembler:
    def __init__(self, plan: Plan, blobs: Mapping[str, Blob], epoch: int) -> None:
        missing = sorted({f.source for p in plan.partitions for f in p.files if f.source and f.source not in blobs})
        missing += sorted({r.source for r in plan.raw if r.source not in blobs})
        if missing:
            raise BuildError(f"no fetched blob for sources: {', '.join(missing)}")
        self.plan = plan
        self.blobs = blobs
        self.epoch = epoch
        self.env = tool_env(max(epoch, FAT_EPOCH))

    def write(self, image: Path, staging: Path) -> None:
        with image.open("r+b") as f:
            f.truncate(self.plan.size)
        run(
            ["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", "--wipe", "always", str(image)],
            stdin=sfdisk_script(self.plan).encode(),
            env=self.env,
        )
        for p in self.plan.partitions:
            if p.fat is not None:
                self._vfat(image, p, p.fat, staging / f"p{p.index}")
            elif p.ext4 is not None:
                run(mke2fs_argv(image, p), env=self.env)
        if self.plan.raw:
            with image.open("r+b") as f:
                for raw in self.plan.raw:
                    f.seek(raw.offset)
                    f.write(self.blobs[raw.source].path.read_bytes())
        # mformat writes whole FATs of zeros; give those blocks back so the image stays sparse.
        run(["fallocate", "--dig-holes", str(image)])

    def _vfat(self, image: Path, p: PlannedPartition, g: FatGeometry, staging: Path) -> None:
        run(mformat_argv(image, p, g), env=self.env)
        target = f"{image}@@{p.offset}"
        directories = sorted(
            {str(d) for f in p.files for d in PurePosixPath(f.dest).parents if str(d) != "."},
            key=lambda d: (d.count("/"), d.casefold()),
        )
        if directories:
            run(["mmd", "-i", target, *(f"::/{d}" for d in directories)], env=self.env)
        # One mcopy per directory, names in sorted order, so cluster allocation is reproducible.
        by_directory: dict[str, list[PlannedFile]] = {}
        for f in p.files:
            by_directory.setdefault(str(PurePosixPath(f.dest).parent), []).append(f)
        for directory in sorted(by_directory, key=lambda d: (d.count("/"), d.casefold())):
            folder = staging / directory
            folder.mkdir(parents=True, exist_ok=True)
            names = []
            for f in sorted(by_directory[directory], key=lambda f: f.dest.casefold()):
                staged = folder / PurePosixPath(f.dest).name
                if f.data is not None:
                    staged.write_bytes(f.data)
                else:
                    staged.symlink_to(self.blobs[f.source or ""].path)
                names.append(str(staged))
            dest = "::/" if directory == "." else f"::/{directory}/"
            run(["mcopy", "-Q", "-i", target, *names, dest], env=self.env)

    def verify(self, image: Path) -> None:
        """Read the written image back and compare it with the plan."""
        from boot2ipxe.inspect import read_partition_table

        table = read_partition_table(image)
        if table.kind != self.plan.table or len(table.partitions) != len(self.plan.partitions):
            raise BuildError(f"{image}: partition table reads back as {table.kind} with {len(table.partitions)} partitions")
        for want, got in zip(self.plan.partitions, table.partitions, strict=True):
            if (got.start, got.sectors, got.type_code.lower(), got.bootable) != (
                want.start,
                want.sectors,
                want.type_code.lower(),
                want.bootable,
            ):
                raise BuildError(f"{image}: partition {want.index} reads back as {got}, planned {want.start}+{want.sectors}")
        self._verify_with_libparted(image)
        with image.open("rb") as f:
            for p in self.plan.partitions:
                if p.fat is None:
                    continue
                f.seek(p.offset)
                written = read_boot_sector(f.read(SECTOR))
                if written != p.fat:
                    raise BuildError(f"{image}: FAT in partition {p.index} differs from the plan: {written} != {p.fat}")

    def _verify_with_libparted(self, image: Path) -> None:
        """A second, independent reader of the table sfdisk wrote: libparted (pyparted).

        libparted 3.5 cannot report type codes (sfdisk's read-back checks those); it checks the table kind, every
        partition's extent, the MBR active flag, GPT names and the GPT legacy-BIOS-bootable attribute.
        """
        import parted

        try:
            disk = parted.newDisk(parted.getDevice(str(image)))
        except (parted.DiskException, parted.IOException) as exc:
            raise BuildError(f"{image}: libparted cannot read the partition table sfdisk wrote: {exc}") from None
        gpt = self.plan.table == "gpt"
        if disk.type != ("gpt" if gpt else "msdos"):
            raise BuildError(f"{image}: libparted reads a {disk.type} table, planned {self.plan.table}")
        got = [
            (
                p.number,
                p.geometry.start,
                p.geometry.length,
                p.getFlag(parted.PARTITION_LEGACY_BOOT if gpt else parted.PARTITION_BOOT),
                p.name if gpt else None,
            )
            for p in disk.partitions
        ]
        want = [(p.index, p.start, p.sectors, p.bootable, p.name if gpt else None) for p in self.plan.partitions]
        if got != want:
            raise BuildError(f"{image}: libparted reads the partitions as {got}, planned {want}")

    def manifest(self, image_sha256: str) -> dict[str, Any]:
        spec = self.plan.spec
        files = []
        for p in self.plan.partitions:
            for f in sorted(p.files, key=lambda f: f.dest.casefold()):
                if f.data is not None:
                    digest, size = hashlib.sha256(f.data).hexdigest(), len(f.data)
                else:
                    blob = self.blobs[f.source or ""]
                    digest, size = blob.sha256, blob.size
                files.append(
                    {"partition": p.name, "dest": f.dest, "size": size, "sha256": digest, "kind": f.kind, "source": f.source}
                )
        used = {f.source for p in self.plan.partitions for f in p.files if f.source} | {r.source for r in self.plan.raw}
        return {
            "format": "boot2ipxe-manifest/1",
            "tool": {"name": "boot2ipxe", "version": __version__},
            "spec": {"name": spec.name, "file": spec.display_path, "sha256": spec.sha256},
            "image": {"sha256": image_sha256, "size": self.plan.size},
            "source_date_epoch": self.epoch,
            "sources": [
                {"id": sid, "sha256": self.blobs[sid].sha256, "size": self.blobs[sid].size, "origin": self.blobs[sid].origin}
                for sid in sorted(used)
            ],
            "files": files,
            "raw": [{"source": r.source, "offset": r.offset, "size": self.blobs[r.source].size} for r in self.plan.raw],
            "layout": self.plan.as_dict(),
        }


@contextlib.contextmanager
def pending_file(target: Path, suffix: str = "") -> Iterator[Path]:
    """A temporary file beside ``target``; removed unless the caller renamed it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix + ".partial", dir=target.parent)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def build_image(plan: Plan, blobs: Mapping[str, Blob], output: Path, epoch: int) -> BuildResult:
    """Write the image at ``output`` (atomically), with its .sha256 and .manifest.json."""
    if output.exists() and output.is_dir():
        raise InputError(f"{output}: is a directory; give an image file name with -o")
    assembler = Assembler(plan, blobs, epoch)
    sha_file, manifest_file, bmap_file = (output.with_name(output.name + ext) for ext in (".sha256", ".manifest.json", ".bmap"))
    with (
        pending_file(output) as tmp,
        pending_file(bmap_file) as tmp_bmap,
        tempfile.TemporaryDirectory(prefix="boot2ipxe-stage-") as staging,
    ):
        assembler.write(tmp, Path(staging))
        assembler.verify(tmp)
        digest = hash_image(tmp, bmap=tmp_bmap)
        manifest = assembler.manifest(digest)
        for sidecar in (sha_file, manifest_file, bmap_file):
            sidecar.unlink(missing_ok=True)
        tmp.replace(output)
        tmp_bmap.replace(bmap_file)
    write_atomic(sha_file, f"{digest}  {output.name}\n".encode())
    write_atomic(manifest_file, (json.dumps(manifest, indent=2) + "\n").encode())
    return BuildResult(output, digest, manifest)
