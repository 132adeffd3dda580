"""Reading a written image back and comparing it with the recipe's expectations.

Three independent readers: sfdisk (table kind, extents, type codes, flags), libparted through pyparted
(extents, flags, GPT names; libparted 3.5 cannot report type codes) and boot2ipxe's own FAT boot-sector
parser (every geometry field mformat was told to use). ``assemble`` runs this once per distinct image: an
image whose bytes match one that already passed against the same expectations is not read again.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from boot2ipxe.errors import BuildError
from boot2ipxe.fat import SECTOR, read_boot_sector


def verify_image(path: str | Path, expect: dict[str, Any]) -> None:
    image = Path(path)
    verify_with_sfdisk(image, expect)
    verify_with_libparted(image, expect)
    verify_fat_boot_sectors(image, expect)


def verify_with_sfdisk(image: Path, expect: dict[str, Any]) -> None:
    from boot2ipxe.inspect import read_partition_table

    table = read_partition_table(image)
    wanted = expect["partitions"]
    if table.kind != expect["table"] or len(table.partitions) != len(wanted):
        raise BuildError(f"{image}: partition table reads back as {table.kind} with {len(table.partitions)} partitions")
    for want, got in zip(wanted, table.partitions, strict=True):
        if (got.start, got.sectors, got.type_code.lower(), got.bootable) != (
            want["start"],
            want["sectors"],
            want["type"],
            want["bootable"],
        ):
            raise BuildError(f"{image}: partition {want['index']} reads back as {got}, planned {want['start']}+{want['sectors']}")


def verify_with_libparted(image: Path, expect: dict[str, Any]) -> None:
    import parted

    try:
        disk = parted.newDisk(parted.getDevice(str(image)))
    except (parted.DiskException, parted.IOException) as exc:
        raise BuildError(f"{image}: libparted cannot read the partition table sfdisk wrote: {exc}") from None
    gpt = expect["table"] == "gpt"
    if disk.type != ("gpt" if gpt else "msdos"):
        raise BuildError(f"{image}: libparted reads a {disk.type} table, planned {expect['table']}")
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
    want = [(p["index"], p["start"], p["sectors"], p["bootable"], p["name"]) for p in expect["partitions"]]
    if got != want:
        raise BuildError(f"{image}: libparted reads the partitions as {got}, planned {want}")


def verify_fat_boot_sectors(image: Path, expect: dict[str, Any]) -> None:
    with image.open("rb") as f:
        for fat in expect["fat"]:
            f.seek(fat["offset"])
            written = asdict(read_boot_sector(f.read(SECTOR)))
            if written != fat["geometry"]:
                planned = fat["geometry"]
                raise BuildError(f"{image}: FAT in partition {fat['index']} differs from the plan: {written} != {planned}")
