"""build: validate, fetch, plan, assemble — one image from one spec.

A warm build (same spec, templates, options and boot2ipxe as a build before, every blob cached) runs the
recipe that build stored instead of validating and planning again; see ``buildcache.py`` and ``warm.py``
(which usually runs it before this module is imported).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.commands.common import add_cache_options, add_json_option, add_mirror_option, print_json
from boot2ipxe.errors import EXIT_OK
from boot2ipxe.units import format_size
from boot2ipxe.warm import build_key, cache_root, epoch_override, report, run_stored, spec_bytes

if TYPE_CHECKING:
    from typing import Any

    from boot2ipxe.buildcache import BuildCache
    from boot2ipxe.cache import Cache


def register(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="build the disk image a spec describes",
        description="Validate SPEC, fetch its pinned blobs (cached; a warm build makes no network request), and write "
        "the image rootless (the partition table from the plan, filesystems with mtools and mke2fs): sparse, "
        "reproducible, checked against the plan (the table read back by sfdisk and libparted), and "
        "renamed into place only when complete, with IMAGE.sha256, IMAGE.manifest.json and IMAGE.bmap beside it. "
        "Builds are remembered in the cache (CACHE/builds): when nothing the build reads has changed, the stored "
        "recipe is run without validating and planning again, and an image identical to one already checked is "
        "neither read back nor hashed again.",
    )
    # Paths as typed (no type=Path): warm.parse_build_argv reads the same command lines to the same values.
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("-o", "--output", metavar="IMAGE", help="image path (default: out/<name>.img)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sources to fetch; write nothing")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="ignore the build cache: validate, plan, read the image back and hash it as for a first build",
    )
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
    override = epoch_override(args)
    return spec_default if override is None else override


def cmd_build(args: argparse.Namespace) -> int:
    from boot2ipxe.buildcache import BuildCache
    from boot2ipxe.cache import Cache

    cache = Cache(Path(cache_root(args)))
    builds = BuildCache(cache.root)
    key: tuple[str, str] | None = None  # (recipe key, sha256 of the spec bytes it was computed from)
    if not args.dry_run and (data := spec_bytes(args)) is not None:  # unreadable: validation reports it
        key = build_key(args, data), hashlib.sha256(data).hexdigest()
        if not args.fresh and (done := run_stored(args, str(cache.root), builds, key[0])) is not None:
            return done
    return _cold_build(args, cache, builds, key)


def _cold_build(args: argparse.Namespace, cache: Cache, builds: BuildCache, key: tuple[str, str] | None) -> int:
    from boot2ipxe.commands.common import mirrors_from
    from boot2ipxe.validate import require_valid

    mirrors = mirrors_from(args)
    checked = require_valid(Path(args.spec), mirrors, display=args.spec)
    spec, plan = checked.spec, checked.plan
    assert spec is not None and plan is not None
    for problem in checked.warnings:
        print(problem, file=sys.stderr)
    output = args.output or str(Path("out") / f"{spec.name}.img")
    epoch = source_date_epoch(args, spec.source_date_epoch)
    if args.dry_run:
        from boot2ipxe.commands.specs import format_plan

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

    from boot2ipxe.assemble import execute
    from boot2ipxe.fetch import fetch_for_build
    from boot2ipxe.plan import checked_plan
    from boot2ipxe.recipe import make_recipe

    blobs = fetch_for_build(spec, mirrors, cache_dir=cache.root, offline=args.offline)
    # Plan again with the fetched sizes: checks fit and raw-write extents for blobs the spec did not size.
    plan = checked_plan(spec, {sid: blob.size for sid, blob in blobs.items()})
    recipe = make_recipe(plan, blobs, epoch, [str(w) for w in checked.warnings])
    if key is not None and key[1] == spec.sha256:  # validation read the bytes the key was computed from
        builds.store_recipe(key[0], recipe, plan.inputs)
    return report(args, execute(recipe, output, builds, reuse=not args.fresh), recipe=False)
