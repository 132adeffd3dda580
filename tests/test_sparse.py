"""Sparse files: the image hash against a plain sha256 of every byte, holes included."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from boot2ipxe.formats import sparse

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


def naive_zero_runs(data: bytes) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for at in range(0, len(data), sparse.BLOCK):
        if not any(data[at : at + sparse.BLOCK]):
            end = min(at + sparse.BLOCK, len(data))
            if runs and runs[-1][1] == at:
                runs[-1] = (runs[-1][0], end)
            else:
                runs.append((at, end))
    return runs


def test_zero_runs_agree_with_a_block_by_block_search() -> None:
    rnd = random.Random(8)
    for _ in range(500):
        size = rnd.choice([0, 1, 100, 4096, 4097, 8191, 3 * 65536 * 4 + 17, 300_000])
        data = bytearray(size)
        for _ in range(rnd.randint(0, 12)):
            if size:
                at = rnd.randrange(size)
                data[at : at + rnd.randint(1, 9000)] = rnd.randbytes(len(data[at : at + 9000]))[: rnd.randint(1, 9000)]
        data = data[:size]
        assert sparse.zero_runs(bytes(data)) == naive_zero_runs(bytes(data))


def test_scan_sees_bytes_not_allocation(source: Path, tmp_path: Path) -> None:
    """Written zeros and holes look the same to scan: the content key and the ranges follow the bytes only."""
    found = sparse.scan(source)
    assert [(start, end) for start, end, _ in found.ranges] == [(0, 8192), (12288, 16384), (64 * MiB - 4096, 64 * MiB)]
    assert found.ranges[0][2] == hashlib.sha256(source.read_bytes()[:8192]).hexdigest()
    dense = tmp_path / "dense.img"
    dense.write_bytes(source.read_bytes())  # the same bytes, every block allocated
    assert dense.stat().st_blocks > source.stat().st_blocks
    assert sparse.scan(dense).content_key == found.content_key
    changed = tmp_path / "changed.img"
    make_sparse(changed, 64 * MiB, {0: b"\x01" * 5000, 8192: bytes(4096) + b"\x02" * 4096, 64 * MiB - 700: b"\x04" * 700})
    assert sparse.scan(changed).content_key != found.content_key
    assert sparse.full_sha256(source, found.ranges) == hashlib.sha256(source.read_bytes()).hexdigest()


def test_place_writes_only_the_blocks_that_are_not_zeros(tmp_path: Path) -> None:
    """How a FAT made in its own scratch file reaches the image: its zero blocks are never written there."""
    scratch = tmp_path / "fat.img"
    data = b"\x07" * 10 + bytes(4 * MiB) + b"\x09" * 4096
    scratch.write_bytes(data)  # every block allocated, as mformat leaves its FATs
    image = tmp_path / "disk.img"
    make_sparse(image, 64 * MiB, {})
    if not holes_supported(image):
        pytest.skip("this filesystem does not keep holes")
    sparse.place(scratch, image, 1 * MiB, zeros=(0, len(data)))
    content = image.read_bytes()
    assert content[MiB : MiB + len(data)] == data and not any(content[:MiB]) and not any(content[MiB + len(data) :])
    assert image.stat().st_blocks * 512 <= 3 * 4096  # the first block, and the two the last bytes straddle
    verbatim = tmp_path / "verbatim.img"
    make_sparse(verbatim, 64 * MiB, {})
    sparse.place(scratch, verbatim, 1 * MiB)  # outside the zeros range, data is copied as it is
    assert verbatim.read_bytes() == content and verbatim.stat().st_blocks * 512 >= len(data) // 4096 * 4096


def test_copy_falls_back_to_read_and_write_where_copy_file_range_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    def refused(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refused)
    source, target = tmp_path / "source.bin", tmp_path / "target.bin"
    source.write_bytes(b"\x05" * 10_000)
    target.write_bytes(bytes(20_000))
    with source.open("rb") as src, target.open("r+b") as dst:
        sparse._copy_range(src.fileno(), dst.fileno(), 0, 10_000, 5_000)
        with pytest.raises(OSError, match="short"):  # a source shorter than the range: an error, not a hang
            sparse._copy_range(src.fileno(), dst.fileno(), 9_000, 12_000, 0)
    assert target.read_bytes()[5_000:15_000] == b"\x05" * 10_000
