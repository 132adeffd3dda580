"""build: validate, fetch, assemble — one image from one spec."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from boot2ipxe.commands.common import add_cache_options, add_json_option, add_mirror_option, mirrors_from, print_json
from boot2ipxe.errors import EXIT_OK, InputError
from boot2ipxe.units import format_size, human_size
from boot2ipxe.validate import require_valid


def register(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="build the disk image a spec describes",
        description="Validate SPEC, fetch its pinned blobs (cached; a warm build makes no network request), and write "
        "the image rootless with sfdisk, mtools and mke2fs: sparse, reproducible, checked against the plan, and "
        "renamed into place only when complete, with IMAGE.sha256, IMAGE.manifest.json and IMAGE.bmap beside it.",
    )
    p.add_argument("spec", type=Path, metavar="SPEC")
    p.add_argument("-o", "--output", type=Path, metavar="IMAGE", help="image path (default: out/<name>.img)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sources to fetch; write nothing")
    p.add_argument(
        "--source-date-epoch",
        type=int,
        metavar="SECONDS",
        help="timestamps inside the image (default: $SOURCE_DATE_EPOCH, else the spec's source-date-epoch, else 1980)",
    )
    add_cache_options(p)
    add_mirror_option(p)
    add_json_option(p)
    p.set_defaults(handler=cmd_build)


def source_date_epoch(args: argparse.Namespace, spec_default: int) -> int:
    value: int
    if args.source_date_epoch is not None:
        value = int(args.source_date_epoch)
    elif os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            value = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise InputError(f"SOURCE_DATE_EPOCH={os.environ['SOURCE_DATE_EPOCH']!r} is not a number of seconds") from None
    else:
        value = spec_default
    if value < 0:
        raise InputError("--source-date-epoch must not be negative")
    return value


def cmd_build(args: argparse.Namespace) -> int:
    from boot2ipxe.commands.specs import format_plan

    mirrors = mirrors_from(args)
    checked = require_valid(args.spec, mirrors, display=str(args.spec))
    spec, plan = checked.spec, checked.plan
    assert spec is not None and plan is not None
    for problem in checked.warnings:
        print(problem, file=sys.stderr)
    output = args.output or Path("out") / f"{spec.name}.img"
    epoch = source_date_epoch(args, spec.source_date_epoch)
    if args.dry_run:
        from boot2ipxe.cache import Cache, default_dir

        cache = Cache(args.cache_dir or default_dir())
        sources: list[dict[str, Any]] = [
            {
                "id": sid,
                "sha256": source.sha256,
                "cached": cache.path(source.sha256).exists(),
                "origins": [origin.describe() for origin in source.origins],
            }
            for sid, source in spec.sources.items()
        ]
        if args.json:
            print_json({"output": str(output), "source_date_epoch": epoch, "sources": sources, "plan": plan.as_dict()})
        else:
            print(format_plan(plan))
            print("\nsources:")
            for item in sources:
                where = "in the cache" if item["cached"] else f"to fetch from {item['origins'][0]}"
                print(f"  {item['id']:<28} {str(item['sha256'])[:16]}…  {where}")
            print(f"\nwould write {output} ({format_size(plan.size)}), SOURCE_DATE_EPOCH={epoch}; nothing written")
        return EXIT_OK

    from boot2ipxe.assemble import build_image
    from boot2ipxe.fetch import fetch_for_build
    from boot2ipxe.plan import checked_plan

    blobs = fetch_for_build(spec, mirrors, cache_dir=args.cache_dir, offline=args.offline)
    # Plan again with the fetched sizes: checks fit and raw-write extents for blobs the spec did not size.
    plan = checked_plan(spec, {sid: blob.size for sid, blob in blobs.items()})
    result = build_image(plan, blobs, output, epoch)
    allocated = output.stat().st_blocks * 512
    if args.json:
        print_json(
            {
                "image": str(output),
                "sha256": result.sha256,
                "size": plan.size,
                "allocated": allocated,
                "manifest": str(output) + ".manifest.json",
            }
        )
    else:
        print(f"{output}: {format_size(plan.size)} ({human_size(allocated)} allocated), sha256 {result.sha256}")
    return EXIT_OK
