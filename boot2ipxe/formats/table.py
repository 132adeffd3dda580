"""Partition tables as bytes: a protective MBR and both GPT copies, or a DOS MBR.

Pure: :func:`table_writes` gives the (offset, bytes) a new, all-zero disk needs for a :class:`PartitionTable`,
exactly the bytes ``sfdisk`` writes for :func:`sfdisk_script` (tests/test_table.py builds every platform's table
both ways and compares them byte for byte, and every build reads its table back with sfdisk and libparted,
``build/verify.py``). Layouts (UEFI 2.10 §5.2–5.3):

- DOS: disk signature at 440, four 16-byte entries at 446 (status 0x80 = bootable, CHS of the first and last
  sector in sfdisk's geometry of 255 heads and 63 sectors per track, capped at cylinder 1023, type, LBA, count).
- GPT: LBA 0 a protective MBR (one 0xEE entry over the whole disk), LBA 1 the header (CRC32 over its 92 bytes,
  of the 128 entries of 128 bytes at LBA 2), the backup entries and header at the end, each pointing at the other.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass
from typing import Literal

from boot2ipxe.units import SECTOR

HEADS, SECTORS_PER_TRACK = 255, 63  # libfdisk's geometry for an image file
GPT_ENTRIES, GPT_ENTRY_SIZE, GPT_HEADER_SIZE = 128, 128, 92
GPT_ENTRY_SECTORS = GPT_ENTRIES * GPT_ENTRY_SIZE // SECTOR
LEGACY_BIOS_BOOTABLE = 1 << 2  # GPT attribute bit 2
GPT_RESERVED_START = 2 + GPT_ENTRY_SECTORS  # protective MBR, header, entries
GPT_RESERVED_END = 1 + GPT_ENTRY_SECTORS  # backup entries and header
MAX_GPT_NAME_BYTES = 72  # 36 UTF-16 code units


@dataclass(frozen=True)
class TableEntry:
    """One partition as a table stores it."""

    index: int  # 1-based
    start: int  # sectors
    sectors: int
    type_code: str  # MBR: two lower-case hex digits; GPT: upper-case type GUID
    bootable: bool  # MBR active flag; GPT legacy BIOS bootable attribute
    uuid: str | None = None  # GPT only
    name: str | None = None  # GPT only


@dataclass(frozen=True)
class PartitionTable:
    kind: Literal["mbr", "gpt"]
    disk_id: str  # MBR: "0x1234abcd"; GPT: upper-case GUID
    total_sectors: int
    first_usable: int
    last_usable: int
    entries: tuple[TableEntry, ...]


def sfdisk_script(table: PartitionTable) -> str:
    """The same table as an sfdisk script (what the tests compare :func:`table_writes` with)."""
    lines = [
        f"label: {'gpt' if table.kind == 'gpt' else 'dos'}",
        f"label-id: {table.disk_id}",
        "unit: sectors",
        "sector-size: 512",
    ]
    if table.kind == "gpt":
        lines += [f"first-lba: {table.first_usable}", f"last-lba: {table.last_usable}", "table-length: 128"]
    for p in table.entries:
        fields = [f"start={p.start}", f"size={p.sectors}", f"type={p.type_code}"]
        if table.kind == "gpt":
            fields += [f"uuid={p.uuid}", f'name="{p.name}"']
            if p.bootable:
                fields.append('attrs="LegacyBIOSBootable"')
        elif p.bootable:
            fields.append("bootable")
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def table_writes(table: PartitionTable) -> list[tuple[int, bytes]]:
    """(byte offset, bytes) to write into a disk of ``table.total_sectors`` zero sectors to give it ``table``.

    The DOS MBR leaves the 440 bytes of boot code at its start zero: a BIOS loader writes them separately."""
    return _gpt(table) if table.kind == "gpt" else [(0, _dos_mbr(table))]


def _chs(lba: int) -> bytes:
    cylinder, rest = divmod(lba, HEADS * SECTORS_PER_TRACK)
    head, sector = rest // SECTORS_PER_TRACK, rest % SECTORS_PER_TRACK + 1
    if cylinder > 1023:
        cylinder, head, sector = 1023, HEADS - 1, SECTORS_PER_TRACK
    return bytes((head, sector | ((cylinder >> 2) & 0xC0), cylinder & 0xFF))


def _mbr_entry(status: int, kind: int, start: int, sectors: int, chs: tuple[bytes, bytes] | None = None) -> bytes:
    first, last = chs or (_chs(start), _chs(start + sectors - 1))
    return bytes((status,)) + first + bytes((kind,)) + last + struct.pack("<II", start, sectors)


def _dos_mbr(table: PartitionTable) -> bytes:
    if len(table.entries) > 4:
        raise ValueError("a DOS MBR holds 4 partitions")
    entries = b"".join(_mbr_entry(0x80 if p.bootable else 0, int(p.type_code, 16), p.start, p.sectors) for p in table.entries)
    signature = struct.pack("<I", int(table.disk_id, 16))
    return bytes(440) + signature + bytes(2) + entries.ljust(64, b"\0") + b"\x55\xaa"


def _gpt(table: PartitionTable) -> list[tuple[int, bytes]]:
    last = table.total_sectors - 1
    protective = _mbr_entry(0, 0xEE, 1, min(last, 0xFFFFFFFF), (b"\x00\x02\x00", b"\xff\xff\xff"))
    mbr = bytes(446) + protective + bytes(48) + b"\x55\xaa"
    used = b"".join(_gpt_entry(p) for p in table.entries)
    entries_crc = zlib.crc32(used.ljust(GPT_ENTRIES * GPT_ENTRY_SIZE, b"\0"))
    backup_entries = last - GPT_ENTRY_SECTORS
    primary = _gpt_header(table, 1, last, 2, entries_crc)
    backup = _gpt_header(table, last, 1, backup_entries, entries_crc)
    return [(0, mbr), (SECTOR, primary), (2 * SECTOR, used), (backup_entries * SECTOR, used), (last * SECTOR, backup)]


def _gpt_entry(p: TableEntry) -> bytes:
    if p.uuid is None:
        raise ValueError(f"GPT partition {p.index} has no GUID")
    name = (p.name or "").encode("utf-16-le")
    if len(name) > MAX_GPT_NAME_BYTES:
        raise ValueError(f"partition name {p.name!r} is longer than GPT's 36 UTF-16 code units")
    attributes = LEGACY_BIOS_BOOTABLE if p.bootable else 0
    guids = uuid.UUID(p.type_code).bytes_le + uuid.UUID(p.uuid).bytes_le
    return guids + struct.pack("<QQQ", p.start, p.start + p.sectors - 1, attributes) + name.ljust(72, b"\0")


def _gpt_header(table: PartitionTable, at: int, other: int, entries_at: int, entries_crc: int) -> bytes:
    def header(crc: int) -> bytes:
        return b"EFI PART" + struct.pack(
            "<IIIIQQQQ16sQIII",
            0x00010000,
            GPT_HEADER_SIZE,
            crc,
            0,
            at,
            other,
            table.first_usable,
            table.last_usable,
            uuid.UUID(table.disk_id).bytes_le,
            entries_at,
            GPT_ENTRIES,
            GPT_ENTRY_SIZE,
            entries_crc,
        )

    return header(zlib.crc32(header(0))).ljust(SECTOR, b"\0")
