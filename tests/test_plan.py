"""Layouts from the planner against values computed by hand (the arithmetic is in the comments).

Sectors are 512 bytes throughout: 1MiB = 2048 sectors, 4MiB = 8192, 64MiB = 131072, 256MiB = 524288,
1GiB = 2097152.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from boot2ipxe.errors import Problem
from boot2ipxe.formats.fat import FatError, fat_geometry
from boot2ipxe.formats.ipxe_script import lint_script
from boot2ipxe.plan.layout import Plan, make_plan
from boot2ipxe.spec.load import load_spec
from boot2ipxe.spec.mirrors import Mirrors
from boot2ipxe.units import GiB, MiB

ROOT = Path(__file__).resolve().parent.parent
MIRRORS = Mirrors(cli={"debian": "http://127.0.0.1:9/debian"}, environ={}, config_file=Path("/nonexistent"), apt_paths=())


def plan_of(path: Path) -> Plan:
    spec, problems = load_spec(path, MIRRORS)
    assert spec is not None, problems
    plan, more = make_plan(spec)
    assert plan is not None, [str(p) for p in problems + more]
    assert not [p for p in problems + more if p.severity == "error"]
    return plan


def problems_of(path: Path) -> list[Problem]:
    spec, problems = load_spec(path, MIRRORS)
    assert spec is not None, problems
    _, more = make_plan(spec)
    return [p for p in problems + more if p.severity == "error"]


def write_spec(tmp_path: Path, body: str, name: str = "synthetic") -> Path:
    """A spec with the usual header; ``body`` holds disk and partitions (and anything else)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"spec: 1\nname: {name}\narch: x86_64\nchain: [uefi]\n" + textwrap.dedent(body))
    return path


# ---------------------------------------------------------------------------------------------- platforms


@pytest.mark.parametrize("platform", ["rpi3bp", "rpi4"])
def test_raspberry_pi_layout(platform: str) -> None:
    plan = plan_of(ROOT / "platforms" / f"{platform}.yaml")
    assert plan.table == "mbr"
    # disk.size 1GiB = 2097152 sectors; an MBR uses sector 0 only, so sectors 1..2097151 are usable.
    assert (plan.total_sectors, plan.first_usable, plan.last_usable) == (2097152, 1, 2097151)
    boot, variables, cache = plan.partitions
    # alignment 4MiB = 8192 sectors: the first aligned start at or after sector 1 is 8192.
    # boot is 256MiB = 524288 sectors, so it ends at 8192 + 524288 - 1 = 532479.
    assert (boot.start, boot.sectors, boot.type_code, boot.bootable) == (8192, 524288, "0c", True)
    # U-Boot's EFI system partition (ubootefi.var) starts right after: 532480 = 65 * 8192, 4MiB = 8192 sectors.
    assert (variables.start, variables.sectors, variables.type_code, variables.label) == (532480, 8192, "ef", "EFIVARS")
    # FAT16 here: 1KiB clusters (fatgen103 for <= 16MiB) would give under 4085 clusters, so 512 B; 1 reserved sector,
    # 512 root entries (32 sectors); with F sectors per FAT, clusters = 8192 - 1 - 32 - 2F and
    # ceil((clusters + 2) * 2 / 512) <= F  ->  516F >= 16322  ->  F = 32, clusters = 8159 - 64 = 8095 (>= 4085).
    assert variables.fat is not None
    assert (variables.fat.bits, variables.fat.fat_sectors, variables.fat.clusters) == (16, 32, 8095)
    # The cache starts at 540672 = 66 * 8192. "rest" runs to the last usable sector rounded down to the alignment:
    # (2097151 + 1 - 540672) = 1556480 = 190 * 8192 exactly.
    assert (cache.start, cache.sectors, cache.type_code) == (540672, 1556480, "83")
    assert cache.start + cache.sectors == plan.total_sectors
    # ext4 with 4KiB blocks: 1556480 * 512 / 4096 = 194560 blocks.
    assert cache.ext4 is not None and (cache.ext4.blocks, cache.ext4.block_size) == (194560, 4096)
    assert cache.label == "B2C_CACHE"
    # FAT32 (fat: 32) on 524288 sectors = 256MiB <= 260MiB, so 1 sector per cluster (fatgen103 table).
    # 32 reserved sectors, no fixed root directory: 524288 - 32 = 524256 sectors for 2 FATs + clusters.
    # With F sectors per FAT, clusters = 524256 - 2F, and the FAT needs ceil((clusters + 2) * 4 / 512) <= F:
    #   512F >= 4 * (524258 - 2F)  ->  520F >= 2097032  ->  F >= 4032.75  ->  F = 4033,
    #   clusters = 524256 - 2 * 4033 = 516190 (>= 65525, so FAT32 is legal).
    fat = boot.fat
    assert fat is not None
    assert (fat.bits, fat.sectors, fat.sectors_per_cluster, fat.reserved_sectors) == (32, 524288, 1, 32)
    assert (fat.fat_count, fat.fat_sectors, fat.root_entries, fat.clusters) == (2, 4033, 0, 516190)
    # The boot sector's hidden-sectors field is the partition start.
    assert fat.hidden_sectors == 8192
    assert fat.data_start_sector == 32 + 2 * 4033


def test_x86_uefi_layout() -> None:
    plan = plan_of(ROOT / "platforms" / "x86-uefi.yaml")
    assert plan.table == "gpt"
    # GPT: protective MBR (LBA 0), header (LBA 1), 128 entries * 128 bytes = 32 sectors (LBA 2..33),
    # so the first usable sector is 34; the backup entries and header take the last 33 sectors,
    # so the last usable one is 2097152 - 33 - 1 = 2097118 = total - 34.
    assert (plan.total_sectors, plan.first_usable, plan.last_usable) == (2097152, 34, 2097152 - 34)
    esp, cache = plan.partitions
    # alignment 1MiB = 2048 sectors: first aligned start >= 34 is 2048; 64MiB = 131072 sectors.
    assert (esp.start, esp.sectors) == (2048, 131072)
    assert esp.type_code == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
    # cache starts at 2048 + 131072 = 133120 (= 65 * 2048); rest = (2097118 + 1 - 133120) = 1963999 sectors,
    # rounded down to 2048: 958 * 2048 = 1961984 (958MiB), leaving 2015 unused sectors before the backup GPT.
    assert (cache.start, cache.sectors) == (133120, 1961984)
    assert cache.type_code == "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
    # FAT32 on 131072 sectors (64MiB <= 260MiB: 1 sector per cluster), 32 reserved: 131040 left.
    #   512F >= 4 * (131040 - 2F + 2)  ->  520F >= 524168  ->  F >= 1008.02  ->  F = 1009,
    #   clusters = 131040 - 2018 = 129022.
    fat = esp.fat
    assert fat is not None
    assert (fat.bits, fat.sectors_per_cluster, fat.reserved_sectors, fat.fat_sectors, fat.clusters) == (32, 1, 32, 1009, 129022)
    assert fat.hidden_sectors == 2048


def test_platform_plans_are_deterministic() -> None:
    first = plan_of(ROOT / "platforms" / "x86-uefi.yaml").as_dict()
    assert plan_of(ROOT / "platforms" / "x86-uefi.yaml").as_dict() == first
    # Identities are derived from names, so they are stable and well-formed.
    assert len(first["disk_id"]) == 36 and first["disk_id"] == first["disk_id"].upper()
    assert all(p["uuid"] and len(p["uuid"]) == 36 for p in first["partitions"])


def test_templates_render_with_platform_context() -> None:
    plan = plan_of(ROOT / "platforms" / "rpi4.yaml")
    files = {f.dest: f for f in plan.partition("boot").files}
    config = files["config.txt"].data
    assert config is not None
    assert b"kernel=u-boot.bin\n" in config and b"device_tree=bcm2711-rpi-4-b.dtb\n" in config
    assert b"enable_gic=1" in config
    script = files["autoexec.ipxe"].data
    assert script is not None and script.startswith(b"#!ipxe\n")
    # Under U-Boot the default script never waits (the only mention of sleep is in a comment).
    assert lint_script(script.decode(), "u-boot") == [] and b"\nsleep" not in script
    # Sizes of fetched blobs come from the spec's size pins; rendered files from their text.
    assert files["u-boot.bin"].size == 681256
    assert files["config.txt"].size == len(config)


# ---------------------------------------------------------------------------------------------- synthetic


def test_default_alignment_and_size_mbr(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: mbr}
            partitions:
              - {name: boot, type: fat16, size: 8MiB, filesystem: vfat}
              - {name: spare, type: raw-data, size: 16MiB}
            """,
        )
    )
    # Default alignment 1MiB = 2048 sectors: boot at 2048 (8MiB = 16384 sectors), spare at 2048 + 16384 = 18432.
    assert [(p.start, p.sectors) for p in plan.partitions] == [(2048, 16384), (18432, 32768)]
    # No disk.size: the disk ends where the last partition ends, rounded up to the alignment:
    # 18432 + 32768 = 51200 (already a multiple of 2048).
    assert (plan.total_sectors, plan.last_usable) == (51200, 51199)
    assert plan.size == 25 * MiB


def test_explicit_offsets(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: mbr, alignment: 4MiB}
            partitions:
              - {name: firmware, type: raw-data, size: 4MiB, offset: 16MiB}
              - {name: boot, type: fat32-lba, size: 64MiB, filesystem: vfat}
              - {name: late, type: linux, size: 8MiB, offset: 128MiB}
            """,
        )
    )
    # firmware at 16MiB = 32768 sectors, 4MiB = 8192 sectors, ends before 40960.
    # boot follows: cursor 40960 is already 4MiB-aligned (5 * 8192); 64MiB = 131072 sectors -> ends before 172032.
    # late at 128MiB = 262144 sectors (a gap from 172032 is left empty), 8MiB = 16384 sectors.
    assert [(p.start, p.sectors) for p in plan.partitions] == [(32768, 8192), (40960, 131072), (262144, 16384)]
    # Disk size: 262144 + 16384 = 278528 = 34 * 8192 sectors (136MiB).
    assert plan.total_sectors == 278528


def test_gpt_default_size_is_end_plus_backup_rounded(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: gpt}
            partitions:
              - {name: esp, type: efi-system, size: 1MiB}
            """,
        )
    )
    # esp at 2048, 2048 sectors: ends before 4096. Backup GPT needs 33 more: 4096 + 33 = 4129,
    # rounded up to 1MiB (2048 sectors) = 6144. Last usable = 6144 - 34 = 6110.
    assert (plan.partitions[0].start, plan.total_sectors, plan.first_usable, plan.last_usable) == (2048, 6144, 34, 6110)


def test_gpt_default_size_with_sector_alignment(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: gpt, alignment: 512}
            partitions:
              - {name: esp, type: efi-system, size: 1MiB}
            """,
        )
    )
    # With 1-sector alignment the partition starts at the first usable sector, 34, and ends before
    # 34 + 2048 = 2082; the disk is 2082 + 33 = 2115 sectors, the last usable 2115 - 34 = 2081.
    assert (plan.partitions[0].start, plan.total_sectors, plan.last_usable) == (34, 2115, 2081)


def test_rest_fills_the_disk(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: mbr, size: 100MiB}
            partitions:
              - {name: boot, type: fat32-lba, size: 10MiB, filesystem: vfat}
              - {name: cache, type: linux, size: rest, filesystem: ext4, label: B2C_CACHE}
            """,
        )
    )
    # 100MiB = 204800 sectors. boot 2048..22527 (10MiB = 20480 sectors); cache from 22528 to the end:
    # 204800 - 22528 = 182272 = 89 * 2048 sectors (89MiB).
    assert [(p.start, p.sectors) for p in plan.partitions] == [(2048, 20480), (22528, 182272)]
    assert plan.total_sectors == 204800


def test_rest_rounds_down_to_alignment(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: gpt, size: 101000KiB}
            partitions:
              - {name: esp, type: efi-system, size: 10MiB, filesystem: vfat}
              - {name: cache, type: linux, size: rest, filesystem: ext4}
            """,
        )
    )
    # 101000KiB = 202000 sectors; last usable = 202000 - 34 = 201966. cache starts at 22528;
    # 201967 - 22528 = 179439 sectors, rounded down to 2048: 87 * 2048 = 178176.
    assert plan.partitions[1].start == 22528
    assert plan.partitions[1].sectors == 178176
    assert (plan.total_sectors, plan.last_usable) == (202000, 201966)


def test_fat16_chosen_when_fat32_would_have_too_few_clusters(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: mbr}
            partitions:
              - {name: boot, type: fat16, size: 32MiB, filesystem: vfat}
            """,
        )
    )
    fat = plan.partitions[0].fat
    assert fat is not None
    # FAT32 first: 65536 sectors, 1 per cluster, 32 reserved: 520F >= 4 * 65506 -> F = 504,
    # clusters = 65504 - 1008 = 64496 < 65525, so not FAT32.
    # FAT16: 32MiB <= 128MiB -> 4 sectors per cluster; 1 reserved + 512 root entries (32 sectors):
    # 65536 - 33 = 65503. clusters = (65503 - 2F) // 4 and ceil((clusters + 2) * 2 / 512) <= F:
    #   F = 64: clusters = 65375 // 4 = 16343, needs ceil(16345 / 256) = 64  -> fits;
    #   F = 63: clusters = 65377 // 4 = 16344, needs 64 > 63                  -> does not.
    assert (fat.bits, fat.sectors_per_cluster, fat.reserved_sectors, fat.root_entries) == (16, 4, 1, 512)
    assert (fat.fat_sectors, fat.clusters) == (64, 16343)


def test_fat12_chosen_for_a_tiny_partition(tmp_path: Path) -> None:
    plan = plan_of(
        write_spec(
            tmp_path,
            """\
            disk: {table: mbr}
            partitions:
              - {name: boot, type: fat12, size: 2MiB, filesystem: vfat}
            """,
        )
    )
    fat = plan.partitions[0].fat
    assert fat is not None
    # 4096 sectors. FAT16 would have (4096 - 33 - 2F) // 1 ~ 4031 clusters even with 1 sector per cluster,
    # under FAT16's minimum of 4085, so FAT12: clusters = 4063 - 2F, ceil((clusters + 2) * 12 / 4096) <= F:
    #   F = 12: clusters = 4039, needs ceil(4041 * 12 / 4096) = ceil(11.84) = 12 -> fits; F = 11 does not.
    assert (fat.bits, fat.sectors_per_cluster, fat.fat_sectors, fat.clusters) == (12, 1, 12, 4039)


@pytest.mark.parametrize(
    ("size", "bits", "sectors_per_cluster"),
    [
        # fatgen103's FAT32 table: <= 260MiB 1, <= 8GiB 8, <= 16GiB 16, <= 32GiB 32, larger 64.
        (64 * MiB, 32, 1),
        (260 * MiB, 32, 1),
        (261 * MiB, 32, 8),
        (8 * GiB, 32, 8),
        (9 * GiB, 32, 16),
        (20 * GiB, 32, 32),
        (40 * GiB, 32, 64),
        # FAT16: <= 16MiB 2, <= 128MiB 4, <= 256MiB 8, <= 512MiB 16, <= 1GiB 32, <= 2GiB 64.
        (16 * MiB, 16, 2),
        (100 * MiB, 16, 4),
        (200 * MiB, 16, 8),
        (500 * MiB, 16, 16),
        (1000 * MiB, 16, 32),
        (2000 * MiB, 16, 64),
        # FAT12: the smallest power of two that keeps the count at or under 4084 clusters.
        (2 * MiB, 12, 1),
        (4 * MiB, 12, 2),  # 8192 - 33 sectors would be ~8150 clusters of 1 sector, ~4070 of 2
        (32 * MiB, 12, 32),  # 65503 / 16 ~ 4090 is too many; / 32 ~ 2046
    ],
)
def test_cluster_size_table(size: int, bits: int, sectors_per_cluster: int) -> None:
    geometry = fat_geometry(size // 512, bits)
    assert (geometry.bits, geometry.sectors_per_cluster) == (bits, sectors_per_cluster)
    low, high = {12: (1, 4084), 16: (4085, 65524), 32: (65525, 0x0FFFFFF4)}[bits]
    assert low <= geometry.clusters <= high


def test_fat_variant_limits() -> None:
    with pytest.raises(FatError, match="FAT32 needs at least 65525 clusters"):
        fat_geometry(32 * MiB // 512, 32)
    with pytest.raises(FatError, match="FAT16 holds at most 2GiB"):
        fat_geometry(3 * GiB // 512, 16)
    with pytest.raises(FatError, match="FAT12 holds at most"):
        fat_geometry(512 * MiB // 512, 12)
    with pytest.raises(FatError, match="too small"):
        fat_geometry(8, None)


def test_files_fit_check_uses_size_pins(tmp_path: Path) -> None:
    body = """\
        sources:
          blob:
            sha256: {sha}
            size: {size}
            origins: [{{url: "http://127.0.0.1:9/blob"}}]
        disk: {{table: mbr}}
        partitions:
          - name: boot
            type: fat12
            size: 2MiB
            filesystem: vfat
            files: [{{dest: blob.bin, source: blob}}]
        """
    # FAT12 on 2MiB has 4039 clusters of 512 bytes; the root directory is outside the clusters.
    fits = write_spec(tmp_path, body.format(sha="ab" * 32, size=4039 * 512), name="fits")
    assert problems_of(fits) == []
    too_big = write_spec(tmp_path, body.format(sha="ab" * 32, size=4039 * 512 + 1), name="too-big")
    [problem] = problems_of(too_big)
    assert problem.path == "partitions[0].size"
    # 4040 clusters need a bigger partition. The next 1MiB step, 3MiB = 6144 sectors, is enough: there the
    # automatic choice is FAT16 (6144 - 33 - 2 * 24 = 6063 clusters of 512 bytes).
    assert "4040 clusters of 512 bytes" in problem.message and "make it at least 3MiB" in problem.message


def test_files_outgrowing_fat16_say_to_use_fat32(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        sources:
          blob:
            sha256: {sha}
            size: 3221225472
            origins: [{{url: "http://127.0.0.1:9/blob"}}]
        disk: {{table: gpt}}
        partitions:
          - {{name: esp, type: efi-system, size: 32MiB, filesystem: vfat, fat: 16, files: [{{dest: big, source: blob}}]}}
        """.format(sha="ab" * 32),
    )
    [problem] = problems_of(path)
    assert problem.path == "partitions[0].size"
    assert problem.message.endswith("more than FAT16 can hold: use fat: 32")


def test_template_context(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        description: context test
        vars: {greeting: hello, count: 3}
        disk: {table: mbr, size: 64MiB}
        partitions:
          - name: boot
            type: fat16
            size: 16MiB
            filesystem: vfat
            label: BOOT
            files:
              - dest: info.txt
                content: >-
                  {{ greeting }} {{ count + 1 }} {{ platform.name }} {{ platform.arch }} {{ platform.chain | join(",") }}
                  {{ platform.description }} {{ disk.table }} {{ disk.size }} {{ disk.id }}
                  {{ partitions.boot.index }} {{ partitions.boot.start }} {{ partitions.boot.size }}
                  {{ partitions.boot.label }} {{ partitions.boot.filesystem }} {{ partitions.cache.name }}
          - {name: cache, type: linux, size: rest, filesystem: ext4}
        """,
    )
    plan = plan_of(path)
    data = plan.partition("boot").files[0].data
    assert data is not None
    words = data.decode().split()
    # 64MiB = 67108864 bytes; boot starts at 1MiB = 1048576 and is 16MiB = 16777216 bytes.
    assert words == [
        "hello", "4", "synthetic", "x86_64", "uefi", "context", "test", "mbr", "67108864", plan.disk_id,
        "1", "1048576", "16777216", "BOOT", "vfat", "cache",
    ]  # fmt: skip


def test_uboot_script_lint_is_reported_with_other_plan_problems(tmp_path: Path) -> None:
    path = tmp_path / "lint.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            spec: 1
            name: lint
            arch: arm64
            chain: [u-boot, efi, ipxe]
            sources:
              spl: {sha256: abababababababababababababababababababababababababababababababab, size: 65536,
                    origins: [{url: "http://127.0.0.1:9/spl"}]}
              ipxe: {sha256: cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd, origins: [{url: "http://127.0.0.1:9/i"}]}
            disk: {table: gpt}
            partitions:
              - name: boot
                type: efi-system
                size: 64MiB
                filesystem: vfat
                files:
                  - {dest: EFI/BOOT/BOOTAA64.EFI, source: ipxe}
                  - {dest: autoexec.ipxe, content: "#!ipxe\\ndhcp\\nprompt Press a key\\n"}
            raw: [{source: spl, offset: 8KiB}]
            ipxe: {partition: boot, binary: EFI/BOOT/BOOTAA64.EFI, script: autoexec.ipxe, firmware: u-boot}
            """
        )
    )
    raw, script = problems_of(path)
    assert (raw.path, script.path) == ("raw[0].offset", "partitions[0].files[1].content")
    assert raw.message.startswith("bytes 8192-73727 overlap the GPT header and entry array")
    assert script.message.startswith("autoexec.ipxe line 3: 'prompt' waits for a key press")


def test_problems_stay_on_one_line_whatever_the_values(tmp_path: Path) -> None:
    path = write_spec(
        tmp_path,
        """\
        disk: {table: mbr}
        partitions:
          - name: boot
            type: "fat\\n16"
            size: 8MiB
            filesystem: vfat
            files: [{dest: "two\\nlines", content: "x"}, {dest: "TWO\\nLINES", content: "y"}]
        """,
    )
    problems = problems_of(path)
    assert [p.path for p in problems] == [
        "partitions[0].type",
        "partitions[0].files[0].dest",
        "partitions[0].files[1].dest",  # a newline is not a FAT character
        "partitions[0].files[1].dest",  # and the two names differ only in case
    ]
    assert all("\n" not in p.message for p in problems)
    assert "unknown type 'fat\\n16'" in problems[0].message


def test_template_failures_are_problems_not_crashes(tmp_path: Path) -> None:
    (tmp_path / "latin1.j2").write_bytes(b"caf\xe9\n")
    path = write_spec(
        tmp_path,
        """\
        disk: {table: gpt}
        partitions:
          - name: esp
            type: efi-system
            size: 64MiB
            filesystem: vfat
            files:
              - {dest: a, template: latin1.j2}
              - {dest: b, content: "{{ 'a' + 1 }}"}
              - {dest: c, content: "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}"}
              - {dest: d, content: "{{ ''.__class__.__mro__ }}"}
              - {dest: e, template: "nul\\0byte.j2"}
        """,
    )
    messages = {p.path: p.message for p in problems_of(path)}
    assert messages["partitions[0].files[0].template"].startswith("cannot read latin1.j2: 'utf-8' codec can't decode")
    assert messages["partitions[0].files[1].content"].startswith("template error in the inline content: TypeError:")
    assert messages["partitions[0].files[2].content"].startswith("template error in the inline content: RecursionError")
    assert "is unsafe" in messages["partitions[0].files[3].content"]  # the sandbox
    assert messages["partitions[0].files[4].template"] == "'nul\\x00byte.j2' is not a usable file name"
