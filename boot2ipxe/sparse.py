"""Sparse files: data ranges (SEEK_DATA/SEEK_HOLE), hole-aware hashing, bmaptool block maps, punching holes.

:func:`scan` reads only the data ranges: their sha256s make the .bmap (bmaptool format 2.0) that lets
``bmaptool copy`` flash only the blocks that hold data, and together with the size a *content key* that
identifies the file's bytes (everything outside the ranges is a hole, which reads as zeros). The sha256 of
the whole file (:func:`full_sha256`) must still feed every zero of the holes through SHA-256, about 1 s
for 1 GiB; the build cache keeps it per content key so an identical image is not hashed twice.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import os
from pathlib import Path
from typing import Any, NamedTuple

BLOCK = 4096
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
CHUNK = 4 * 1024 * 1024
_ZERO_BLOCK = bytes(BLOCK)


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


class Scan(NamedTuple):
    size: int
    ranges: list[tuple[int, int, str]]  # byte ranges of blocks that are not all zeros, with their sha256
    content_key: str  # sha256 over the size and the ranges: equal keys, equal bytes


def scan(path: Path) -> Scan:
    """The file's blocks that hold anything but zeros, as ranges with their sha256s; holes are not read.

    The ranges depend on the bytes only, not on which blocks the filesystem happens to have allocated
    (that differs between two runs writing the same bytes), so the content key and the .bmap are reproducible.
    """
    size = path.stat().st_size
    found: list[tuple[int, int, str]] = []
    key = hashlib.sha256(f"boot2ipxe-content/1 {size}\n".encode())

    def close(start: int, end: int, digest: hashlib._Hash) -> None:
        found.append((start, end, digest.hexdigest()))
        key.update(f"{start} {end} {found[-1][2]}\n".encode())

    with path.open("rb", buffering=0) as f:
        fd = f.fileno()
        for start, end in data_ranges(fd, size):
            run: tuple[int, hashlib._Hash] | None = None  # (start, sha256 so far) of the current non-zero run
            position = start
            while position < end:
                chunk = memoryview(os.pread(fd, min(CHUNK, end - position), position))
                if not chunk:
                    break
                for at in range(0, len(chunk), BLOCK):
                    block = chunk[at : at + BLOCK]
                    if block == _ZERO_BLOCK[: len(block)]:
                        if run is not None:
                            close(run[0], position + at, run[1])
                            run = None
                    else:
                        if run is None:
                            run = (position + at, hashlib.sha256())
                        run[1].update(block)
                position += len(chunk)
            if run is not None:
                close(run[0], position, run[1])
    return Scan(size, found, key.hexdigest())


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


def punch_zero_blocks(fd: int, offset: int, length: int) -> None:
    """Give back the file blocks in [offset, offset+length) that hold only zeros (best effort: a filesystem
    that cannot punch holes keeps them allocated)."""
    start = offset // BLOCK * BLOCK
    end = offset + length
    runs: list[tuple[int, int]] = []
    position = start
    while position < end:
        data = os.pread(fd, min(CHUNK, end - position), position)
        if not data:
            break
        for at in range(0, len(data) - BLOCK + 1, BLOCK):
            if data[at : at + BLOCK] == _ZERO_BLOCK:
                block = position + at
                if runs and runs[-1][1] == block:
                    runs[-1] = (runs[-1][0], block + BLOCK)
                else:
                    runs.append((block, block + BLOCK))
        position += len(data)
    if runs:
        _punch(fd, runs)


@functools.cache
def fallocate() -> Any:
    """libc's fallocate(2): Python has no os.fallocate for PUNCH_HOLE. Loaded once (``assemble`` loads it
    while the tools run)."""
    import ctypes

    function = ctypes.CDLL(None, use_errno=True).fallocate
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    return function


def _punch(fd: int, runs: list[tuple[int, int]]) -> None:
    for start, end in runs:  # as fallocate --dig-holes does: PUNCH_HOLE | KEEP_SIZE
        if fallocate()(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, start, end - start) != 0:
            return  # EOPNOTSUPP and the like: the blocks stay allocated, the bytes are right either way


@functools.cache
def _zeros() -> bytes:
    return bytes(CHUNK)  # made on first use: a warm build never hashes holes


def _feed_zeros(digest: hashlib._Hash, length: int) -> None:
    zeros = _zeros()
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
