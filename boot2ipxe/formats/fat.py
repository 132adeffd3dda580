"""FAT geometry, computed exactly so the planner knows the filesystem before it exists.

The assembler passes these numbers to mformat (-c -R -L -r) and reads the boot sector back to check.
Cluster-size defaults follow Microsoft's fatgen103 tables; cluster-count limits decide the variant.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from boot2ipxe.units import SECTOR, GiB, MiB, ceil_div, format_size

DIR_ENTRY = 32
CLUSTER_LIMITS = {12: (1, 4084), 16: (4085, 65524), 32: (65525, 0x0FFFFFF4)}


@dataclass(frozen=True)
class FatGeometry:
    bits: int
    sectors: int
    sectors_per_cluster: int
    reserved_sectors: int
    fat_count: int
    fat_sectors: int
    root_entries: int  # 0 on FAT32, whose root directory lives in clusters
    clusters: int
    hidden_sectors: int

    @property
    def cluster_bytes(self) -> int:
        return self.sectors_per_cluster * SECTOR

    @property
    def root_dir_sectors(self) -> int:
        return ceil_div(self.root_entries * DIR_ENTRY, SECTOR)

    @property
    def data_start_sector(self) -> int:
        return self.reserved_sectors + self.fat_count * self.fat_sectors + self.root_dir_sectors

    @property
    def data_bytes(self) -> int:
        return self.clusters * self.cluster_bytes


class FatError(ValueError):
    pass


def _default_cluster_sectors(bits: int, sectors: int) -> int:
    size = sectors * SECTOR
    if bits == 32:
        for limit, spc in ((260 * MiB, 1), (8 * GiB, 8), (16 * GiB, 16), (32 * GiB, 32)):
            if size <= limit:
                return spc
        return 64
    if bits == 16:
        for limit, spc in ((16 * MiB, 2), (128 * MiB, 4), (256 * MiB, 8), (512 * MiB, 16), (GiB, 32), (2 * GiB, 64)):
            if size <= limit:
                return spc
        raise FatError(f"FAT16 holds at most 2GiB ({size // MiB}MiB given); use fat: 32")
    return 1


def _layout(bits: int, sectors: int, spc: int, hidden: int) -> FatGeometry:
    reserved = 32 if bits == 32 else 1
    root_entries = 0 if bits == 32 else 512
    root_sectors = ceil_div(root_entries * DIR_ENTRY, SECTOR)
    fixed = sectors - reserved - root_sectors

    def clusters_with(fat_sectors: int) -> int:
        return (fixed - 2 * fat_sectors) // spc

    def fat_fits(fat_sectors: int) -> bool:
        return ceil_div((clusters_with(fat_sectors) + 2) * bits, 8 * SECTOR) <= fat_sectors

    # The smallest FAT that addresses every cluster it leaves room for (fits is monotone in size).
    low, high = 1, max(1, ceil_div((fixed // spc + 2) * bits, 8 * SECTOR))
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fat_fits(middle) else (middle + 1, high)
    fat_sectors = low
    clusters = clusters_with(fat_sectors)
    if clusters < 1:
        raise FatError(f"{sectors} sectors is too small for any FAT{bits} filesystem")
    return FatGeometry(bits, sectors, spc, reserved, 2, fat_sectors, root_entries, clusters, hidden)


def fat_geometry(sectors: int, bits: int | None, hidden: int = 0) -> FatGeometry:
    """Geometry for a FAT of ``bits`` (or the best variant when None). Raises FatError saying what fits."""
    if bits is None:
        for candidate in (32, 16, 12):
            try:
                return fat_geometry(sectors, candidate, hidden)
            except FatError:
                continue
        raise FatError(f"{sectors * SECTOR} bytes is too small for a FAT filesystem")
    low, high = CLUSTER_LIMITS[bits]
    if bits == 12:
        spc = 1
        while spc <= 128:
            geometry = _layout(12, sectors, spc, hidden)
            if geometry.clusters <= high:
                return geometry
            spc *= 2
        raise FatError(f"FAT12 holds at most about 255MiB; use fat: 16 or 32 for {sectors * SECTOR // MiB}MiB")
    spc = _default_cluster_sectors(bits, sectors)
    geometry = _layout(bits, sectors, spc, hidden)
    while geometry.clusters < low and spc > 1:
        spc //= 2
        geometry = _layout(bits, sectors, spc, hidden)
    if geometry.clusters < low:
        smaller = {32: "16", 16: "12"}[bits]
        raise FatError(
            f"FAT{bits} needs at least {low} clusters but {format_size(sectors * SECTOR)} gives {geometry.clusters}: "
            f"make the partition at least {_smallest_mib(bits, sectors)}MiB or use fat: {smaller}"
        )
    if geometry.clusters > high:
        raise FatError(f"FAT{bits} holds at most {high} clusters; {geometry.clusters} is too many")
    return geometry


def _smallest_mib(bits: int, sectors: int) -> int:
    size_mib = max(1, sectors * SECTOR // MiB)
    while True:
        size_mib += 1
        geometry = _layout(bits, size_mib * MiB // SECTOR, 1, 0)
        if geometry.clusters >= CLUSTER_LIMITS[bits][0]:
            return size_mib


def directory_clusters(entries: list[str], cluster_bytes: int) -> int:
    """Clusters a sub-directory with these names needs (dot entries and long-name slots included)."""
    slots = 2 + sum(name_slots(name) for name in entries)
    return max(1, ceil_div(slots * DIR_ENTRY, cluster_bytes))


SHORT_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'()-@^_`{}~")


def name_slots(name: str) -> int:
    """Directory slots one name takes: the 8.3 entry plus VFAT long-name entries when needed.

    Only upper-case names made of 8.3 characters fit a short entry alone; anything else (lower case,
    spaces, + , ; = [ ], a second dot, longer parts) also takes ceil(UTF-16 length / 13) long-name slots.
    """
    base, _, ext = name.rpartition(".") if "." in name else (name, "", "")
    short_ok = 0 < len(base) <= 8 and len(ext) <= 3 and set(base + ext) <= SHORT_NAME_CHARS
    return 1 if short_ok else 1 + ceil_div(len(name.encode("utf-16-le")) // 2, 13)


def read_boot_sector(sector: bytes) -> FatGeometry:
    """Parse a FAT boot sector (used to check what mformat wrote, and by inspect)."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        raise FatError("no FAT boot sector (missing 0x55AA signature)")
    bps, spc, reserved, fats, root_entries, total16, _media, fat16 = struct.unpack_from("<HBHBHHBH", sector, 11)
    hidden, total32 = struct.unpack_from("<II", sector, 28)
    if bps != SECTOR or spc == 0 or fats == 0:
        raise FatError(f"unsupported FAT geometry (bytes/sector {bps}, sectors/cluster {spc})")
    sectors = total16 or total32
    fat_sectors = fat16 or struct.unpack_from("<I", sector, 36)[0]
    root_sectors = ceil_div(root_entries * DIR_ENTRY, SECTOR)
    clusters = (sectors - reserved - fats * fat_sectors - root_sectors) // spc
    bits = 12 if clusters <= 4084 else 16 if clusters <= 65524 else 32
    return FatGeometry(bits, sectors, spc, reserved, fats, fat_sectors, root_entries, clusters, hidden)


def boot_sector_label(sector: bytes) -> tuple[str, str]:
    """(volume label, serial as 8 hex digits) from the extended boot record."""
    offset = 0x43 if sector[82:90].startswith(b"FAT32") else 0x27
    serial = struct.unpack_from("<I", sector, offset)[0]
    label = sector[offset + 4 : offset + 15].decode("ascii", "replace").rstrip()
    return label, f"{serial:08x}"
