"""Sparse files: the image hash against a plain sha256 of every byte, holes included."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from boot2ipxe import sparse

MiB = 1024 * 1024


def make_sparse(path: Path, size: int, writes: dict[int, bytes]) -> None:
    with path.open("wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)


def holes_supported(path: Path) -> bool:
    return path.stat().st_blocks * 512 < path.stat().st_size


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.img"
    # Data at the start, a 4 KiB block of written (allocated) zeros between data, data near the end.
    make_sparse(path, 64 * MiB, {0: b"\x01" * 5000, 8192: bytes(4096) + b"\x02" * 4096, 64 * MiB - 700: b"\x03" * 700})
    if not holes_supported(path):
        pytest.skip("this filesystem does not keep holes")
    return path


def test_hash_image_is_the_sha256_of_every_byte(source: Path, tmp_path: Path) -> None:
    bmap = tmp_path / "source.bmap"
    assert sparse.hash_image(source, bmap) == hashlib.sha256(source.read_bytes()).hexdigest()
    assert "<MappedBlocksCount>" in bmap.read_text()
