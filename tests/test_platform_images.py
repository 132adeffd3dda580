"""The three platform images, built from real Debian blobs: golden layouts, clean filesystems, exact files,
reproducibility, sparseness, inspect, and no half-written output on failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from images import PLATFORMS, ROOT, Built, boot2ipxe, build_platform, offline_env
from servers import TestServer

from boot2ipxe.inspect.image import inspect_image
from boot2ipxe.plan.validate import require_valid

GOLDEN = Path(__file__).parent / "golden"
MTOOLS_ENV = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
MiB = 1024 * 1024


def sfdisk_json(image: Path) -> dict[str, object]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, check=True).stdout)
    table = table["partitiontable"]
    table["device"] = "IMAGE"
    for i, part in enumerate(table["partitions"], 1):
        part["node"] = f"IMAGE{i}"
    return table


@pytest.mark.parametrize("name", PLATFORMS)
def test_partition_table_matches_golden(platform_images: dict[str, Built], name: str) -> None:
    golden = json.loads((GOLDEN / f"{name}.sfdisk.json").read_text())
    assert sfdisk_json(platform_images[name].image) == golden
    subprocess.run(["sfdisk", "--verify", str(platform_images[name].image)], check=True, capture_output=True)


def _extract(image: Path, start_sector: int, sectors: int, dest: Path) -> Path:
    with image.open("rb") as src, dest.open("wb") as out:
        src.seek(start_sector * 512)
        remaining = sectors * 512
        while remaining:
            chunk = src.read(min(remaining, 16 * MiB))
            out.write(chunk)
            remaining -= len(chunk)
    return dest


@pytest.mark.parametrize("name", PLATFORMS)
def test_filesystems_are_clean_and_b2c_cache_is_found(platform_images: dict[str, Built], name: str, tmp_path: Path) -> None:
    image = platform_images[name].image
    parts = sfdisk_json(image)["partitions"]
    assert isinstance(parts, list)
    *fats, last = parts
    for n, part in enumerate(fats):  # every partition before the cache is a FAT (firmware, ESP, U-Boot's variables)
        fat = _extract(image, part["start"], part["size"], tmp_path / f"fat{n}.img")
        check = subprocess.run(["fsck.vfat", "-n", str(fat)], capture_output=True, text=True)
        assert check.returncode == 0 and "differ" not in check.stdout, check.stdout + check.stderr
    cache = _extract(image, last["start"], last["size"], tmp_path / "cache.img")
    check = subprocess.run(["e2fsck", "-fn", str(cache)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(cache)], capture_output=True, text=True, check=True)
    assert "LABEL=B2C_CACHE" in probe.stdout.splitlines() and "TYPE=ext4" in probe.stdout.splitlines()


@pytest.mark.parametrize("name", PLATFORMS)
def test_fat_files_are_exactly_the_specs(platform_images: dict[str, Built], name: str, tmp_path: Path) -> None:
    built = platform_images[name]
    plan = require_valid(ROOT / "platforms" / f"{name}.yaml").plan
    assert plan is not None
    boot = plan.partitions[0]
    target = f"{built.image}@@{boot.offset}"
    listing = subprocess.run(
        ["mdir", "-/", "-b", "-i", target, "::"], capture_output=True, text=True, check=True, env=MTOOLS_ENV
    ).stdout.split()
    files = {f.dest for f in boot.files}
    directories = {str(Path(d)) for f in files for d in Path(f).parents if str(d) != "."}
    assert sorted(listing) == sorted([f"::/{f}" for f in files] + [f"::/{d}/" for d in directories])
    placed = {f["dest"]: f for f in built.manifest["files"]}
    for f in boot.files:
        out = tmp_path / "copy"
        subprocess.run(["mcopy", "-n", "-i", target, f"::/{f.dest}", str(out)], check=True, env=MTOOLS_ENV)
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        if f.source:
            assert digest == plan.spec.sources[f.source].sha256, f.dest
        assert placed[f.dest]["sha256"] == digest, f.dest


@pytest.mark.parametrize("name", PLATFORMS)
def test_image_is_sparse(platform_images: dict[str, Built], name: str) -> None:
    built = platform_images[name]
    payload = sum(f["size"] for f in built.manifest["files"])
    allocated = built.image.stat().st_blocks * 512
    assert allocated <= payload + 2 * MiB, f"{allocated} bytes allocated for {payload} bytes of files"
    assert built.image.stat().st_size == 1024 * MiB


def test_same_build_elsewhere_gives_the_same_bytes(
    platform_images: dict[str, Built], warm_cache: Path, _mirror_server: TestServer, tmp_path: Path
) -> None:
    """Another cache, another time zone, another checkout with other mtimes: the same sha256."""
    shutil.copytree(warm_cache, tmp_path / "other-cache")
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "platforms", checkout / "platforms")
    for path in (checkout / "platforms").rglob("*"):
        os.utime(path, (1234567890, 1234567890))
    env = offline_env(TZ="Pacific/Kiritimati", LC_ALL="C.UTF-8")
    for name in ("rpi3bp", "x86-uefi"):
        again = build_platform(
            name,
            tmp_path / "out",
            _mirror_server.url,
            tmp_path / "other-cache",
            spec=checkout / "platforms" / f"{name}.yaml",
            env=env,
        )
        assert again.sha256 == platform_images[name].sha256
        assert again.image.read_bytes() == platform_images[name].image.read_bytes()


@pytest.mark.parametrize("name", PLATFORMS)
def test_manifest_names_every_source_and_its_origin(platform_images: dict[str, Built], name: str) -> None:
    manifest = platform_images[name].manifest
    spec = require_valid(ROOT / "platforms" / f"{name}.yaml").spec
    assert spec is not None
    assert {s["id"]: s["sha256"] for s in manifest["sources"]} == {sid: s.sha256 for sid, s in spec.sources.items()}
    assert all(s["origin"].startswith("${debian}/pool/") for s in manifest["sources"])
    assert manifest["spec"] == {"name": name, "file": str(ROOT / "platforms" / f"{name}.yaml"), "sha256": spec.sha256}
    assert (platform_images[name].image.parent / f"{name}.img.sha256").read_text().split()[0] == manifest["image"]["sha256"]


def test_inspect_recognises_each_platform(platform_images: dict[str, Built]) -> None:
    reports = {name: inspect_image(built.image) for name, built in platform_images.items()}
    version = "1.21.1+git20250501.dad20602+dfsg-1"
    x86 = reports["x86-uefi"]
    assert (x86.table, x86.b2c_cache, x86.findings) == ("gpt", 2, [])
    assert x86.ipxe == [
        {
            "partition": 1,
            "binary": "EFI/BOOT/BOOTX64.EFI",
            "arch": "x86_64",
            "version": version,
            "script": "autoexec.ipxe",
            "ntp": False,
        }
    ]
    for name, board, dtb in (("rpi3bp", "pi0-3", "bcm2837-rpi-3-b-plus.dtb"), ("rpi4", "pi4", "bcm2711-rpi-4-b.dtb")):
        report = reports[name]
        assert (report.table, report.b2c_cache, report.findings, report.trust) == ("mbr", 3, [], [])
        assert report.partitions[0].type == "0c" and report.partitions[0].bootable
        assert (report.partitions[1].type, report.partitions[1].filesystem) == ("ef", "vfat")  # U-Boot's variables
        assert report.ipxe[0]["binary"] == "EFI/BOOT/BOOTAA64.EFI" and report.ipxe[0]["version"] == version
        assert f"Raspberry Pi firmware for {board} on partition 1" in report.chain
        assert "config.txt: kernel=u-boot.bin, arm_64bit" in report.chain
        assert "U-Boot 2025.01-3+deb13u1 (Jun 24 2026 - 09:07:15 +0000) as the kernel" in report.chain
        assert f"device tree {dtb}" in report.chain


def test_static_chain_check_catches_a_wrong_pi_partition_type_and_a_missing_dtb(
    platform_images: dict[str, Built], tmp_path: Path
) -> None:
    """QEMU's raspi3b skips the VideoCore firmware, so these two breakages are found statically."""
    broken = tmp_path / "broken.img"
    subprocess.run(["cp", "--sparse=always", str(platform_images["rpi3bp"].image), str(broken)], check=True)
    subprocess.run(["sfdisk", "--part-type", "-q", str(broken), "1", "83"], check=True, capture_output=True)
    findings = inspect_image(broken).findings
    assert findings == ["partition 1: type 0x83 — the Raspberry Pi boot ROM needs FAT32 type 0x0b or 0x0c"]
    subprocess.run(["sfdisk", "--part-type", "-q", str(broken), "1", "c"], check=True, capture_output=True)
    subprocess.run(["mdel", "-i", f"{broken}@@{4 * MiB}", "::/bcm2837-rpi-3-b-plus.dtb"], check=True, env=MTOOLS_ENV)
    findings = inspect_image(broken).findings
    assert findings == ["partition 1: config.txt device_tree=bcm2837-rpi-3-b-plus.dtb, which is not on the partition"]
    result = boot2ipxe("inspect", "--check", str(broken), check=False)
    assert result.returncode == 1 and "device_tree=bcm2837-rpi-3-b-plus.dtb, which is not on the partition" in result.stdout


def test_sigkill_mid_build_leaves_nothing_at_the_output(
    platform_images: dict[str, Built], warm_cache: Path, _mirror_server: TestServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "boot2ipxe",
            "build",
            str(ROOT / "platforms/x86-uefi.yaml"),
            "-o",
            str(out / "x.img"),
            "--mirror",
            f"debian={_mirror_server.url}",
            "--cache-dir",
            str(warm_cache),
        ],
        env=offline_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not list(out.glob(".x.img.*partial")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "x.img").exists()
    assert not (out / "x.img.sha256").exists() and not (out / "x.img.manifest.json").exists()


def test_full_disk_fails_cleanly(
    platform_images: dict[str, Built], warm_cache: Path, _mirror_server: TestServer, tmp_path: Path
) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2M", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = boot2ipxe(
            "build",
            str(ROOT / "platforms/rpi3bp.yaml"),
            "-o",
            str(small / "x.img"),
            "--mirror",
            f"debian={_mirror_server.url}",
            "--cache-dir",
            str(warm_cache),
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr
        assert "No space left on device" in result.stderr or "disk full" in result.stderr.lower(), result.stderr
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_dry_run_lists_sources_and_writes_nothing(warm_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.img"
    result = boot2ipxe(
        "build",
        str(ROOT / "platforms/rpi4.yaml"),
        "-o",
        str(out),
        "--dry-run",
        "--cache-dir",
        str(warm_cache),
        "--mirror",
        "debian=http://127.0.0.1:9/debian",
        "--json",
    )
    report = json.loads(result.stdout)
    assert {s["id"]: s["cached"] for s in report["sources"]} == {
        "start4.elf": True,
        "fixup4.dat": True,
        "u-boot.bin": True,
        "bcm2711-rpi-4-b.dtb": True,
        "ipxe-arm64.efi": True,
    }
    assert report["plan"]["partitions"][0]["start_sector"] == 8192
    assert list(tmp_path.iterdir()) == []
