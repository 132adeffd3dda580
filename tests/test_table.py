"""table.py writes the partition table sfdisk writes, byte for byte: for every platform and for layouts that
exercise what differs (bootable flags, CHS past cylinder 1023, four partitions, long names, 1-sector alignment)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from test_plan import ROOT, plan_of, write_spec

from boot2ipxe.formats.sparse import nonzero_runs
from boot2ipxe.formats.table import sfdisk_script, table_writes
from boot2ipxe.plan.layout import Plan

SYNTHETIC = {
    "mbr-four-bootable-past-cylinder-1023": """\
        disk: {table: mbr, size: 12GiB, id: 0x12345678}
        partitions:
          - {name: boot, type: fat32-lba, size: 64MiB, filesystem: vfat, bootable: true}
          - {name: two, type: linux, size: 9GiB}
          - {name: three, type: 0xda, size: 8MiB}
          - {name: four, type: linux, size: rest}
        """,
    "mbr-tiny-unaligned": """\
        disk: {table: mbr, alignment: 512}
        partitions:
          - {name: boot, type: fat16, size: 8MiB, filesystem: vfat}
        """,
    "gpt-bootable-long-name-sector-aligned": """\
        disk: {table: gpt, alignment: 512}
        partitions:
          - {name: esp, type: efi-system, size: 1MiB, bootable: true}
          - {name: a-name-of-thirty-six-characters-xyz1, type: linux, size: 2MiB}
        """,
    "gpt-large": """\
        disk: {table: gpt, size: 40GiB}
        partitions:
          - {name: esp, type: efi-system, size: 64MiB}
          - {name: bios, type: bios-boot, size: 1MiB}
          - {name: cache, type: linux, size: rest}
        """,
}


def table_bytes(path: Path, size: int) -> dict[int, bytes]:
    """The non-zero runs of a file (in the first and last MiB, where a table lives), by offset."""
    found = {}
    with path.open("rb") as f:
        for base in sorted({0, max(0, size - (1 << 20))}):
            data = os.pread(f.fileno(), 1 << 20, base)
            found |= {base + a: data[a:b] for a, b in nonzero_runs(data)}
    return found


def by_sfdisk(plan: Plan, path: Path) -> dict[int, bytes]:
    with path.open("wb") as f:
        f.truncate(plan.size)
    argv = ["sfdisk", "--no-reread", "--no-tell-kernel", "--quiet", "--wipe", "never", "--wipe-partitions", "never", str(path)]
    subprocess.run(argv, input=sfdisk_script(plan.partition_table()).encode(), check=True, capture_output=True)
    return table_bytes(path, plan.size)


def by_table_py(plan: Plan, path: Path) -> dict[int, bytes]:
    with path.open("wb") as f:
        f.truncate(plan.size)
        for offset, data in table_writes(plan.partition_table()):
            os.pwrite(f.fileno(), data, offset)
    return table_bytes(path, plan.size)


def plans(tmp_path: Path) -> dict[str, Plan]:
    found = {p.stem: plan_of(p) for p in sorted((ROOT / "platforms").glob("*.yaml"))}
    found |= {name: plan_of(write_spec(tmp_path, body, name)) for name, body in SYNTHETIC.items()}
    return found


def test_every_layout_gets_the_bytes_sfdisk_writes(tmp_path: Path) -> None:
    for name, plan in plans(tmp_path).items():
        theirs, ours = by_sfdisk(plan, tmp_path / f"{name}.sfdisk"), by_table_py(plan, tmp_path / f"{name}.ours")
        assert theirs, name
        assert ours == theirs, name


def test_the_table_is_all_it_writes(tmp_path: Path) -> None:
    """Nothing outside the table's sectors: the filesystems are written in the same image at the same time."""
    for name, plan in plans(tmp_path).items():
        end = plan.size
        reserved = (2 + 32) * 512 if plan.table == "gpt" else 512
        for offset, data in table_writes(plan.partition_table()):
            inside = offset + len(data) <= reserved or (plan.table == "gpt" and offset >= end - 33 * 512)
            assert inside and offset + len(data) <= end, (name, offset)
