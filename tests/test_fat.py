"""fat.py against the real tools: mformat writes what the geometry says, fsck.fat agrees on the cluster
count, and the planner's fit arithmetic matches what mcopy can actually store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from boot2ipxe.formats.fat import (
    SECTOR,
    FatError,
    FatGeometry,
    boot_sector_label,
    directory_clusters,
    fat_geometry,
    name_slots,
    read_boot_sector,
)
from boot2ipxe.plan.layout import PlannedFile, fat_clusters_needed
from boot2ipxe.units import MiB

ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "LC_ALL": "C"}


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60)


def mformat(image: Path, offset: int, g: FatGeometry, serial: str, label: str) -> None:
    """Format at byte ``offset`` with exactly the geometry's numbers (as the assembler does)."""
    argv = ["mformat", "-i", f"{image}@@{offset}", "-T", str(g.sectors), "-H", str(g.hidden_sectors), "-h", "64", "-s", "32"]
    argv += ["-c", str(g.sectors_per_cluster), "-R", str(g.reserved_sectors), "-L", str(g.fat_sectors), "-d", str(g.fat_count)]
    argv += ["-F"] if g.bits == 32 else ["-r", str(g.root_dir_sectors)]
    argv += ["-N", serial, "-v", label, "::"]
    result = run(argv)
    assert result.returncode == 0, result.stderr


def blank_image(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.truncate(size)  # sparse
    return path


@pytest.mark.parametrize(
    ("sectors", "bits", "hidden"),
    [
        (4096, None, 2048),  # 2MiB: FAT12, 1 sector per cluster
        (65536, 12, 8192),  # 32MiB forced to FAT12: 32 sectors per cluster
        (65536, None, 2048),  # 32MiB: FAT16, 4 sectors per cluster
        (131072, None, 2048),  # 64MiB: FAT32, 1 sector per cluster
        (614400, 32, 34),  # 300MiB: FAT32, 8 sectors per cluster, odd start as on a GPT disk with 512-byte alignment
    ],
)
def test_mformat_writes_the_planned_geometry(tmp_path: Path, sectors: int, bits: int | None, hidden: int) -> None:
    geometry = fat_geometry(sectors, bits, hidden)
    offset = hidden * SECTOR
    image = blank_image(tmp_path / "disk.img", offset + sectors * SECTOR)
    mformat(image, offset, geometry, "5eed0001", "B2IPXE")
    with image.open("rb") as f:
        f.seek(offset)
        sector = f.read(SECTOR)
    assert read_boot_sector(sector) == geometry
    assert boot_sector_label(sector) == ("B2IPXE", "5eed0001")
    # An independent reader agrees: fsck.fat counts the same clusters and finds nothing wrong.
    part = tmp_path / "part.img"
    with image.open("rb") as src, part.open("wb") as dst:
        src.seek(offset)
        dst.write(src.read(sectors * SECTOR))
    check = run(["fsck.fat", "-n", str(part)])
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"/{geometry.clusters} clusters" in check.stdout


def test_read_boot_sector_refuses_what_is_not_fat() -> None:
    with pytest.raises(FatError, match="0x55AA"):
        read_boot_sector(bytes(512))
    bad = bytearray(512)
    bad[510:512] = b"\x55\xaa"
    with pytest.raises(FatError, match="unsupported FAT geometry"):
        read_boot_sector(bytes(bad))


def _fill(files: list[tuple[str, int]], geometry: FatGeometry, extra: int) -> tuple[list[tuple[str, int]], int]:
    """The files plus a first file grown to take every cluster the planner thinks is free (+ extra bytes)."""
    planned = [PlannedFile(dest, "content", None, None, size) for dest, size in files]
    used, _ = fat_clusters_needed(planned, geometry)
    free = geometry.clusters - used
    assert free > 0
    grown = [(files[0][0], files[0][1] + free * geometry.cluster_bytes + extra), *files[1:]]
    planned = [PlannedFile(dest, "content", None, None, size) for dest, size in grown]
    return grown, fat_clusters_needed(planned, geometry)[0]


@pytest.mark.parametrize("sectors", [4096, 65536, 131072], ids=["fat12", "fat16", "fat32"])
@pytest.mark.parametrize("extra", [0, 1], ids=["exactly-full", "one-byte-more"])
def test_fit_arithmetic_matches_mcopy(tmp_path: Path, sectors: int, extra: int) -> None:
    geometry = fat_geometry(sectors, None)
    files = [
        ("EFI/BOOT/BOOTX64.EFI", 0),
        ("autoexec.ipxe", 100),  # a long name: 2 directory slots
        ("EFI/tools/Shell With A Long Name.efi", 3000),
        ("boot/extlinux/extlinux.conf", 700),
    ]
    grown, needed = _fill(files, geometry, extra)
    assert needed == geometry.clusters + (1 if extra else 0)
    image = blank_image(tmp_path / "fs.img", sectors * SECTOR)
    mformat(image, 0, geometry, "00000001", "FIT")
    directories = sorted({str(Path(dest).parents[i]) for dest, _ in grown for i in range(len(Path(dest).parts) - 1)})
    for directory in directories:
        assert run(["mmd", "-i", str(image), f"::{directory}"]).returncode == 0
    results = []
    for index, (dest, size) in enumerate(reversed(grown)):  # the big file last, so only it can run out of space
        source = tmp_path / f"src{index}"
        source.write_bytes(b"\x01" * size)
        results.append(run(["mcopy", "-i", str(image), str(source), f"::{dest}"]))
    *small, big = results
    assert all(r.returncode == 0 for r in small)
    if extra:
        assert big.returncode != 0 and "Disk full" in big.stderr
    else:
        assert big.returncode == 0, big.stderr
        check = run(["fsck.fat", "-n", str(image)])
        assert f"{geometry.clusters}/{geometry.clusters} clusters" in check.stdout, check.stdout


@pytest.mark.parametrize(
    ("name", "slots"),
    [
        ("BOOTX64.EFI", 1),  # a valid 8.3 name
        ("EFI", 1),
        ("README", 1),
        ("autoexec.ipxe", 2),  # extension longer than 3: 13 characters -> 1 long-name slot
        ("config.txt", 2),  # lower case needs a long name (conservatively)
        ("A+B.BIN", 2),  # '+' is not allowed in a short name
        ("A.B.C", 2),  # two dots
        ("x" * 26, 3),  # 26 characters -> 2 long-name slots
        ("x" * 27, 4),
    ],
)
def test_name_slots(name: str, slots: int) -> None:
    assert name_slots(name) == slots


def test_directory_clusters() -> None:
    # "." and ".." plus one slot per 8.3 name: 2 + 14 = 16 slots of 32 bytes = 512 bytes, one cluster.
    assert directory_clusters([f"FILE{i}.BIN" for i in range(14)], 512) == 1
    assert directory_clusters([f"FILE{i}.BIN" for i in range(15)], 512) == 2
    assert directory_clusters([], 4096) == 1


def test_fat32_minimum_size_message_is_true() -> None:
    with pytest.raises(FatError) as caught:
        fat_geometry(32 * MiB // SECTOR, 32)
    message = str(caught.value)
    smallest = int(message.split("make the partition at least ")[1].split("MiB")[0])
    fat_geometry(smallest * MiB // SECTOR, 32)  # the size it names works
    with pytest.raises(FatError):
        fat_geometry((smallest - 1) * MiB // SECTOR, 32)  # and one MiB less does not
