"""Sparse files: data ranges (SEEK_DATA/SEEK_HOLE), hole-aware hashing, bmaptool block maps.

One pass over the data gives the image's sha256 and, when asked, the .bmap (bmaptool format 2.0)
that lets ``bmaptool copy`` flash only the blocks that hold data.
"""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

BLOCK = 4096
CHUNK = 4 * 1024 * 1024
_ZEROS = bytes(CHUNK)


def data_ranges(fd: int, size: int) -> list[tuple[int, int]]:
    """(start, end) byte ranges that hold data, block-aligned outwards; the whole file if holes are unknown."""
    ranges: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # no data after offset
                    break
                raise
            end = os.lseek(fd, start, os.SEEK_HOLE)
            start, end = start // BLOCK * BLOCK, min(size, -(-end // BLOCK) * BLOCK)
            if ranges and start <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
            else:
                ranges.append((start, end))
            offset = end
    except OSError:
        return [(0, size)] if size else []
    return ranges


def _feed_zeros(digest: hashlib._Hash, length: int) -> None:
    while length > 0:
        step = min(length, CHUNK)
        digest.update(_ZEROS[:step] if step < CHUNK else _ZEROS)
        length -= step


def hash_image(path: Path, bmap: Path | None = None) -> str:
    """sha256 of the whole file (holes hashed as zeros without reading them); writes ``bmap`` if given."""
    size = path.stat().st_size
    whole = hashlib.sha256()
    block_ranges: list[tuple[int, int, str]] = []
    with path.open("rb", buffering=0) as f:
        ranges = data_ranges(f.fileno(), size)
        position = 0
        for start, end in ranges:
            _feed_zeros(whole, start - position)
            f.seek(start)
            part = hashlib.sha256()
            remaining = end - start
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                whole.update(chunk)
                part.update(chunk)
                remaining -= len(chunk)
            block_ranges.append((start // BLOCK, (end - 1) // BLOCK, part.hexdigest()))
            position = end
        _feed_zeros(whole, size - position)
    if bmap is not None:
        bmap.write_text(bmap_xml(size, block_ranges), encoding="utf-8")
    return whole.hexdigest()


def bmap_xml(size: int, ranges: list[tuple[int, int, str]]) -> str:
    """bmaptool's format 2.0; BmapFileChecksum is the sha256 of the file with that field zeroed."""
    blocks = -(-size // BLOCK)
    mapped = sum(last - first + 1 for first, last, _ in ranges)
    lines = [
        '<?xml version="1.0" ?>',
        "<!-- Block map written by boot2ipxe: flash with `bmaptool copy IMAGE DEVICE` -->",
        '<bmap version="2.0">',
        f"    <ImageSize> {size} </ImageSize>",
        f"    <BlockSize> {BLOCK} </BlockSize>",
        f"    <BlocksCount> {blocks} </BlocksCount>",
        f"    <MappedBlocksCount> {mapped} </MappedBlocksCount>",
        "    <ChecksumType> sha256 </ChecksumType>",
        "    <BmapFileChecksum> {checksum} </BmapFileChecksum>",
        "    <BlockMap>",
        *(
            f'        <Range chksum="{digest}"> {first}{f"-{last}" if last != first else ""} </Range>'
            for first, last, digest in ranges
        ),
        "    </BlockMap>",
        "</bmap>",
        "",
    ]
    template = "\n".join(lines)
    checksum = hashlib.sha256(template.replace("{checksum}", "0" * 64).encode()).hexdigest()
    return template.replace("{checksum}", checksum)
