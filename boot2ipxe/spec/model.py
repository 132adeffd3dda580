"""The validated platform spec as frozen, typed data. Nothing downstream reads raw YAML."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Table = Literal["mbr", "gpt"]
Filesystem = Literal["vfat", "ext4", "none"]
Firmware = Literal["u-boot", "uefi"]


@dataclass(frozen=True)
class PartitionType:
    """A symbolic partition type and its codes in each table kind (None: not expressible there)."""

    name: str
    mbr: int | None
    gpt: str | None
    description: str


ESP_GUID = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BASIC_DATA_GUID = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
LINUX_GUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

PARTITION_TYPES: dict[str, PartitionType] = {
    t.name: t
    for t in (
        PartitionType("efi-system", 0xEF, ESP_GUID, "EFI system partition"),
        PartitionType("fat32-lba", 0x0C, BASIC_DATA_GUID, "FAT32 with LBA (what the Raspberry Pi boot ROM reads)"),
        PartitionType("fat32", 0x0B, BASIC_DATA_GUID, "FAT32 (CHS)"),
        PartitionType("fat16-lba", 0x0E, BASIC_DATA_GUID, "FAT16 with LBA"),
        PartitionType("fat16", 0x06, BASIC_DATA_GUID, "FAT16"),
        PartitionType("fat12", 0x01, BASIC_DATA_GUID, "FAT12"),
        PartitionType("linux", 0x83, LINUX_GUID, "Linux filesystem"),
        PartitionType("linux-swap", 0x82, "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "Linux swap"),
        PartitionType("bios-boot", None, "21686148-6449-6E6F-744E-656564454649", "GRUB BIOS boot"),
        PartitionType("raw-data", 0xDA, "8DA63339-0007-60C0-C436-083AC8230908", "non-filesystem data"),
    )
}
FAT_MBR_TYPES = frozenset({0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E, 0xEF})
RPI_BOOT_MBR_TYPES = frozenset({0x0B, 0x0C})


@dataclass(frozen=True)
class Origin:
    """One place a source's bytes may come from; exactly one of url/path is set."""

    url: str | None = None
    path: Path | None = None  # absolute, resolved against the spec's directory
    extract: str | None = None
    archive_sha256: str | None = None

    def describe(self) -> str:
        where = self.url if self.url is not None else str(self.path)
        return f"{where} (member {self.extract})" if self.extract else where


@dataclass(frozen=True)
class Source:
    id: str
    sha256: str
    origins: tuple[Origin, ...]
    size: int | None = None  # optional pin; lets validation check fit before fetching


@dataclass(frozen=True)
class Blob:
    """A source's verified bytes (in the cache) and the origin they came from."""

    path: Path
    sha256: str
    size: int
    origin: str


@dataclass(frozen=True)
class Disk:
    table: Table
    size: int | None
    alignment: int
    id: str  # MBR: "0x1234abcd"; GPT: upper-case GUID


@dataclass(frozen=True)
class FileEntry:
    dest: str
    source: str | None = None  # sources id
    template: Path | None = None  # absolute path of a Jinja2 file (None also when the spec stage refused it)
    content: str | None = None  # inline Jinja2 text

    @property
    def kind(self) -> str:
        return "source" if self.source is not None else "template" if self.template is not None else "content"


@dataclass(frozen=True)
class Partition:
    index: int  # 1-based, table order
    name: str
    type_name: str  # as written in the spec: symbolic, "0x0c" or a GUID
    mbr_type: int | None
    gpt_type: str | None
    size: int | None  # None when rest
    rest: bool
    offset: int | None
    bootable: bool
    filesystem: Filesystem
    fat: int | None
    label: str | None
    uuid: str  # GPT partition GUID (derived when not given)
    fs_id: str  # vfat: 8 hex digits; ext4: UUID (derived when not given)
    files: tuple[FileEntry, ...] = ()


@dataclass(frozen=True)
class RawWrite:
    source: str
    offset: int


@dataclass(frozen=True)
class IpxeLocation:
    partition: str
    binary: str
    script: str | None
    firmware: Firmware


@dataclass(frozen=True)
class Spec:
    path: Path
    display_path: str  # as the user named it, for messages
    sha256: str  # of the spec file's bytes
    name: str
    description: str
    arch: str
    chain: tuple[str, ...]
    vars: Mapping[str, object]
    sources: Mapping[str, Source]
    disk: Disk
    partitions: tuple[Partition, ...]
    raw: tuple[RawWrite, ...]
    ipxe: IpxeLocation | None
    source_date_epoch: int
    roots: tuple[Path, ...] = ()  # directories the spec's files may come from (its own, and --allow-dir ones)

    def partition(self, name: str) -> Partition | None:
        return next((p for p in self.partitions if p.name == name), None)

    def variable_store(self) -> Partition | None:
        """The partition where U-Boot reads and writes ``ubootefi.var``: the first of EFI system type (MBR 0xef or
        the GPT ESP GUID). The Raspberry Pi boot ROM ignores that type, so on a Pi it is a second partition."""
        return next((p for p in self.partitions if p.mbr_type == 0xEF or p.gpt_type == ESP_GUID), None)
