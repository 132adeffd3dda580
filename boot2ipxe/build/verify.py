"""Reading a written image back and comparing it with the plan.

Three independent readers: sfdisk (table kind, extents, type codes, flags), libparted through pyparted
(extents, flags, GPT names; libparted 3.5 cannot report type codes) and boot2ipxe's own FAT boot-sector
parser (every geometry field mformat was told to use).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from boot2ipxe.errors import BuildError
from boot2ipxe.formats.fat import read_boot_sector
from boot2ipxe.formats.table import PartitionTable
from boot2ipxe.inspect.image import read_partition_table
from boot2ipxe.plan.layout import Plan
from boot2ipxe.units import SECTOR


def verify_image(image: Path, plan: Plan) -> None:
    table = plan.partition_table()
    verify_with_sfdisk(image, table)
    verify_with_libparted(image, table)
    verify_fat_boot_sectors(image, plan)


def verify_with_sfdisk(image: Path, want: PartitionTable) -> None:
    got = read_partition_table(image)
    if got.kind != want.kind or len(got.entries) != len(want.entries):
        raise BuildError(f"{image}: partition table reads back as {got.kind} with {len(got.entries)} partitions")
    for w, g in zip(want.entries, got.entries, strict=True):
        if (g.start, g.sectors, g.type_code.lower(), g.bootable) != (w.start, w.sectors, w.type_code.lower(), w.bootable):
            raise BuildError(f"{image}: partition {w.index} reads back as {g}, planned {w.start}+{w.sectors}")


def verify_with_libparted(image: Path, want: PartitionTable) -> None:
    import parted

    try:
        disk = parted.newDisk(parted.getDevice(str(image)))
    except (parted.DiskException, parted.IOException) as exc:
        raise BuildError(f"{image}: libparted cannot read the partition table: {exc}") from None
    gpt = want.kind == "gpt"
    if disk.type != ("gpt" if gpt else "msdos"):
        raise BuildError(f"{image}: libparted reads a {disk.type} table, planned {want.kind}")
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
    planned = [(p.index, p.start, p.sectors, p.bootable, p.name if gpt else None) for p in want.entries]
    if got != planned:
        raise BuildError(f"{image}: libparted reads the partitions as {got}, planned {planned}")


def verify_fat_boot_sectors(image: Path, plan: Plan) -> None:
    with image.open("rb") as f:
        for p in plan.partitions:
            if p.fat is None:
                continue
            f.seek(p.offset)
            written = read_boot_sector(f.read(SECTOR))
            if written != p.fat:
                raise BuildError(
                    f"{image}: FAT in partition {p.index} differs from the plan: {asdict(written)} != {asdict(p.fat)}"
                )
