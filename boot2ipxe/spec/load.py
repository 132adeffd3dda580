"""Spec stage: YAML file -> schema check -> frozen model, with every non-geometric rule checked.

Geometry (offsets, overlaps, fit) is the planner's job; ``validate.py`` runs both and reports
every problem found, each as ``FILE:KEY.PATH: message``.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from boot2ipxe.errors import Problem, key_path
from boot2ipxe.files import confined
from boot2ipxe.spec.mirrors import PLACEHOLDER_RE, Mirrors, unresolved_message
from boot2ipxe.spec.model import (
    FAT_MBR_TYPES,
    PARTITION_TYPES,
    RPI_BOOT_MBR_TYPES,
    Disk,
    FileEntry,
    IpxeLocation,
    Origin,
    Partition,
    RawWrite,
    Source,
    Spec,
)
from boot2ipxe.spec.schema import schema_problems
from boot2ipxe.spec.yamlio import YamlProblem, load_yaml
from boot2ipxe.units import MiB, format_size, parse_size

DEFAULT_SOURCE_DATE_EPOCH = 315532800  # 1980-01-01T00:00:00Z: the earliest time FAT can store
FAT_FORBIDDEN = set('"*:<>?\\|') | {chr(c) for c in range(32)} | {chr(127)}
FAT_LABEL_RE = re.compile(r"^[A-Z0-9 !#$%&'()@^_`{}~-]{1,11}$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
UBOOT_RE = re.compile(r"u-?boot", re.IGNORECASE)
OUTSIDE_HINT = "a spec reads files only from its own directory tree (or a directory given with --allow-dir)"
REMOVABLE_EFI = {
    "x86_64": "EFI/BOOT/BOOTX64.EFI",
    "i386": "EFI/BOOT/BOOTIA32.EFI",
    "arm64": "EFI/BOOT/BOOTAA64.EFI",
    "arm32": "EFI/BOOT/BOOTARM.EFI",
    "riscv64": "EFI/BOOT/BOOTRISCV64.EFI",
    "riscv32": "EFI/BOOT/BOOTRISCV32.EFI",
    "loongarch64": "EFI/BOOT/BOOTLOONGARCH64.EFI",
}


def derived_guid(*parts: str) -> str:
    """A stable GUID from names, so unchanged specs give identical images."""
    digest = hashlib.sha256("\0".join(("boot2ipxe", *parts)).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4)).upper()


def derived_u32(*parts: str) -> int:
    digest = hashlib.sha256("\0".join(("boot2ipxe", *parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") or 1


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped: a problem is one line, whatever the spec holds."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class Collector:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, one_line(path), one_line(message)))

    def warn(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, one_line(path), one_line(message), "warning"))

    @property
    def failed(self) -> bool:
        return any(p.severity == "error" for p in self.problems)


def load_spec(
    path: Path, mirrors: Mirrors | None = None, display: str | None = None, allowed: Sequence[Path] = ()
) -> tuple[Spec | None, list[Problem]]:
    """The model (None if the file could not be understood) and every problem found on the way.

    Files the spec names resolve inside its own directory tree or one of ``allowed`` (``--allow-dir``)."""
    shown = display or str(path)
    out = Collector(shown)
    try:
        raw_bytes = path.read_bytes()
        data = load_yaml(path)
    except FileNotFoundError:
        out.error("", "no such file")
        return None, out.problems
    except IsADirectoryError:
        out.error("", "is a directory, not a spec file")
        return None, out.problems
    except OSError as exc:
        out.error("", f"cannot read: {exc.strerror}")
        return None, out.problems
    except YamlProblem as exc:
        out.error(exc.where, exc.message)
        return None, out.problems
    if not isinstance(data, dict):
        out.error("", "a spec is a YAML mapping that starts with 'spec: 1'")
        return None, out.problems
    for where, message in schema_problems(data):
        out.error(where, message)
    if out.failed:
        return None, out.problems
    tree = SpecTree(path.resolve().parent, (path.resolve().parent, *allowed))
    spec = _build(path, shown, hashlib.sha256(raw_bytes).hexdigest(), data, out, mirrors, tree)
    return spec, out.problems


def _size(out: Collector, where: str, value: Any) -> int | None:
    try:
        return parse_size(value)
    except ValueError as exc:
        out.error(where, str(exc))
        return None


@dataclass(frozen=True)
class SpecTree:
    """Where a spec's file references resolve: relative to its directory, and only inside ``roots`` (its directory
    tree and the directories allowed on the command line), after symlinks."""

    base: Path
    roots: tuple[Path, ...]

    def file(self, out: Collector, where: str, reference: str, required: bool = True) -> Path | None:
        """The referenced regular file; None, with a problem, when it is outside, missing or not a file."""
        try:
            path = confined(reference, self.base, self.roots)
        except ValueError:
            out.error(where, f"{reference!r} is not a usable file name")
            return None
        if path is None:
            out.error(where, f"{reference!r} is outside the spec's directory tree: {OUTSIDE_HINT}")
        elif not required:
            return path
        elif not path.exists():
            out.error(where, f"{reference} does not exist next to the spec ({path})")
        elif not path.is_file():
            out.error(where, f"{reference} is not a regular file ({path})")
        else:
            return path
        return None


def _build(
    path: Path, shown: str, digest: str, data: dict[str, Any], out: Collector, mirrors: Mirrors | None, tree: SpecTree
) -> Spec:
    name: str = data["name"]
    if name != path.stem:
        out.error("name", f"'{name}' must equal the file's name without .yaml ('{path.stem}'): rename one of them")
    sources = {sid: _source(out, tree, sid, entry, mirrors) for sid, entry in data.get("sources", {}).items()}
    disk = _disk(out, name, data["disk"])
    partitions = tuple(_partition(out, tree, name, disk.table, i, entry) for i, entry in enumerate(data["partitions"]))
    raw = tuple(
        RawWrite(entry["source"], _size(out, f"raw[{i}].offset", entry["offset"]) or 0)
        for i, entry in enumerate(data.get("raw", []))
    )
    ipxe = None
    if "ipxe" in data:
        entry = data["ipxe"]
        ipxe = IpxeLocation(entry["partition"], entry["binary"], entry.get("script"), entry["firmware"])
    epoch = data.get("source-date-epoch", DEFAULT_SOURCE_DATE_EPOCH)
    spec = Spec(
        path=path,
        display_path=shown,
        sha256=digest,
        name=name,
        description=data.get("description", ""),
        arch=data["arch"],
        chain=tuple(data["chain"]),
        vars=MappingProxyType(dict(data.get("vars", {}))),
        sources=MappingProxyType(sources),
        disk=disk,
        partitions=partitions,
        raw=raw,
        ipxe=ipxe,
        source_date_epoch=epoch,
        roots=tree.roots,
    )
    _check_names(out, spec, data)
    _check_references(out, spec, data)
    _check_chain(out, spec)
    return spec


def _source(out: Collector, tree: SpecTree, sid: str, entry: dict[str, Any], mirrors: Mirrors | None) -> Source:
    origins = []
    for i, origin in enumerate(entry["origins"]):
        where = key_path(["sources", sid, "origins", i])
        if "extract" in origin and "archive-sha256" not in origin:
            out.error(f"{where}.extract", "needs archive-sha256: an archive is verified before it is opened")
        if "archive-sha256" in origin and "extract" not in origin:
            out.error(f"{where}.archive-sha256", "only applies with extract; the blob itself is pinned by sha256")
        url = origin.get("url")
        if url is not None:
            for match in PLACEHOLDER_RE.finditer(url):
                if not match.group(1):
                    out.error(f"{where}.url", "empty ${} placeholder")
                elif mirrors is not None and mirrors.lookup(match.group(1)) is None:
                    out.error(f"{where}.url", unresolved_message(match.group(1)))
        file_path = None
        if "path" in origin:  # a missing file is fine while another origin may give the bytes
            file_path = tree.file(out, f"{where}.path", origin["path"], required=len(entry["origins"]) == 1)
            if file_path is None:
                continue
        origins.append(Origin(url, file_path, origin.get("extract"), origin.get("archive-sha256")))
    return Source(sid, entry["sha256"], tuple(origins), entry.get("size"))


def _disk(out: Collector, name: str, entry: dict[str, Any]) -> Disk:
    table = entry["table"]
    size = _size(out, "disk.size", entry["size"]) if "size" in entry else None
    alignment = _size(out, "disk.alignment", entry.get("alignment", MiB)) or MiB
    if alignment % 512 or alignment & (alignment - 1):
        out.error("disk.alignment", f"{format_size(alignment)} must be a power of two and a multiple of 512 (e.g. 1MiB)")
        alignment = MiB
    given = entry.get("id")  # YAML reads an unquoted 0x5eed3b01 as an integer
    disk_id = f"0x{derived_u32('disk', name):08x}" if table == "mbr" else derived_guid("disk", name)
    if given is None:
        pass
    elif table == "mbr" and isinstance(given, int):
        disk_id = f"0x{given:08x}"
    elif table == "mbr" and not given.startswith("0x"):
        out.error("disk.id", "an MBR disk id is a 32-bit hex number such as 0x5eed3b01, not a GUID")
    elif table == "gpt" and (isinstance(given, int) or not GUID_RE.match(given)):
        out.error("disk.id", "a GPT disk id is a GUID such as 5EED3B01-0000-4000-8000-000000000001, not a number")
    else:
        disk_id = f"0x{int(given, 16):08x}" if table == "mbr" else given.upper()
    return Disk(table, size, alignment, disk_id)


def type_name(value: str | int) -> str:
    """The partition type as written; YAML reads an unquoted 0x0c as the integer 12."""
    return f"0x{value:02x}" if isinstance(value, int) else value


def _partition_type(out: Collector, where: str, table: str, text: str) -> tuple[int | None, str | None]:
    known = PARTITION_TYPES.get(text)
    if known is not None:
        code = known.mbr if table == "mbr" else known.gpt
        if code is None:
            out.error(where, f"type {text} has no {table.upper()} code; use a raw type instead")
        return known.mbr, known.gpt
    if re.fullmatch(r"0x[0-9a-fA-F]{1,2}", text):
        if table != "mbr":
            out.error(where, f"{text} is an MBR type byte; a GPT partition type is a GUID or a symbolic name")
        return int(text, 16), None
    if GUID_RE.match(text):
        if table != "gpt":
            out.error(where, f"{text} is a GPT type GUID; an MBR type is a byte such as 0x0c or a symbolic name")
        return None, text.upper()
    out.error(where, f"unknown type '{text}': use one of {', '.join(PARTITION_TYPES)}, a byte like 0x0c (MBR) or a GUID (GPT)")
    return None, None


def _partition(out: Collector, tree: SpecTree, spec_name: str, table: str, i: int, entry: dict[str, Any]) -> Partition:
    where = f"partitions[{i}]"
    name = entry["name"]
    written_type = type_name(entry["type"])
    mbr_type, gpt_type = _partition_type(out, f"{where}.type", table, written_type)
    rest = entry["size"] == "rest"
    size = None if rest else _size(out, f"{where}.size", entry["size"])
    if size == 0:
        out.error(f"{where}.size", "a partition cannot be empty")
    offset = _size(out, f"{where}.offset", entry["offset"]) if "offset" in entry else None
    filesystem = entry.get("filesystem", "none")
    if "fat" in entry and filesystem != "vfat":
        out.error(f"{where}.fat", "only applies to filesystem: vfat")
    if filesystem == "vfat" and table == "mbr" and mbr_type is not None and mbr_type not in FAT_MBR_TYPES:
        out.warn(f"{where}.type", f"vfat in a partition of type 0x{mbr_type:02x}; firmware may not look inside it")
    files = tuple(_file(out, tree, f"{where}.files[{j}]", f) for j, f in enumerate(entry.get("files", [])))
    if files and filesystem != "vfat":
        out.error(f"{where}.files", f"files can only be placed in a vfat filesystem (this one is {filesystem})")
    label = entry.get("label")
    if label is not None:
        problem = label_problem(filesystem, label)
        if problem:
            out.error(f"{where}.label", problem)
    given = entry.get("fs-id")  # an unquoted 0x1234abcd is an integer to YAML
    fs_id = f"{derived_u32('fs', spec_name, name):08x}" if filesystem == "vfat" else derived_guid("fs", spec_name, name).lower()
    if given is None:
        pass
    elif filesystem == "none":
        out.error(f"{where}.fs-id", "only applies to a vfat or ext4 filesystem")
    elif filesystem == "vfat" and isinstance(given, int):
        fs_id = f"{given:08x}"
    elif filesystem == "vfat" and not given.startswith("0x"):
        out.error(f"{where}.fs-id", "a vfat serial is a 32-bit hex number such as 0x1234abcd, not a UUID")
    elif filesystem == "ext4" and (isinstance(given, int) or not GUID_RE.match(given)):
        out.error(f"{where}.fs-id", "an ext4 filesystem id is a UUID such as 6f1c0b2e-3d4a-4c5b-8e9f-0a1b2c3d4e5f, not a number")
    else:
        fs_id = f"{int(given, 16):08x}" if filesystem == "vfat" else given.lower()
    return Partition(
        index=i + 1,
        name=name,
        type_name=written_type,
        mbr_type=mbr_type,
        gpt_type=gpt_type,
        size=size,
        rest=rest,
        offset=offset,
        bootable=entry.get("bootable", False),
        filesystem=filesystem,
        fat=entry.get("fat"),
        label=label,
        uuid=(entry.get("uuid") or derived_guid("part", spec_name, name)).upper(),
        fs_id=fs_id,
        files=files,
    )


def label_problem(filesystem: str, label: str) -> str | None:
    """Why ``label`` cannot name a ``filesystem``, or None."""
    if filesystem == "none":
        return "a label needs a filesystem (vfat or ext4); remove it or set filesystem"
    if filesystem == "ext4":
        size = len(label.encode("utf-8"))
        return f"'{label}' is {size} bytes; an ext4 label holds at most 16" if size > 16 else None
    if len(label) > 11:
        return f"'{label}' is {len(label)} characters; a FAT label holds at most 11"
    if label != label.upper():
        return f"'{label}' has lower-case letters, which FAT labels cannot store: write '{label.upper()}'"
    if not FAT_LABEL_RE.match(label):
        bad = sorted({c for c in label if not FAT_LABEL_RE.match(c)})
        return f"'{label}' has characters a FAT label cannot hold: {' '.join(repr(c) for c in bad)} (use A-Z, 0-9, - or _)"
    if label.startswith(" "):
        return f"'{label}' starts with a space, which FAT labels cannot"
    return None


def _file(out: Collector, tree: SpecTree, where: str, entry: dict[str, Any]) -> FileEntry:
    dest = entry["dest"]
    problem = dest_problem(dest)
    if problem:
        out.error(f"{where}.dest", problem)
    template = tree.file(out, f"{where}.template", entry["template"]) if "template" in entry else None
    return FileEntry(dest, entry.get("source"), template, entry.get("content"))


def dest_problem(dest: str) -> str | None:
    """Why a FAT destination path is unusable, or None."""
    if dest.startswith("/"):
        return f"'{dest}' must be relative to the filesystem root (drop the leading /)"
    if "\\" in dest:
        return f"'{dest}' has a backslash: separate directories with / (and FAT cannot store \\ in a name)"
    parts = dest.split("/")
    if ".." in parts:
        return f"'{dest}' must not contain '..'"
    if str(PurePosixPath(dest)) == ".":
        return f"'{dest}' names the root directory, not a file"
    if str(PurePosixPath(dest)) != dest or "." in parts or "" in parts:
        return f"'{dest}' is not normalised: write it as '{PurePosixPath(dest)}'"
    for part in parts:
        bad = sorted(set(part) & FAT_FORBIDDEN)
        if bad:
            return f"'{dest}' has characters FAT cannot store: {' '.join(repr(c) for c in bad)}"
        if part.endswith((".", " ")):
            return f"'{dest}': FAT names cannot end with a dot or a space"
    return None


def _check_names(out: Collector, spec: Spec, data: dict[str, Any]) -> None:
    seen: dict[str, int] = {}
    labels: dict[str, int] = {}
    guids: dict[str, int] = {}
    for p in spec.partitions:
        where = f"partitions[{p.index - 1}]"
        if p.name in seen:
            out.error(f"{where}.name", f"'{p.name}' is already the name of partitions[{seen[p.name]}]")
        seen.setdefault(p.name, p.index - 1)
        if "uuid" in data["partitions"][p.index - 1]:
            if spec.disk.table != "gpt":
                out.warn(f"{where}.uuid", "only a GPT stores partition GUIDs; an MBR ignores it")
            elif p.uuid in guids:
                out.error(f"{where}.uuid", f"{p.uuid} is already the GUID of partitions[{guids[p.uuid]}]; GUIDs are unique")
            guids.setdefault(p.uuid, p.index - 1)
        if p.label:
            # Labels find partitions (boot2container looks for B2C_CACHE): unique across kinds, ignoring case.
            key = p.label.casefold()
            if key in labels:
                out.error(f"{where}.label", f"label '{p.label}' is already used by partitions[{labels[key]}]")
            labels.setdefault(key, p.index - 1)
        dests: dict[str, int] = {}
        for j, f in enumerate(p.files):
            folded = f.dest.casefold()
            if folded in dests:
                other = p.files[dests[folded]].dest
                why = "the same path" if other == f.dest else "FAT names ignore case"
                out.error(f"{where}.files[{j}].dest", f"'{f.dest}' collides with files[{dests[folded]}] ('{other}'): {why}")
            dests.setdefault(folded, j)
        blocked: set[int] = set()
        for j, f in enumerate(p.files):
            for parent in PurePosixPath(f.dest.casefold()).parents:
                k = dests.get(str(parent))
                if k is not None and k not in blocked:
                    blocked.add(k)
                    out.error(
                        f"{where}.files[{k}].dest",
                        f"'{p.files[k].dest}' is a file, but files[{j}] ('{f.dest}') needs it to be a directory",
                    )
    if spec.disk.table == "mbr" and len(spec.partitions) > 4:
        out.error(f"partitions[{4}]", f"an MBR holds at most 4 partitions ({len(spec.partitions)} given); use table: gpt")


def _check_references(out: Collector, spec: Spec, data: dict[str, Any]) -> None:
    used: set[str] = set()
    for p in spec.partitions:
        for j, f in enumerate(p.files):
            if f.source is not None:
                used.add(f.source)
                if f.source not in spec.sources:
                    out.error(f"partitions[{p.index - 1}].files[{j}].source", _unknown_source(spec, f.source))
    for i, r in enumerate(spec.raw):
        used.add(r.source)
        if r.source not in spec.sources:
            out.error(f"raw[{i}].source", _unknown_source(spec, r.source))
    for sid in spec.sources:
        if sid not in used:
            out.warn(key_path(["sources", sid]), "not used by any file or raw write")
    ipxe = spec.ipxe
    if ipxe is None:
        return
    part = spec.partition(ipxe.partition)
    if part is None:
        out.error("ipxe.partition", f"no partition named '{ipxe.partition}' (have {', '.join(p.name for p in spec.partitions)})")
        return
    if part.filesystem != "vfat":
        out.error("ipxe.partition", f"'{ipxe.partition}' must be vfat to hold iPXE (it is {part.filesystem})")
        return
    dests = {f.dest.casefold() for f in part.files}
    if ipxe.binary.casefold() not in dests:
        out.error(
            "ipxe.binary", f"'{ipxe.binary}' is not among the files of partition '{part.name}': add it there or fix the path"
        )
    if ipxe.script is not None and dest_problem(ipxe.script):
        out.error("ipxe.script", dest_problem(ipxe.script) or "")
    removable = REMOVABLE_EFI.get(spec.arch)
    if removable and ipxe.binary.casefold() != removable.casefold():
        out.warn("ipxe.binary", f"firmware starts {removable} from removable media; '{ipxe.binary}' needs a boot entry")


def _unknown_source(spec: Spec, sid: str) -> str:
    known = ", ".join(spec.sources) or "none defined"
    return f"'{sid}' is not in sources (known: {known})"


def _check_chain(out: Collector, spec: Spec) -> None:
    chain = spec.chain
    if "ipxe" in chain and spec.ipxe is None:
        out.error("chain", "an ipxe stage needs an 'ipxe' section saying where iPXE lives")
    if "ipxe" in chain and chain[-1] != "ipxe":
        out.error("chain", "ipxe is the last stage: it loads everything else over the network")
    if "u-boot" in chain:
        files = [f for p in spec.partitions for f in p.files]
        has_uboot = bool(spec.raw) or any(
            UBOOT_RE.search(PurePosixPath(f.dest).name) or (f.source and UBOOT_RE.search(f.source)) for f in files
        )
        if not has_uboot:
            out.error("chain", "a u-boot stage needs a U-Boot binary: a file such as u-boot.bin or a raw write")
        if spec.ipxe is not None and spec.ipxe.firmware != "u-boot":
            out.error("ipxe.firmware", "is 'uefi' but the chain runs iPXE from U-Boot: set firmware: u-boot")
    elif spec.ipxe is not None and spec.ipxe.firmware == "u-boot":
        out.error("ipxe.firmware", "is 'u-boot' but the chain has no u-boot stage")
    if "u-boot" in chain and spec.ipxe is not None:
        _check_variable_store(out, spec)
    if "u-boot" in chain and "ipxe" in chain and "efi" not in chain:
        out.warn("chain", "U-Boot starts iPXE as an EFI application (bootefi): write the chain as [..., u-boot, efi, ipxe]")
    if "rpi-firmware" in chain:
        if chain[0] != "rpi-firmware":
            out.error("chain", "rpi-firmware is the first stage: the Raspberry Pi boot ROM starts it")
        if spec.arch not in ("arm64", "arm32"):
            out.error("arch", f"rpi-firmware boots Raspberry Pi boards, which are arm64 or arm32, not {spec.arch}")
        first = spec.partitions[0]
        if spec.disk.table == "mbr" and first.mbr_type not in RPI_BOOT_MBR_TYPES:
            out.error(
                "partitions[0].type",
                "the Raspberry Pi boot ROM reads the first partition only if it is FAT32 type 0x0b or 0x0c (fat32-lba)",
            )
        if first.filesystem != "vfat":
            out.error("partitions[0].filesystem", "the Raspberry Pi firmware partition must be vfat")


def _check_variable_store(out: Collector, spec: Spec) -> None:
    """Under U-Boot, iPXE trusts a CA through U-Boot's EFI variable file, which U-Boot keeps on the first EFI system
    partition: there must be one, and it must be a FAT U-Boot can write."""
    store = spec.variable_store()
    if store is None:
        out.error(
            "partitions",
            "iPXE under U-Boot trusts a CA only through U-Boot's EFI variable file (ubootefi.var), kept on an EFI system "
            "partition: add a small vfat partition of type efi-system (on a Raspberry Pi, after the firmware partition)",
        )
    elif store.filesystem != "vfat":
        out.error(
            f"partitions[{store.index - 1}].filesystem",
            "U-Boot keeps its EFI variables (ubootefi.var, iPXE's CA trust) on the first EFI system partition: make it vfat",
        )
