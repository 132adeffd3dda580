"""Inject stage: per-machine images from a base image (ours or a vendor's).

The base is copied sparsely (reflink where the filesystem allows), only the FAT files that change
are written (mtools), and the result is read back and compared before it is renamed into place.
"""

from __future__ import annotations

import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from boot2ipxe.errors import BuildError, InputError
from boot2ipxe.formats.efivar import FILE_NAME as VARIABLE_FILE
from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.inspect.image import ImageReport, inspect_image
from boot2ipxe.spec.model import ESP_GUID, Spec
from boot2ipxe.tools import filesystem_tool_env, run
from boot2ipxe.units import SECTOR


@dataclass(frozen=True)
class Target:
    """Where iPXE lives in a base image."""

    partition: int
    offset: int
    binary: str
    script: str
    firmware: str  # "uefi" | "u-boot"
    arch: str
    variable_store: int | None = None  # offset of the FAT where U-Boot keeps ubootefi.var (U-Boot firmware only)
    ntp: bool = False  # the iPXE binary has the ntp command


def locate(base: Path, spec: Spec | None = None, report: ImageReport | None = None) -> Target:
    """Find the FAT partition holding an EFI iPXE: from the spec when given, else by looking."""
    report = report or inspect_image(base)
    if spec is not None:
        if spec.ipxe is None:
            raise InputError(f"{spec.display_path}: has no ipxe section; cannot tell where iPXE lives")
        wanted = spec.partition(spec.ipxe.partition)
        assert wanted is not None
        part = report.partitions[wanted.index - 1] if wanted.index <= len(report.partitions) else None
        if part is None or part.filesystem != "vfat":
            raise InputError(f"{base}: partition {wanted.index} is not the vfat partition {spec.display_path} describes")
        if not any(f["path"].casefold() == spec.ipxe.binary.casefold() for f in part.files):
            raise InputError(f"{base}: no {spec.ipxe.binary} on partition {wanted.index}; is this a {spec.name} image?")
        script = spec.ipxe.script or "autoexec.ipxe"
        store = spec.variable_store() if spec.ipxe.firmware == "u-boot" else None
        return Target(
            wanted.index,
            part.start * SECTOR,
            spec.ipxe.binary,
            _script_path(part.files, spec.ipxe.binary, script),
            spec.ipxe.firmware,
            spec.arch,
            _store_offset(base, report, store.index) if store is not None else None,
            _has_ntp(report, wanted.index),
        )
    if not report.ipxe:
        raise InputError(f"{base}: no EFI iPXE found (looked for EFI/BOOT/BOOT*.EFI on FAT partitions); pass --platform SPEC")
    if len(report.ipxe) > 1:
        where = ", ".join(f"partition {i['partition']}: {i['binary']}" for i in report.ipxe)
        raise InputError(f"{base}: several iPXE binaries ({where}); pass --platform SPEC to choose")
    found = report.ipxe[0]
    part = report.partitions[found["partition"] - 1]
    u_boot = any("U-Boot" in step for step in report.chain)
    esp = next((p for p in report.partitions if p.type.lower() in ("ef", ESP_GUID.lower())), None)
    return Target(
        part.index,
        part.start * SECTOR,
        found["binary"],
        _script_path(part.files, found["binary"], "autoexec.ipxe"),
        "u-boot" if u_boot else "uefi",
        found["arch"],
        _store_offset(base, report, esp.index) if u_boot and esp is not None else None,
        bool(found.get("ntp")),
    )


def _has_ntp(report: ImageReport, partition: int) -> bool:
    return any(i["partition"] == partition and i.get("ntp") for i in report.ipxe)


def _store_offset(base: Path, report: ImageReport, index: int) -> int:
    """The byte offset of partition ``index``, which must be the FAT where U-Boot keeps its variables."""
    part = report.partitions[index - 1] if index <= len(report.partitions) else None
    if part is None or part.filesystem != "vfat":
        raise InputError(f"{base}: partition {index}, U-Boot's EFI system partition, holds no FAT filesystem")
    return part.start * SECTOR


def read_variable_file(base: Path, offset: int) -> bytes | None:
    """The base's ``ubootefi.var`` (as U-Boot or boot2ipxe wrote it), or None when it has none."""
    with base.open("rb") as f:
        reader = FatReader(f, offset)
        entry = next((e for e in reader.entries() if e.path.casefold() == VARIABLE_FILE.casefold()), None)
        return reader.read(entry.path) if entry is not None and not entry.is_dir else None


def _script_path(files: list[dict[str, object]], binary: str, default: str) -> str:
    """iPXE runs autoexec.ipxe from its own directory first, then the root: replace the one that wins."""
    directory = str(PurePosixPath(binary).parent)
    beside = f"{directory}/autoexec.ipxe".casefold()
    for f in files:
        if str(f["path"]).casefold() == beside:
            return str(f["path"])
    return default


@dataclass(frozen=True)
class BaseFat:
    """A FAT partition of the base image, read once per batch: every machine image starts as a copy of it."""

    offset: int  # bytes from the start of the image
    cluster: int  # bytes
    free: int  # bytes in free clusters
    directories: frozenset[str]  # paths, case-folded
    allocated: Mapping[str, int]  # case-folded path of each file -> bytes of the clusters it holds


def read_base_fat(base: Path, offset: int) -> BaseFat:
    with base.open("rb") as f:
        reader = FatReader(f, offset)
        cluster = reader.geometry.cluster_bytes
        entries = reader.entries()
        free = (reader.geometry.clusters - _used_clusters(reader)) * cluster
    return BaseFat(
        offset,
        cluster,
        free,
        frozenset(e.path.casefold() for e in entries if e.is_dir),
        {e.path.casefold(): -(-e.size // cluster) * cluster for e in entries if not e.is_dir},
    )


def copy_sparse(source: Path, target: Path) -> None:
    run(["cp", "--reflink=auto", "--sparse=always", str(source), str(target)])


def check_room(base: Path, files: Mapping[str, bytes], fat: BaseFat) -> None:
    """Refuse, naming the base, when the files cannot fit in the FAT partition."""
    replaced = sum(fat.allocated.get(dest.strip("/").casefold(), 0) for dest in files)
    needed = sum(-(-len(data) // fat.cluster) * fat.cluster for data in files.values())
    if needed > fat.free + replaced:
        raise InputError(
            f"{base}: the FAT at byte {fat.offset} has {fat.free + replaced} bytes free for the injected files, "
            f"which need {needed}: use a base with a larger FAT partition"
        )


def write_files(
    image: Path,
    offset: int,
    files: Mapping[str, bytes],
    epoch: int,
    staging: Path,
    known_directories: Collection[str] | None = None,
) -> None:
    """Replace or add files in the FAT at ``offset``, then read them back.

    ``known_directories``: the case-folded directories the FAT already has, when the caller knows them (inject reads
    them once from the base), else they are read from the image.
    """
    env = filesystem_tool_env(epoch)
    target = f"{image}@@{offset}"
    existing = known_directories
    if existing is None:
        with image.open("rb") as f:
            existing = {e.path.casefold() for e in FatReader(f, offset).entries() if e.is_dir}
    directories = sorted({str(d) for dest in files for d in PurePosixPath(dest).parents if str(d) != "."}, key=len)
    missing = [d for d in directories if d.casefold() not in existing]
    if missing:
        run(["mmd", "-i", target, *(f"::/{d}" for d in missing)], env=env)
    for number, (dest, data) in enumerate(sorted(files.items())):
        staged = staging / f"{number}-{PurePosixPath(dest).name}"
        staged.write_bytes(data)
        run(["mcopy", "-o", "-Q", "-i", target, str(staged), f"::/{dest}"], env=env)
    with image.open("rb") as f:
        reader = FatReader(f, offset)
        for dest, data in files.items():
            if reader.read(dest) != data:
                raise BuildError(f"{image}: {dest} reads back different from what was written")


def _used_clusters(reader: FatReader) -> int:
    cluster = reader.geometry.cluster_bytes
    return sum(-(-e.size // cluster) if not e.is_dir else 1 for e in reader.entries()) + 1


def write_machine_image(
    base: Path, image: Path, writes: Mapping[int, Mapping[str, bytes]], epoch: int, fats: Mapping[int, BaseFat]
) -> None:
    """Make ``image`` (an empty file, mode 0600: it will hold a key) a copy of ``base`` with the files of ``writes``
    (FAT offset -> path -> bytes) placed and read back. ``fats``: :func:`read_base_fat` of each, read once per batch."""
    with tempfile.TemporaryDirectory(prefix="boot2ipxe-inject-") as staging:
        copy_sparse(base, image)  # onto the pending file: cp keeps the target's mode
        for offset, files in writes.items():
            write_files(image, offset, files, epoch, Path(staging), fats[offset].directories)
