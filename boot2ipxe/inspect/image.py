"""Explaining any disk image: partition table, filesystems, files, B2C_CACHE, iPXE and the boot chain.

Works on images we did not build (a vendor's): nothing here assumes a spec. ``chain_findings``
is the static chain check for the stages QEMU cannot run (VideoCore firmware, the Pi 4).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from boot2ipxe.errors import InputError, ToolError
from boot2ipxe.formats.efivar import FILE_NAME as VARIABLE_FILE
from boot2ipxe.formats.efivar import VariableFileError, trusted_certificates
from boot2ipxe.formats.fat import FatError
from boot2ipxe.formats.fatfs import FatEntry, FatReader
from boot2ipxe.formats.table import PartitionTable, TableEntry
from boot2ipxe.spec.model import ESP_GUID, RPI_BOOT_MBR_TYPES
from boot2ipxe.tools import run
from boot2ipxe.units import SECTOR, format_size, human_size

EXT_MAGIC = 0xEF53
EFI_REMOVABLE = {
    "BOOTX64.EFI": "x86_64",
    "BOOTIA32.EFI": "i386",
    "BOOTAA64.EFI": "arm64",
    "BOOTARM.EFI": "arm32",
    "BOOTRISCV64.EFI": "riscv64",
    "BOOTLOONGARCH64.EFI": "loongarch64",
}
IPXE_VERSION_RE = re.compile(rb"ipxe,1,iPXE,[^,\x00]*,([^,\x00]+),")
UBOOT_VERSION_RE = re.compile(rb"U-Boot (20\d\d\.\d\d[^\s\x00]*(?: \([^)\x00\n]{1,40}\))?)")
NTP_COMMAND_MARK = b"Could not get time and date"  # the ntp command's error message (src/hci/commands/ntp_cmd.c)
PI_FIRMWARE = {"pi0-3": ("bootcode.bin", "start.elf", "fixup.dat"), "pi4": ("start4.elf", "fixup4.dat")}


@dataclass
class PartitionReport:
    index: int
    start: int
    sectors: int
    type: str
    bootable: bool
    name: str | None
    filesystem: str | None = None
    label: str | None = None
    fs_id: str | None = None
    fat_bits: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImageReport:
    image: str
    size: int
    allocated: int
    table: str
    disk_id: str
    partitions: list[PartitionReport]
    b2c_cache: int | None
    ipxe: list[dict[str, Any]]
    chain: list[str]
    findings: list[str]
    trust: list[dict[str, Any]] = field(default_factory=list)  # CAs iPXE is given by the firmware

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_partition_table(image: Path) -> PartitionTable:
    """The table as sfdisk reads it (an independent reader of what boot2ipxe writes)."""
    try:
        result = run(["sfdisk", "--json", str(image)])
    except ToolError as exc:
        raise InputError(f"{image}: no partition table found (not a disk image?): {exc.stderr.strip()}") from None
    try:
        table = json.loads(result.stdout)["partitiontable"]
        gpt = table["label"] == "gpt"
        entries = tuple(
            TableEntry(
                i,
                p["start"],
                p["size"],
                p["type"].upper() if gpt else f"{int(p['type'], 16):02x}",
                bool(p.get("bootable")) or "LegacyBIOSBootable" in p.get("attrs", ""),
                p.get("uuid"),
                p.get("name"),
            )
            for i, p in enumerate(table.get("partitions", []), 1)
        )
        total = image.stat().st_size // SECTOR
        first, last = table.get("firstlba", 1), table.get("lastlba", total - 1)
        return PartitionTable("gpt" if gpt else "mbr", table.get("id", ""), total, first, last, entries)
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{image}: sfdisk found no partition table") from None


def _probe(f: BinaryIO, offset: int, report: PartitionReport) -> FatReader | None:
    f.seek(offset)
    head = f.read(2048)
    if len(head) >= 1024 + 136 and struct.unpack_from("<H", head, 1024 + 56)[0] == EXT_MAGIC:
        features_incompat = struct.unpack_from("<I", head, 1024 + 96)[0]
        report.filesystem = "ext4" if features_incompat & 0x40 else "ext2/3"  # 0x40: extents
        report.label = head[1024 + 120 : 1024 + 136].split(b"\0")[0].decode("utf-8", "replace") or None
        uuid = head[1024 + 104 : 1024 + 120].hex()
        report.fs_id = f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}"
        return None
    if len(head) >= 512 and head[510:512] == b"\x55\xaa" and (b"FAT" in head[54:62] or b"FAT32" in head[82:90]):
        try:
            reader = FatReader(f, offset)
        except FatError:
            return None
        report.filesystem = "vfat"
        report.fat_bits = reader.geometry.bits
        report.label = None if reader.label in ("", "NO NAME") else reader.label
        report.fs_id = reader.serial
        report.files = [{"path": e.path, "size": e.size, "dir": e.is_dir} for e in reader.entries()]
        return reader
    return None


def inspect_image(image: Path) -> ImageReport:
    if not image.is_file():
        raise InputError(f"{image}: no such image file")
    table = read_partition_table(image)
    stat = image.stat()
    reports: list[PartitionReport] = []
    readers: dict[int, FatReader] = {}
    with image.open("rb") as f:
        for p in table.entries:
            report = PartitionReport(p.index, p.start, p.sectors, p.type_code, p.bootable, p.name)
            reader = _probe(f, p.start * SECTOR, report)
            if reader is not None:
                readers[p.index] = reader
            reports.append(report)
        ipxe, chain, findings = _recognise(table, reports, readers)
        trust = _trust(reports, readers, chain, findings)
    cache = next((r.index for r in reports if r.label == "B2C_CACHE"), None)
    if cache is None:
        findings.append("no B2C_CACHE partition: boot2container's b2c.cache_device=auto would repartition the first disk")
    return ImageReport(
        str(image), stat.st_size, stat.st_blocks * 512, table.kind, table.disk_id, reports, cache, ipxe, chain, findings, trust
    )


def _trust(
    reports: list[PartitionReport], readers: dict[int, FatReader], chain: list[str], findings: list[str]
) -> list[dict[str, Any]]:
    """The CAs the image makes iPXE trust through U-Boot's variable file, on the first EFI system partition."""
    uses_uboot = any("U-Boot" in step for step in chain)
    esp = next((r for r in reports if r.type.lower() in ("ef", ESP_GUID.lower())), None)
    if esp is None:
        if uses_uboot:
            findings.append("U-Boot runs iPXE but the disk has no EFI system partition for its variables: no CA for iPXE")
        return []
    reader = readers.get(esp.index)
    entry = next((f for f in esp.files if f["path"].casefold() == VARIABLE_FILE.casefold() and not f["dir"]), None)
    if reader is None or entry is None:
        return []
    where = f"partition {esp.index}: {entry['path']}"
    try:
        certificates = trusted_certificates(reader.read(entry["path"]))
    except VariableFileError as exc:
        findings.append(f"{where}: damaged, U-Boot will ignore it: {exc.problem}")
        return []
    return [{"where": f"{where} TlsCaCertificate", **describe_certificate(der)} for der in certificates]


def describe_certificate(der: bytes) -> dict[str, Any]:
    """Subject, SHA-256 fingerprint and validity of a DER certificate (or why it cannot be read)."""
    from cryptography import x509  # only for images that carry certificates

    digest = hashlib.sha256(der).hexdigest()
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {"subject": None, "sha256": digest, "problem": "not a readable X.509 certificate"}
    return {
        "subject": cert.subject.rfc4514_string(),
        "sha256": digest,
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def _recognise(
    table: PartitionTable, reports: list[PartitionReport], readers: dict[int, FatReader]
) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    ipxe: list[dict[str, Any]] = []
    chain: list[str] = []
    findings: list[str] = []
    for index, reader in readers.items():
        part = reports[index - 1]
        entries = {e.path.casefold(): e for e in reader.entries()}
        for path, arch in EFI_REMOVABLE.items():
            entry = entries.get(f"efi/boot/{path}".casefold())
            if entry is None:
                continue
            data = reader.read(entry.path)
            match = IPXE_VERSION_RE.search(data)
            is_ipxe = match is not None or b"iPXE" in data
            chain.append(f"EFI removable path {entry.path} ({arch}) on partition {index}" + (": iPXE" if is_ipxe else ""))
            if is_ipxe:
                script = next((e.path for k, e in entries.items() if k.endswith("autoexec.ipxe")), None)
                ipxe.append(
                    {
                        "partition": index,
                        "binary": entry.path,
                        "arch": arch,
                        "version": match.group(1).decode() if match else None,
                        "script": script,
                        "ntp": NTP_COMMAND_MARK in data,
                    }
                )
        _recognise_pi(table, part, reader, entries, chain, findings)
    return ipxe, chain, findings


def _recognise_pi(
    table: PartitionTable,
    part: PartitionReport,
    reader: FatReader,
    entries: dict[str, FatEntry],
    chain: list[str],
    findings: list[str],
) -> None:
    boards = [board for board, names in PI_FIRMWARE.items() if all(n in entries for n in names)]
    has_config = "config.txt" in entries
    if not boards and not has_config:
        return
    where = f"partition {part.index}"
    if boards:
        chain.append(f"Raspberry Pi firmware for {', '.join(boards)} on {where}")
    elif "start.elf" in entries or "start4.elf" in entries:
        needs = " or ".join(" + ".join(names) for names in PI_FIRMWARE.values())
        findings.append(f"{where}: Raspberry Pi firmware incomplete (needs {needs})")
    if part.index != 1:
        findings.append(f"{where}: the Raspberry Pi boot ROM only reads the first partition")
    if table.kind == "mbr" and int(part.type, 16) not in RPI_BOOT_MBR_TYPES:
        findings.append(f"{where}: type 0x{part.type} — the Raspberry Pi boot ROM needs FAT32 type 0x0b or 0x0c")
    if not has_config:
        return
    config = parse_config_txt(reader.read(entries["config.txt"].path).decode("utf-8", "replace"))
    arm64 = config.get("arm_64bit") == "1"
    kernel = config.get("kernel", "kernel8.img" if arm64 else "kernel7.img")
    chain.append(f"config.txt: kernel={kernel}" + (", arm_64bit" if arm64 else ""))
    if kernel.casefold() not in entries:
        findings.append(f"{where}: config.txt kernel={kernel}, which is not on the partition")
    else:
        match = UBOOT_VERSION_RE.search(reader.read(entries[kernel.casefold()].path))
        if match:
            chain.append(f"U-Boot {match.group(1).decode('ascii', 'replace').strip()} as the kernel")
    dtb = config.get("device_tree")
    if dtb:
        if dtb.casefold() in entries:
            chain.append(f"device tree {dtb}")
        else:
            findings.append(f"{where}: config.txt device_tree={dtb}, which is not on the partition")
    elif not any(k.endswith(".dtb") for k in entries):
        findings.append(f"{where}: no device tree (.dtb) on the partition; U-Boot rpi_arm64 needs the firmware to pass one")


def parse_config_txt(text: str) -> dict[str, str]:
    """key=value settings; later lines win, as with the firmware (conditional sections are not evaluated)."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if "=" in line and not line.startswith("["):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def format_report(report: ImageReport) -> str:
    lines = [
        f"{report.image}: {report.table.upper()} disk {report.disk_id}, {format_size(report.size)}, "
        f"{human_size(report.allocated)} allocated",
        "",
        f"  {'#':>2} {'start':>9} {'sectors':>9} {'size':>8}  {'type':<10} {'fs':<7} label",
    ]
    for p in report.partitions:
        fs = (p.filesystem or "-") + (str(p.fat_bits) if p.fat_bits else "")
        type_text = p.type if report.table == "mbr" else p.type[:8] + "…"
        lines.append(
            f"{'*' if p.bootable else ' '} {p.index:>2} {p.start:>9} {p.sectors:>9} {format_size(p.sectors * SECTOR):>8}  "
            f"{type_text:<10} {fs:<7} {p.label or ''}" + ("   <- B2C_CACHE" if p.index == report.b2c_cache else "")
        )
    for p in report.partitions:
        files = [f for f in p.files if not f["dir"]]
        if files:
            lines += ["", f"partition {p.index} files:"]
            lines += [f"  {f['path']:<40} {f['size']:>10}" for f in files]
    lines += ["", "iPXE:"] + (
        [
            f"  {i['binary']} on partition {i['partition']} ({i['arch']}, {i['version'] or 'version unknown'})"
            + (f", script {i['script']}" if i["script"] else ", no autoexec.ipxe")
            for i in report.ipxe
        ]
        or ["  none found"]
    )
    lines += ["", "boot chain:"] + ([f"  {c}" for c in report.chain] or ["  nothing recognised"])
    if report.trust:
        lines += ["", "trust (CAs the firmware gives iPXE):"]
        lines += [
            f"  {t['where']}: {t['subject']}, sha256 {t['sha256'][:16]}…, valid {t.get('not_before', '?')[:10]} to "
            f"{t.get('not_after', '?')[:10]}"
            for t in report.trust
        ]
    if report.findings:
        lines += ["", "findings:"] + [f"  {f}" for f in report.findings]
    return "\n".join(lines)
