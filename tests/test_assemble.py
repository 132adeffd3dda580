"""Assembly with synthetic blobs: layout read back by independent tools, fsck, reproducibility, failures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from boot2ipxe import tools
from boot2ipxe.build.assemble import build_image
from boot2ipxe.errors import ToolError, ToolMissing
from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.formats.table import sfdisk_script
from boot2ipxe.inspect.image import inspect_image
from boot2ipxe.plan.layout import Plan
from boot2ipxe.plan.validate import require_valid
from boot2ipxe.spec.model import Blob

EPOCH = 1700000000

SPEC = """\
spec: 1
name: {name}
arch: arm64
chain: [u-boot, efi, ipxe]
sources:
  spl:
    sha256: {spl_sha}
    origins: [{{path: blobs/spl.bin}}]
  big:
    sha256: {big_sha}
    origins: [{{path: blobs/big.bin}}]
  ipxe:
    sha256: {ipxe_sha}
    origins: [{{path: blobs/ipxe.efi}}]
disk:
  table: gpt
  alignment: 1MiB
partitions:
  - name: loader
    type: raw-data
    size: 2MiB
  - name: esp
    type: efi-system
    size: 32MiB
    filesystem: vfat
    fat: 16
    label: ESP
    files:
      - {{dest: EFI/BOOT/BOOTAA64.EFI, source: ipxe}}
      - {{dest: u-boot.itb, source: big}}
      - {{dest: boot/extlinux/extlinux.conf, content: "label {{{{ platform.name }}}}\\n"}}
      - {{dest: autoexec.ipxe, content: "#!ipxe\\ndhcp\\n"}}
  - name: cache
    type: linux
    size: 16MiB
    filesystem: ext4
    label: B2C_CACHE
raw:
  - {{source: spl, offset: 1MiB}}
ipxe: {{partition: esp, binary: EFI/BOOT/BOOTAA64.EFI, script: autoexec.ipxe, firmware: u-boot}}
"""


def _blob(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def make_spec(root: Path, name: str = "synthetic") -> Path:
    shas = {
        "spl_sha": _blob(root / "blobs/spl.bin", b"SPL!" * 8000),
        "big_sha": _blob(root / "blobs/big.bin", bytes(range(256)) * 12000),
        "ipxe_sha": _blob(root / "blobs/ipxe.efi", b"MZ iPXE ipxe,1,iPXE,ipxe.efi,1.0-test,https://ipxe.org" + b"\1" * 70000),
    }
    spec = root / f"{name}.yaml"
    spec.write_text(SPEC.format(name=name, **shas))
    return spec


def blobs_for(plan: Plan) -> dict[str, Blob]:
    out = {}
    for sid, source in plan.spec.sources.items():
        path = source.origins[0].path
        assert path is not None
        out[sid] = Blob(path, source.sha256, path.stat().st_size, f"path {path.name}")
    return out


def build(spec_path: Path, output: Path) -> tuple[Plan, str]:
    checked = require_valid(spec_path)
    assert checked.plan is not None
    output.parent.mkdir(parents=True, exist_ok=True)
    result = build_image(checked.plan, blobs_for(checked.plan), output, EPOCH)
    return checked.plan, result.sha256


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Plan, Path, str]:
    root = tmp_path_factory.mktemp("synthetic")
    plan, digest = build(make_spec(root), root / "out" / "synthetic.img")
    return plan, root / "out" / "synthetic.img", digest


def extract(image: Path, offset: int, size: int, dest: Path) -> Path:
    with image.open("rb") as src, dest.open("wb") as out:
        src.seek(offset)
        out.write(src.read(size))
    return dest


def test_table_read_back_by_sfdisk_matches_plan(built: tuple[Plan, Path, str]) -> None:
    plan, image, _ = built
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True, capture_output=True).stdout)
    table = table["partitiontable"]
    assert table["label"] == "gpt"
    assert table["id"] == plan.disk_id
    assert table["firstlba"] == 34 and table["lastlba"] == plan.total_sectors - 34
    got = [(p["start"], p["size"], p["type"], p["uuid"], p["name"]) for p in table["partitions"]]
    want = [(p.start, p.sectors, p.type_code, p.uuid, p.name) for p in plan.partitions]
    assert got == want
    # 2 MiB loader at 1 MiB, ESP after it, then the cache; GPT backup fits in the last aligned MiB.
    assert [p.start for p in plan.partitions] == [2048, 6144, 71680]
    assert plan.total_sectors == 71680 + 32768 + 2048
    subprocess.run(["sfdisk", "--verify", str(image)], check=True, capture_output=True)


def test_filesystems_are_clean_and_labelled(built: tuple[Plan, Path, str], tmp_path: Path) -> None:
    plan, image, _ = built
    esp, cache = plan.partition("esp"), plan.partition("cache")
    fat = extract(image, esp.offset, esp.size, tmp_path / "esp.img")
    check = subprocess.run(["fsck.vfat", "-n", str(fat)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "differ" not in check.stdout and "Fix" not in check.stdout
    ext = extract(image, cache.offset, cache.size, tmp_path / "cache.img")
    check = subprocess.run(["e2fsck", "-fn", str(ext)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(ext)], capture_output=True, text=True, check=True).stdout
    assert "LABEL=B2C_CACHE" in probe and "TYPE=ext4" in probe
    assert f"UUID={cache.fs_id}" in probe
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(fat)], capture_output=True, text=True, check=True).stdout
    assert "LABEL=ESP" in probe and "VERSION=FAT16" in probe


def test_files_and_raw_bytes_are_in_place(built: tuple[Plan, Path, str]) -> None:
    plan, image, _ = built
    esp = plan.partition("esp")
    listing = subprocess.run(
        ["mdir", "-/", "-b", "-i", f"{image}@@{esp.offset}", "::"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout.split()
    assert sorted(listing) == sorted(
        [
            "::/EFI/",
            "::/EFI/BOOT/",
            "::/EFI/BOOT/BOOTAA64.EFI",
            "::/u-boot.itb",
            "::/boot/",
            "::/boot/extlinux/",
            "::/boot/extlinux/extlinux.conf",
            "::/autoexec.ipxe",
        ]
    )
    spec_dir = plan.spec.path.parent
    with image.open("rb") as f:
        reader = FatReader(f, esp.offset)
        assert reader.read("u-boot.itb") == (spec_dir / "blobs/big.bin").read_bytes()
        assert reader.read("boot/extlinux/extlinux.conf") == b"label synthetic\n"
        f.seek(1024 * 1024)
        assert f.read(32000) == (spec_dir / "blobs/spl.bin").read_bytes()


def test_sidecars_and_manifest(built: tuple[Plan, Path, str]) -> None:
    plan, image, digest = built
    assert hashlib.sha256(image.read_bytes()).hexdigest() == digest
    assert (image.parent / "synthetic.img.sha256").read_text() == f"{digest}  synthetic.img\n"
    manifest = json.loads((image.parent / "synthetic.img.manifest.json").read_text())
    assert manifest["image"] == {"sha256": digest, "size": plan.size}
    assert manifest["spec"]["sha256"] == plan.spec.sha256
    assert manifest["source_date_epoch"] == EPOCH
    placed = {(f["partition"], f["dest"]): f for f in manifest["files"]}
    big = plan.spec.sources["big"]
    assert placed[("esp", "u-boot.itb")]["sha256"] == big.sha256
    assert placed[("esp", "autoexec.ipxe")]["sha256"] == hashlib.sha256(b"#!ipxe\ndhcp\n").hexdigest()
    assert {s["id"] for s in manifest["sources"]} == {"spl", "big", "ipxe"}
    assert manifest["raw"] == [{"source": "spl", "offset": 1048576, "size": 32000}]
    assert not list(image.parent.glob(".*partial"))


def test_image_is_sparse(built: tuple[Plan, Path, str]) -> None:
    _, image, _ = built
    payload = sum(p.stat().st_size for p in (image.parent.parent / "blobs").iterdir())
    assert image.stat().st_blocks * 512 <= payload + 2 * 1024 * 1024


def test_inspect_explains_the_synthetic_image(built: tuple[Plan, Path, str]) -> None:
    _, image, _ = built
    report = inspect_image(image)
    assert report.table == "gpt" and report.b2c_cache == 3
    assert [p.filesystem for p in report.partitions] == [None, "vfat", "ext4"]
    assert report.ipxe == [
        {
            "partition": 2,
            "binary": "EFI/BOOT/BOOTAA64.EFI",
            "arch": "arm64",
            "version": "1.0-test",
            "script": "autoexec.ipxe",
            "ntp": False,
        }
    ]


def test_reproducible_across_time_zone_blob_paths_and_mtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first_root, second_root = tmp_path / "a", tmp_path / "b"
    _, first = build(make_spec(first_root), first_root / "x.img")
    make_spec(second_root)
    for blob in (second_root / "blobs").iterdir():
        os.utime(blob, (123456789, 123456789))
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    _, second = build(second_root / "synthetic.yaml", second_root / "y.img")
    assert first == second


def test_sfdisk_script_is_explicit(built: tuple[Plan, Path, str]) -> None:
    plan, _, _ = built
    script = sfdisk_script(plan.partition_table())
    assert f"label-id: {plan.disk_id}" in script
    assert all(f"uuid={p.uuid}" in script for p in plan.partitions)


def test_missing_tool_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(tmp_path)
    out = tmp_path / "out"
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(tools, "EXTRA_PATH", ())
    with pytest.raises(ToolMissing, match="mformat not found: install the Debian package 'mtools'"):
        build(spec, out / "img")
    assert list(out.iterdir()) == []


def test_failing_tool_names_the_command_and_leaves_no_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = make_spec(tmp_path)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mcopy").write_text("#!/bin/sh\necho 'mcopy: disk full (simulated)' >&2\nexit 1\n")
    (fake / "mcopy").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    with pytest.raises(ToolError, match=r"command failed \(exit 1\): mcopy .*disk full \(simulated\)"):
        build(spec, tmp_path / "out" / "img")
    assert list((tmp_path / "out").iterdir()) == []


def test_bmap_flashes_an_identical_copy_with_bmaptool(built: tuple[Plan, Path, str], tmp_path: Path) -> None:
    _, image, _ = built
    bmap = image.with_name(image.name + ".bmap")
    assert "<MappedBlocksCount>" in bmap.read_text()
    target = tmp_path / "flashed.img"
    subprocess.run(["bmaptool", "copy", "--bmap", str(bmap), str(image), str(target)], check=True, capture_output=True)
    assert target.read_bytes() == image.read_bytes()
    # bmaptool refuses a bmap whose checksum does not match (it verifies ours, so it is not ignored).
    tampered = tmp_path / "tampered.bmap"
    tampered.write_text(bmap.read_text().replace("<BlockSize> 4096", "<BlockSize>  4096"))
    refused = subprocess.run(
        ["bmaptool", "copy", "--bmap", str(tampered), str(image), str(tmp_path / "x.img")], capture_output=True
    )
    assert refused.returncode != 0


def test_libparted_read_back_catches_a_table_that_differs_from_the_plan(built: tuple[Plan, Path, str]) -> None:
    """libparted reads the table independently of sfdisk; a plan the image does not match is refused."""
    import dataclasses

    from boot2ipxe.build.verify import verify_with_libparted
    from boot2ipxe.errors import BuildError

    plan, image, _ = built
    verify_with_libparted(image, plan.partition_table())  # the real plan matches
    renamed = dataclasses.replace(plan.partitions[1], name="other")
    wrong = dataclasses.replace(plan, partitions=(plan.partitions[0], renamed, plan.partitions[2]))
    with pytest.raises(BuildError, match=r"libparted reads the partitions as .*'esp'.*planned .*'other'"):
        verify_with_libparted(image, wrong.partition_table())
    moved = dataclasses.replace(plan.partitions[2], start=plan.partitions[2].start + 2048)
    wrong = dataclasses.replace(plan, partitions=(*plan.partitions[:2], moved))
    with pytest.raises(BuildError, match="libparted reads the partitions as"):
        verify_with_libparted(image, wrong.partition_table())
