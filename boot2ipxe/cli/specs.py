"""validate, plan, platforms: commands that read specs and write nothing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boot2ipxe.cli.common import add_allow_dir_option, add_json_option, add_mirror_option, mirrors_from, print_json
from boot2ipxe.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from boot2ipxe.units import format_size, human_size

if TYPE_CHECKING:
    from boot2ipxe.plan.layout import Plan


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check specs against the schema and every rule",
        description="Check platform specs: JSON Schema first, then names, references, geometry, FAT limits and fit, "
        "templates, the boot chain and mirror placeholders. Every problem is one line FILE:KEY.PATH: message. "
        "Exit 0 when all are valid (warnings allowed), 2 otherwise.",
    )
    p.add_argument("specs", nargs="+", type=Path, metavar="SPEC", help="platform spec files (YAML)")
    add_json_option(p)
    add_mirror_option(p)
    add_allow_dir_option(p)
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.set_defaults(handler=cmd_validate)

    p = sub.add_parser(
        "plan",
        help="show the exact layout a spec produces, writing nothing",
        description="Compute every partition's start and size in sectors, each filesystem's geometry and the files "
        "placed, exactly as build would, without writing a byte.",
    )
    p.add_argument("spec", type=Path, metavar="SPEC")
    add_json_option(p)
    add_mirror_option(p)
    add_allow_dir_option(p)
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
        "platforms",
        help="list the platform specs in a directory",
        description="List platforms/*.yaml (or --dir) with their descriptions.",
    )
    p.add_argument("--dir", type=Path, default=Path("platforms"), help="directory of specs (default: ./platforms)")
    add_json_option(p)
    p.set_defaults(handler=cmd_platforms)


def cmd_validate(args: argparse.Namespace) -> int:
    from boot2ipxe.plan.validate import validate

    mirrors = mirrors_from(args)
    report = []
    failed = False
    for path in args.specs:
        result = validate(path, mirrors, display=str(path), allowed=args.allow_dir)
        bad = bool(result.errors) or (args.strict and bool(result.warnings))
        failed |= bad
        report.append({"file": str(path), "valid": not bad, "problems": [p.as_dict() for p in result.problems]})
        if not args.json:
            for problem in result.problems:
                print(problem, file=sys.stderr)
            if not bad:
                print(f"{path}: ok" + (f" ({len(result.warnings)} warnings)" if result.warnings else ""))
    if args.json:
        print_json(report)
    return EXIT_BAD_INPUT if failed else EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    from boot2ipxe.plan.validate import require_valid

    result = require_valid(args.spec, mirrors_from(args), display=str(args.spec), allowed=args.allow_dir)
    for problem in result.warnings:
        print(problem, file=sys.stderr)
    assert result.plan is not None
    if args.json:
        print_json(result.plan.as_dict())
    else:
        print(format_plan(result.plan))
    return EXIT_OK


def format_plan(plan: Plan) -> str:
    spec = plan.spec
    lines = [
        f"{spec.name}: {spec.description}".rstrip(": "),
        f"disk: {plan.table}, {format_size(plan.size)} ({plan.total_sectors} sectors of 512 bytes), id {plan.disk_id}, "
        f"usable sectors {plan.first_usable}-{plan.last_usable}",
        "",
        f"  {'#':>2}  {'name':<12} {'start':>9} {'end':>9} {'sectors':>9} {'size':>8}  {'type':<8} {'fs':<10} label",
    ]
    for p in plan.partitions:
        type_code = p.type_code if plan.table == "mbr" else p.type_code[:8] + "…"
        fs = p.filesystem + (f"/FAT{p.fat.bits}" if p.fat else "")
        boot = "*" if p.bootable else " "
        lines.append(
            f"{boot} {p.index:>2}  {p.name:<12} {p.start:>9} {p.start + p.sectors - 1:>9} {p.sectors:>9} "
            f"{format_size(p.size):>8}  {type_code:<8} {fs:<10} {p.label or ''}"
        )
    for p in plan.partitions:
        lines.append("")
        lines.append(f"partition {p.index} ({p.name}): {p.filesystem}, offset {p.offset} bytes")
        if p.fat:
            g = p.fat
            lines.append(
                f"  FAT{g.bits}: {g.clusters} clusters of {g.cluster_bytes} bytes, {g.reserved_sectors} reserved sectors, "
                f"{g.fat_count} FATs of {g.fat_sectors} sectors, {g.root_entries} root entries, serial {p.fs_id}"
            )
        if p.ext4:
            lines.append(f"  ext4: {p.ext4.blocks} blocks of {p.ext4.block_size} bytes, UUID {p.ext4.uuid}")
        if plan.table == "gpt":
            lines.append(f"  type {p.type_code}, partition GUID {p.uuid}")
        for f in sorted(p.files, key=lambda f: f.dest.casefold()):
            size = human_size(f.size) if f.size is not None else "size known after fetch"
            origin = f"source {f.source}" if f.kind == "source" else f.kind
            lines.append(f"  {f.dest:<40} {size:>12}  ({origin})")
    if plan.raw:
        lines.append("")
        for r in plan.raw:
            size = f"{r.size} bytes" if r.size is not None else "size known after fetch"
            lines.append(f"raw: source {r.source} at byte {r.offset} (sector {r.offset / 512:g}), {size}")
    return "\n".join(lines)


def cmd_platforms(args: argparse.Namespace) -> int:
    from boot2ipxe.spec.yamlio import YamlProblem, load_yaml

    if not args.dir.is_dir():
        raise InputError(f"{args.dir}: no such directory (run from the repository root, or pass --dir)")
    rows = []
    for path in sorted(args.dir.glob("*.yaml")):
        try:
            data = load_yaml(path)
            description = data.get("description", "") if isinstance(data, dict) else ""
            arch = data.get("arch", "") if isinstance(data, dict) else ""
        except (YamlProblem, OSError) as exc:
            description, arch = f"(unreadable: {exc})", ""
        rows.append({"name": path.stem, "file": str(path), "arch": arch, "description": description})
    if args.json:
        print_json(rows)
    else:
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['arch']:<7}  {r['description']}")
    return EXIT_OK
