"""Plan stage: a pure function from the spec model to every offset, size, geometry and file.

No byte is written here, so ``build --dry-run``, ``plan`` and ``validate`` all use it. Geometry
problems are reported with the spec key they come from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from boot2ipxe.errors import Problem, SpecInvalid
from boot2ipxe.formats.fat import FatError, FatGeometry, directory_clusters, fat_geometry, name_slots
from boot2ipxe.formats.ipxe_script import lint_script
from boot2ipxe.formats.table import GPT_RESERVED_END, GPT_RESERVED_START, PartitionTable, TableEntry
from boot2ipxe.plan.templates import render, template_context
from boot2ipxe.spec.load import Collector, derived_guid
from boot2ipxe.spec.model import Partition, Spec
from boot2ipxe.units import MAX_SIZE, SECTOR, align_up, ceil_div, format_size, human_size

MBR_PROTECTED = (440, 512)  # disk signature, partition table and 0x55AA; boot code before it is fair game
MBR_MAX_SECTOR = 2**32 - 1
EXT4_BLOCK = 4096
TYPE_FAT_BITS = {"fat12": 12, "fat16": 16, "fat16-lba": 16, "fat32": 32, "fat32-lba": 32}


@dataclass(frozen=True)
class PlannedFile:
    dest: str
    kind: str  # "source" | "template" | "content" | "trust"
    source: str | None  # sources id, for kind "source"
    data: bytes | None  # rendered text, for templates and content
    size: int | None  # None: a source whose size is not known before fetching


@dataclass(frozen=True)
class AddedFile:
    """A file a build adds to a partition beside the spec's own, e.g. ``build --trust``'s ``ubootefi.var``."""

    partition: str
    dest: str
    data: bytes
    kind: str  # as PlannedFile.kind


@dataclass(frozen=True)
class Ext4Geometry:
    blocks: int
    block_size: int
    uuid: str
    hash_seed: str


@dataclass(frozen=True)
class PlannedPartition:
    index: int
    name: str
    start: int  # sectors
    sectors: int
    type_code: str  # MBR: "0c"; GPT: GUID
    bootable: bool
    uuid: str | None  # GPT only
    filesystem: str
    label: str | None
    fs_id: str
    fat: FatGeometry | None
    ext4: Ext4Geometry | None
    files: tuple[PlannedFile, ...]

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size(self) -> int:
        return self.sectors * SECTOR


@dataclass(frozen=True)
class PlannedRaw:
    source: str
    offset: int
    size: int | None


@dataclass(frozen=True)
class Plan:
    spec: Spec
    table: str
    disk_id: str
    total_sectors: int
    first_usable: int
    last_usable: int
    partitions: tuple[PlannedPartition, ...]
    raw: tuple[PlannedRaw, ...]

    @property
    def size(self) -> int:
        return self.total_sectors * SECTOR

    def partition_table(self) -> PartitionTable:
        """The table the image gets, in the form ``formats/table.py`` writes and reads."""
        gpt = self.table == "gpt"
        entries = tuple(
            TableEntry(p.index, p.start, p.sectors, p.type_code, p.bootable, p.uuid, p.name if gpt else None)
            for p in self.partitions
        )
        kind: Literal["mbr", "gpt"] = "gpt" if gpt else "mbr"
        return PartitionTable(kind, self.disk_id, self.total_sectors, self.first_usable, self.last_usable, entries)

    def partition(self, name: str) -> PlannedPartition:
        return next(p for p in self.partitions if p.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "spec": self.spec.display_path,
            "table": self.table,
            "disk_id": self.disk_id,
            "sector_size": SECTOR,
            "size": self.size,
            "sectors": self.total_sectors,
            "first_usable_sector": self.first_usable,
            "last_usable_sector": self.last_usable,
            "partitions": [_partition_dict(p) for p in self.partitions],
            "raw": [{"source": r.source, "offset": r.offset, "size": r.size} for r in self.raw],
        }


def _partition_dict(p: PlannedPartition) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": p.index,
        "name": p.name,
        "start_sector": p.start,
        "sectors": p.sectors,
        "offset": p.offset,
        "size": p.size,
        "type": p.type_code,
        "bootable": p.bootable,
        "uuid": p.uuid,
        "filesystem": p.filesystem,
        "label": p.label,
        "fs_id": p.fs_id,
    }
    if p.fat:
        g = p.fat
        out["fat"] = {
            "bits": g.bits,
            "sectors_per_cluster": g.sectors_per_cluster,
            "cluster_bytes": g.cluster_bytes,
            "reserved_sectors": g.reserved_sectors,
            "fat_count": g.fat_count,
            "fat_sectors": g.fat_sectors,
            "root_entries": g.root_entries,
            "clusters": g.clusters,
            "hidden_sectors": g.hidden_sectors,
        }
    if p.ext4:
        out["ext4"] = {"blocks": p.ext4.blocks, "block_size": p.ext4.block_size, "uuid": p.ext4.uuid}
    out["files"] = [{"dest": f.dest, "kind": f.kind, "source": f.source, "size": f.size} for f in p.files]
    return out


Extent = tuple[int, int, int]  # (start, end) in sectors, end exclusive, and the partition's 0-based number


def make_plan(
    spec: Spec, sizes: Mapping[str, int] | None = None, added: Sequence[AddedFile] = ()
) -> tuple[Plan | None, list[Problem]]:
    """The plan and any problems; ``sizes`` gives blob sizes known from fetching (else the spec's pins); ``added``
    are files the build places beside the spec's."""
    out = Collector(spec.display_path)
    known = {sid: s.size for sid, s in spec.sources.items() if s.size is not None}
    known.update(sizes or {})
    disk = spec.disk
    gpt = disk.table == "gpt"
    reserved_end = GPT_RESERVED_END if gpt else 0
    first_usable = GPT_RESERVED_START if gpt else 1
    fixed_total = ceil_div(disk.size, SECTOR) if disk.size is not None else None
    if disk.size is not None and disk.size % SECTOR:
        out.error("disk.size", f"{disk.size} is not a multiple of the 512-byte sector")
    last_fixed = fixed_total - reserved_end - 1 if fixed_total is not None else None
    extents = _place_partitions(out, spec, first_usable, last_fixed)
    end = max((e for _, e, _ in extents), default=first_usable)
    needed = align_up(end + reserved_end, disk.alignment // SECTOR)
    total = fixed_total if fixed_total is not None else needed
    if last_fixed is not None and end - 1 > last_fixed:
        out.error("disk.size", f"{format_size(disk.size or 0)} is too small: the partitions need {format_size(needed * SECTOR)}")
    raws = _plan_raw(out, spec, known, extents, total)
    context = template_context(out, spec, [(start, end) for start, end, _ in extents], total)
    planned = tuple(
        _plan_partition(out, spec, part, extents[part.index - 1], known, context, [a for a in added if a.partition == part.name])
        for part in spec.partitions
    )
    if any(p.severity == "error" for p in out.problems):
        return None, out.problems
    plan = Plan(spec, disk.table, disk.id, total, first_usable, total - reserved_end - 1, planned, raws)
    return plan, out.problems


def _place_partitions(out: Collector, spec: Spec, first_usable: int, last_fixed: int | None) -> list[Extent]:
    """Each partition's sectors, in table order: its offset or the next aligned sector, its size or the rest."""
    disk = spec.disk
    align = disk.alignment // SECTOR
    gpt = disk.table == "gpt"
    extents: list[Extent] = []
    cursor = first_usable
    for part in spec.partitions:
        where = f"partitions[{part.index - 1}]"
        if part.offset is not None:
            if part.offset % disk.alignment:
                out.error(
                    f"{where}.offset",
                    f"{format_size(part.offset)} is not a multiple of disk.alignment ({format_size(disk.alignment)})",
                )
            start = part.offset // SECTOR
        else:
            start = align_up(max(cursor, first_usable), align)
        if start < first_usable:
            region = "GPT header and entries (sectors 0-33)" if gpt else "MBR (sector 0)"
            out.error(f"{where}.offset", f"starts at sector {start}, inside the {region}")
        sectors = _sectors(out, spec, part, start, last_fixed)
        if not gpt and (start + sectors > MBR_MAX_SECTOR):
            out.error(f"{where}.size", "ends beyond 2TiB, which an MBR cannot address; use table: gpt")
        for other_start, other_end, other in extents:
            if start < other_end and other_start < start + sectors:
                out.error(
                    where,
                    f"sectors {start}-{start + sectors - 1} overlap partitions[{other}] (sectors {other_start}-{other_end - 1}): "
                    "move or shrink one of them",
                )
        extents.append((start, start + sectors, part.index - 1))
        cursor = start + sectors
    return extents


def _sectors(out: Collector, spec: Spec, part: Partition, start: int, last_fixed: int | None) -> int:
    """The partition's length: its size, or for ``rest`` what is left up to the last usable sector."""
    where = f"partitions[{part.index - 1}]"
    align = spec.disk.alignment // SECTOR
    if not part.rest:
        size = part.size or 0
        if size % spec.disk.alignment:
            out.error(
                f"{where}.size", f"{format_size(size)} is not a multiple of disk.alignment ({format_size(spec.disk.alignment)})"
            )
        return max(1, ceil_div(size, SECTOR))
    if part.index != len(spec.partitions):
        out.error(f"{where}.size", "'rest' is only allowed on the last partition")
    elif last_fixed is None:
        out.error(f"{where}.size", "'rest' needs disk.size: set the image size, or give this partition a size")
    elif (sectors := (last_fixed + 1 - start) // align * align) <= 0:
        out.error(
            f"{where}.size", f"nothing is left for 'rest': disk.size ends at sector {ceil_div(spec.disk.size or 0, SECTOR)}"
        )
    else:
        return sectors
    return align


def checked_plan(spec: Spec, sizes: Mapping[str, int] | None = None, added: Sequence[AddedFile] = ()) -> Plan:
    plan, problems = make_plan(spec, sizes, added)
    if plan is None:
        raise SpecInvalid([p for p in problems if p.severity == "error"])
    return plan


def _plan_raw(out: Collector, spec: Spec, known: Mapping[str, int], extents: list[Extent], total: int) -> tuple[PlannedRaw, ...]:
    gpt = spec.disk.table == "gpt"
    protected = [(MBR_PROTECTED[0], MBR_PROTECTED[1], "the partition table in sector 0")]
    if gpt:
        protected.append((SECTOR, GPT_RESERVED_START * SECTOR, "the GPT header and entry array (sectors 1-33)"))
        protected.append(((total - GPT_RESERVED_END) * SECTOR, total * SECTOR, "the backup GPT at the end of the disk"))
    raws = []
    placed: list[tuple[int, int, str]] = []
    for i, raw in enumerate(spec.raw):
        where = f"raw[{i}]"
        size = known.get(raw.source)
        raws.append(PlannedRaw(raw.source, raw.offset, size))
        # Without a size pin only the first byte is known; `build` checks again once the blob is fetched.
        length = max(size, 1) if size is not None else 1
        start, end = raw.offset, raw.offset + length
        span = f"bytes {start}-{end - 1}" if size is not None else f"byte {start} (size unknown: pin sources.{raw.source}.size)"
        if end > total * SECTOR:
            out.error(f"{where}.offset", f"{span} go beyond the end of the {format_size(total * SECTOR)} disk")
        for p_start, p_end, what in protected:
            if start < p_end and p_start < end:
                hint = "; a boot ROM that reads here needs table: mbr" if gpt and "entry" in what else ": move the write"
                out.error(f"{where}.offset", f"{span} overlap {what}{hint}")
        for s_start, s_end, number in extents:
            part = spec.partitions[number]
            if start < s_end * SECTOR and s_start * SECTOR < end and part.filesystem != "none":
                out.error(
                    f"{where}.offset",
                    f"{span} overlap partitions[{number}] ('{part.name}'), which holds a {part.filesystem} filesystem: "
                    "move the write, or reserve the space with filesystem: none",
                )
        for o_start, o_end, other in placed:
            if start < o_end and o_start < end:
                out.error(f"{where}.offset", f"{span} overlap {other}, bytes {o_start}-{o_end - 1})")
        placed.append((start, end, f"{where} (source {raw.source}"))
    return tuple(raws)


def _plan_partition(
    out: Collector,
    spec: Spec,
    part: Partition,
    extent: Extent,
    known: Mapping[str, int],
    context: dict[str, Any],
    added: Sequence[AddedFile] = (),
) -> PlannedPartition:
    where = f"partitions[{part.index - 1}]"
    start, end, _ = extent
    sectors = end - start
    files = []
    for j, f in enumerate(part.files):
        data = None
        if f.template is not None or f.content is not None:  # neither: a template the spec stage refused
            data = render(out, f"{where}.files[{j}].{f.kind}", spec, f.content, f.template, context)
        size = len(data) if data is not None else known.get(f.source or "")
        files.append(PlannedFile(f.dest, f.kind, f.source, data, size))
        ipxe = spec.ipxe
        if ipxe and ipxe.script and part.name == ipxe.partition and f.dest.casefold() == ipxe.script.casefold() and data:
            # The script iPXE runs at boot: under U-Boot, a command that waits hangs it for good.
            for line, message in lint_script(data.decode("utf-8", "replace"), ipxe.firmware):
                out.error(f"{where}.files[{j}].{f.kind}", f"{f.dest} line {line}: {message}")
    for extra in added:
        if any(f.dest.casefold() == extra.dest.casefold() for f in files):
            out.error(f"{where}.files", f"'{extra.dest}' is a file of the spec: the build cannot add its own")
        files.append(PlannedFile(extra.dest, extra.kind, None, extra.data, len(extra.data)))
    fat = None
    ext4 = None
    if part.filesystem == "vfat":
        try:
            fat = fat_geometry(sectors, part.fat, hidden=start)
        except FatError as exc:
            out.error(f"{where}.fat" if part.fat else f"{where}.size", str(exc))
        if fat is not None:
            _check_fit(out, where, part, fat, files, spec.disk.alignment)
            said = TYPE_FAT_BITS.get(part.type_name)
            if spec.disk.table == "mbr" and said is not None and said != fat.bits:
                out.warn(
                    f"{where}.type",
                    f"{part.type_name} announces FAT{said} but the filesystem is FAT{fat.bits}: set fat: {said} or fix the type",
                )
    elif part.filesystem == "ext4":
        blocks = sectors * SECTOR // EXT4_BLOCK
        if blocks < 2048:
            out.error(f"{where}.size", f"ext4 needs at least 8MiB here ({format_size(sectors * SECTOR)} given)")
        ext4 = Ext4Geometry(blocks, EXT4_BLOCK, part.fs_id, derived_guid("hash-seed", spec.name, part.name).lower())
    type_code = f"{part.mbr_type or 0:02x}" if spec.disk.table == "mbr" else part.gpt_type or ""
    return PlannedPartition(
        index=part.index,
        name=part.name,
        start=start,
        sectors=sectors,
        type_code=type_code,
        bootable=part.bootable,
        uuid=part.uuid if spec.disk.table == "gpt" else None,
        filesystem=part.filesystem,
        label=part.label,
        fs_id=part.fs_id,
        fat=fat,
        ext4=ext4,
        files=tuple(files),
    )


def fat_clusters_needed(files: list[PlannedFile], geometry: FatGeometry) -> tuple[int, int]:
    """(clusters, root directory slots) the files need; sizes of unknown blobs count as 0."""
    cluster = geometry.cluster_bytes
    clusters = sum(ceil_div(f.size or 0, cluster) for f in files)
    children: dict[str, set[str]] = {"": set()}
    for f in files:
        path = PurePosixPath(f.dest)
        parts = path.parts
        for depth in range(len(parts)):
            parent = "/".join(parts[:depth])
            children.setdefault(parent, set()).add(parts[depth])
    for directory, names in children.items():
        if directory:
            clusters += directory_clusters(sorted(names), cluster)
    root_slots = sum(name_slots(n) for n in children[""]) + 1  # + the volume label entry
    if geometry.bits == 32:
        clusters += max(1, ceil_div(root_slots * 32, cluster))
    return clusters, root_slots


def _check_fit(out: Collector, where: str, part: Partition, fat: FatGeometry, files: list[PlannedFile], alignment: int) -> None:
    clusters, root_slots = fat_clusters_needed(files, fat)
    if fat.bits != 32 and root_slots > fat.root_entries:
        out.error(
            f"{where}.files",
            f"{root_slots} root directory entries needed, FAT{fat.bits} has {fat.root_entries}: move files into a directory",
        )
    if clusters <= fat.clusters:
        return
    need = f"the files need {human_size(clusters * fat.cluster_bytes)} ({clusters} clusters of {fat.cluster_bytes} bytes)"
    have = f"FAT{fat.bits} here holds {human_size(fat.data_bytes)}"
    smallest = smallest_fitting_size(files, part.fat, fat.sectors, fat.hidden_sectors, alignment)
    if smallest is None:
        what = f"more than FAT{part.fat} can hold: use fat: 32" if part.fat and part.fat != 32 else "more than fits any FAT"
        out.error(f"{where}.size", f"{need} but {have}: {what}")
    else:
        out.error(f"{where}.size", f"{need} but {have}: make it at least {format_size(smallest)}")


def smallest_fitting_size(files: list[PlannedFile], bits: int | None, sectors: int, hidden: int, alignment: int) -> int | None:
    """Bytes: the smallest multiple of ``alignment`` above ``sectors`` whose FAT holds the files; None when none does.

    Found by doubling then bisecting. Cluster sizes grow in steps, so fit is not perfectly monotone in size; the
    answer always fits, and is the smallest except near a cluster-size step.
    """
    step = alignment // SECTOR

    def fits(steps: int) -> bool:
        try:
            geometry = fat_geometry(steps * step, bits, hidden)
        except FatError:
            return False
        return fat_clusters_needed(files, geometry)[0] <= geometry.clusters

    low = sectors // step  # does not fit
    high = low + 1
    limit = MAX_SIZE // SECTOR // step
    while not fits(high):
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high * step * SECTOR
