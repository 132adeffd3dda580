"""A small read-only FAT12/16/32 reader (with long names), for inspect and checks.

Reading in Python keeps ``inspect`` independent of mtools' human-oriented output.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

from boot2ipxe.formats.fat import FatGeometry, boot_sector_label, read_boot_sector
from boot2ipxe.units import SECTOR

ATTR_VOLUME = 0x08
ATTR_DIR = 0x10
ATTR_LFN = 0x0F
MAX_ENTRIES = 100_000  # a damaged or hostile filesystem must not make inspect loop forever
FAT_BLOCK = 64 * 1024  # the FAT is read in blocks of this size as chains reach them, not whole (2 MiB on 256 MiB FAT32)


@dataclass(frozen=True)
class FatEntry:
    path: str
    size: int
    is_dir: bool
    cluster: int


class FatReader:
    def __init__(self, image: BinaryIO, offset: int) -> None:
        self.image = image
        self.offset = offset
        image.seek(offset)
        sector = image.read(SECTOR)
        self.geometry: FatGeometry = read_boot_sector(sector)
        self.label, self.serial = boot_sector_label(sector)
        self.root_cluster = struct.unpack_from("<I", sector, 44)[0] if self.geometry.bits == 32 else 0
        g = self.geometry
        self._fat_offset = offset + g.reserved_sectors * SECTOR
        self._data_offset = offset + g.data_start_sector * SECTOR
        self._root_offset = offset + (g.reserved_sectors + g.fat_count * g.fat_sectors) * SECTOR
        self._fat_size = g.fat_sectors * SECTOR
        self._fat_blocks: dict[int, bytes] = {}
        self._entries: list[FatEntry] | None = None

    def _fat_bytes(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the first FAT from ``offset`` (zeros past its end, as a truncated image reads)."""
        out = b""
        while len(out) < length:
            block, within = divmod(offset + len(out), FAT_BLOCK)
            data = self._fat_blocks.get(block)
            if data is None:
                start = block * FAT_BLOCK
                self.image.seek(self._fat_offset + start)
                data = self.image.read(max(0, min(FAT_BLOCK, self._fat_size - start)))
                self._fat_blocks[block] = data
            piece = data[within : within + length - len(out)]
            if not piece:
                return out.ljust(length, b"\0")
            out += piece
        return out

    def _next(self, cluster: int) -> int:
        bits = self.geometry.bits
        if bits == 32:
            return int.from_bytes(self._fat_bytes(cluster * 4, 4), "little") & 0x0FFFFFFF
        if bits == 16:
            return int.from_bytes(self._fat_bytes(cluster * 2, 2), "little")
        pair = int.from_bytes(self._fat_bytes(cluster * 3 // 2, 2), "little")
        return pair >> 4 if cluster & 1 else pair & 0xFFF

    def _chain(self, cluster: int) -> list[int]:
        end = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[self.geometry.bits]
        chain: list[int] = []
        while 2 <= cluster < end and len(chain) <= self.geometry.clusters:
            chain.append(cluster)
            cluster = self._next(cluster)
        return chain

    def _read_clusters(self, cluster: int, size: int | None = None) -> bytes:
        cb = self.geometry.cluster_bytes
        parts = []
        for c in self._chain(cluster):
            self.image.seek(self._data_offset + (c - 2) * cb)
            parts.append(self.image.read(cb))
        data = b"".join(parts)
        return data if size is None else data[:size]

    def _directory(self, cluster: int) -> bytes:
        if cluster == 0 and self.geometry.bits != 32:
            self.image.seek(self._root_offset)
            return self.image.read(self.geometry.root_entries * 32)
        return self._read_clusters(cluster or self.root_cluster)

    def _list(self, cluster: int) -> list[tuple[str, int, int, int]]:
        data = self._directory(cluster)
        found = []
        long_parts: list[str] = []
        for pos in range(0, len(data) - 31, 32):
            raw = data[pos : pos + 32]
            if raw[0] == 0:
                break
            if raw[0] == 0xE5:
                long_parts = []
                continue
            attr = raw[11]
            if attr == ATTR_LFN:
                text = raw[1:11] + raw[14:26] + raw[28:32]
                long_parts.insert(0, text.decode("utf-16-le", "replace").split("\x00")[0])
                continue
            if attr & ATTR_VOLUME:
                long_parts = []
                continue
            short = raw[0:8].decode("ascii", "replace").rstrip()
            ext = raw[8:11].decode("ascii", "replace").rstrip()
            if raw[12] & 0x08:  # Windows NT flags: 8.3 name stored upper-case but meant lower-case
                short = short.lower()
            if raw[12] & 0x10:
                ext = ext.lower()
            name = "".join(long_parts) or (f"{short}.{ext}" if ext else short)
            long_parts = []
            if name in (".", ".."):
                continue
            hi, lo = struct.unpack_from("<H", raw, 20)[0], struct.unpack_from("<H", raw, 26)[0]
            size = struct.unpack_from("<I", raw, 28)[0]
            found.append((name, attr, (hi << 16 | lo) if self.geometry.bits == 32 else lo, size))
        return found

    def entries(self) -> list[FatEntry]:
        """Every file and directory, depth first, paths with '/'."""
        if self._entries is None:
            out: list[FatEntry] = []
            stack: list[tuple[str, int]] = [("", 0)]
            seen: set[int] = set()
            while stack and len(out) < MAX_ENTRIES:
                prefix, cluster = stack.pop()
                for name, attr, first, size in self._list(cluster):
                    path = f"{prefix}{name}"
                    is_dir = bool(attr & ATTR_DIR)
                    out.append(FatEntry(path, 0 if is_dir else size, is_dir, first))
                    if is_dir and first not in seen and first != 0:
                        seen.add(first)
                        stack.append((path + "/", first))
            self._entries = sorted(out, key=lambda e: e.path.casefold())
        return self._entries

    def find(self, path: str) -> FatEntry | None:
        wanted = path.strip("/").casefold()
        return next((e for e in self.entries() if e.path.casefold() == wanted), None)

    def read(self, path: str) -> bytes:
        entry = self.find(path)
        if entry is None or entry.is_dir:
            raise FileNotFoundError(path)
        return self._read_clusters(entry.cluster, entry.size) if entry.size else b""
