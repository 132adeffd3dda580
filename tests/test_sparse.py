"""Sparse files: data ranges, the image hash against a plain sha256, and copies that stay sparse."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
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


def hole_at(path: Path, offset: int) -> bool:
    with path.open("rb") as f:
        try:
            return os.lseek(f.fileno(), offset, os.SEEK_DATA) != offset
        except OSError:
            return True  # no data at or after offset


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


def test_copy_is_identical_keeps_the_targets_mode_and_stays_sparse(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "copy.img"
    target.touch(mode=0o600)
    target.chmod(0o600)
    sparse.copy_sparse(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert target.stat().st_blocks <= source.stat().st_blocks
    assert hole_at(target, MiB)  # a hole stays a hole
    assert hole_at(target, 8192)  # and a written block of zeros becomes one, as with cp --sparse=always
    assert not hole_at(target, 12288)


def test_copy_allocates_no_more_than_cp(source: Path, tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.img", tmp_path / "cp.img"
    ours.touch()
    sparse.copy_sparse(source, ours)
    subprocess.run(["cp", "--sparse=always", str(source), str(theirs)], check=True)
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.stat().st_blocks <= theirs.stat().st_blocks


def test_copy_over_a_longer_file_leaves_nothing_of_it(source: Path, tmp_path: Path) -> None:
    target = tmp_path / "old.img"
    make_sparse(target, 80 * MiB, {MiB: b"\xff" * 4096, 70 * MiB: b"\xee"})
    sparse.copy_sparse(source, target)
    assert target.stat().st_size == source.stat().st_size
    assert target.read_bytes() == source.read_bytes()


def test_copy_of_an_empty_file(tmp_path: Path) -> None:
    empty, target = tmp_path / "empty", tmp_path / "target"
    empty.touch()
    target.write_bytes(b"old")
    sparse.copy_sparse(empty, target)
    assert target.read_bytes() == b""
