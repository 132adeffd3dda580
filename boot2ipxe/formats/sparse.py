"""Sparse files: data ranges (SEEK_DATA/SEEK_HOLE), zero blocks, hole-aware hashing, bmaptool block maps.

:func:`scan` reads only the data ranges: their sha256s make the .bmap (bmaptool format 2.0) that lets
``bmaptool copy`` flash only the blocks that hold data, and together with the size a *content key* that
identifies the file's bytes (everything outside the ranges is a hole, which reads as zeros). The sha256 of
the whole file (:func:`full_sha256`) must still feed every zero of the holes through SHA-256, about 1 s
for 1 GiB.
"""

from __future__ import annotations

import errno
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

BLOCK = 4096
CHUNK = 4 * 1024 * 1024
SCAN_CHUNK = 1024 * 1024  # ranges are cut at multiples of this: bounded reads, the same ranges on every machine
_ZERO_BLOCK = bytes(BLOCK)
ZERO_STRETCH = 64 * BLOCK  # zeros are compared this much at a time before block by block
_ZERO_STRETCH = bytes(ZERO_STRETCH)


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


@dataclass(frozen=True)
class Scan:
    size: int
    ranges: list[tuple[int, int, str]]  # byte ranges of blocks that are not all zeros, with their sha256
    content_key: str  # sha256 over the size and the ranges: equal keys, equal bytes


def zero_runs(data: bytes) -> list[tuple[int, int]]:
    """The (start, end) offsets in ``data`` of its runs of whole, aligned BLOCKs of zeros (a short last block
    counts if it is all zeros). Searched with bytes.find and comparisons of bytes slices (memcmp), never byte by
    byte in Python (nor through memoryview, whose comparison goes element by element)."""
    size = len(data)
    runs: list[tuple[int, int]] = []
    at = data.find(_ZERO_BLOCK)
    while at != -1:
        start = end = -(-at // BLOCK) * BLOCK
        while end + ZERO_STRETCH <= size and data[end : end + ZERO_STRETCH] == _ZERO_STRETCH:
            end += ZERO_STRETCH
        while end + BLOCK <= size and data[end : end + BLOCK] == _ZERO_BLOCK:
            end += BLOCK
        if end > start:
            runs.append((start, end))
        at = data.find(_ZERO_BLOCK, max(end, start + 1))
    tail = size - size % BLOCK
    if tail < size and data[tail:] == _ZERO_BLOCK[: size - tail]:
        if runs and runs[-1][1] == tail:
            runs[-1] = (runs[-1][0], size)
        else:
            runs.append((tail, size))
    return runs


def nonzero_runs(data: bytes) -> list[tuple[int, int]]:
    """The (start, end) offsets in ``data`` between its zero runs (:func:`zero_runs`): what holds anything but zeros."""
    runs = []
    cursor = 0
    for zero_start, zero_end in [*zero_runs(data), (len(data), len(data))]:
        if zero_start > cursor:
            runs.append((cursor, zero_start))
        cursor = zero_end
    return runs


def scan(path: Path) -> Scan:
    """The file's blocks that hold anything but zeros, as ranges with their sha256s; holes are not read.

    The ranges depend on the bytes only, not on which blocks the filesystem happens to have allocated (that
    differs between two runs writing the same bytes), so the content key and the .bmap are reproducible. A range
    never crosses a multiple of SCAN_CHUNK.
    """
    found: list[tuple[int, int, str]] = []
    with path.open("rb", buffering=0) as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        for start, end in data_ranges(fd, size):
            for at in [start, *range(start - start % SCAN_CHUNK + SCAN_CHUNK, end, SCAN_CHUNK)]:
                found += _scan_chunk(fd, at, min(at - at % SCAN_CHUNK + SCAN_CHUNK, end))
    key = hashlib.sha256(f"boot2ipxe-content/2 {size}\n".encode())
    for start, end, digest in found:
        key.update(f"{start} {end} {digest}\n".encode())
    return Scan(size, found, key.hexdigest())


def _scan_chunk(fd: int, start: int, end: int) -> list[tuple[int, int, str]]:
    """The runs of non-zero blocks in [start, end) with their sha256s."""
    data = os.pread(fd, end - start, start)
    view = memoryview(data)
    return [(start + a, start + b, hashlib.sha256(view[a:b]).hexdigest()) for a, b in nonzero_runs(data)]


def full_sha256(path: Path, ranges: list[tuple[int, int, str]]) -> str:
    """sha256 of every byte of the file whose data ranges are ``ranges`` (holes hashed as zeros, not read)."""
    whole = hashlib.sha256()
    position = 0
    with path.open("rb", buffering=0) as f:
        for start, end, _ in ranges:
            _feed_zeros(whole, start - position)
            f.seek(start)
            remaining = end - start
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise OSError(errno.EIO, f"{path}: shorter than its data ranges")
                whole.update(chunk)
                remaining -= len(chunk)
            position = end
    _feed_zeros(whole, path.stat().st_size - position)
    return whole.hexdigest()


def place(source: Path, image: Path, offset: int, zeros: tuple[int, int] = (0, 0)) -> None:
    """Copy the data of ``source`` into ``image`` at ``offset``, in the kernel (copy_file_range), except the zero
    blocks of the ``zeros`` range of ``source`` (a FAT's tables: mformat writes them whole, nearly all zeros),
    which are left out: in a new image that range already reads as zeros, and stays unallocated."""
    with source.open("rb", buffering=0) as src, image.open("r+b", buffering=0) as dst:
        copies: list[tuple[int, int]] = []
        for start, end in data_ranges(src.fileno(), os.fstat(src.fileno()).st_size):
            skip_start, skip_end = max(start, zeros[0]), min(end, zeros[1])
            if skip_start >= skip_end:
                copies.append((start, end))
                continue
            copies.append((start, skip_start))
            data = os.pread(src.fileno(), skip_end - skip_start, skip_start)
            copies += [(skip_start + a, skip_start + b) for a, b in nonzero_runs(data)]
            copies.append((skip_end, end))
        for start, end in copies:
            _copy_range(src.fileno(), dst.fileno(), start, end, offset + start)


def _copy_range(src: int, dst: int, start: int, end: int, at: int) -> None:
    """Bytes [start, end) of ``src`` to ``dst`` at ``at``: copy_file_range, else (a filesystem without it) by hand."""
    try:
        while start < end:
            done = os.copy_file_range(src, dst, end - start, start, at)
            if done <= 0:
                raise OSError(errno.EIO, f"copy_file_range stopped {end - start} bytes short")
            start, at = start + done, at + done
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        while start < end:
            data = os.pread(src, min(CHUNK, end - start), start)
            if not data:
                raise OSError(errno.EIO, f"source ended {end - start} bytes short") from None
            os.pwrite(dst, data, at)
            start, at = start + len(data), at + len(data)


_ZEROS = bytes(CHUNK)


def _feed_zeros(digest: hashlib._Hash, length: int) -> None:
    zeros = _ZEROS
    while length > 0:
        step = min(length, CHUNK)
        digest.update(zeros[:step] if step < CHUNK else zeros)
        length -= step


def hash_image(path: Path, bmap: Path | None = None) -> str:
    """sha256 of the whole file (holes hashed as zeros without reading them); writes ``bmap`` if given."""
    found = scan(path)
    if bmap is not None:
        bmap.write_text(bmap_for(found), encoding="utf-8")
    return full_sha256(path, found.ranges)


def bmap_for(found: Scan) -> str:
    return bmap_xml(found.size, [(start // BLOCK, (end - 1) // BLOCK, digest) for start, end, digest in found.ranges])


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
