"""build: validate, plan, fetch, assemble — one image from one spec."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boot2ipxe.cli.common import (
    add_allow_dir_option,
    add_cache_options,
    add_json_option,
    add_mirror_option,
    mirrors_from,
    print_json,
)
from boot2ipxe.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from boot2ipxe.plan.layout import AddedFile
    from boot2ipxe.spec.model import Spec

DESCRIPTION = """\
Validate SPEC, fetch its pinned blobs (cached and checked by sha256; nothing is downloaded when the cache has
them) and write the image rootless: the partition table computed from the plan, filesystems with mtools and
mke2fs. The image is sparse and reproducible, read back and checked against the plan (the table by sfdisk and
libparted, every FAT boot sector), and renamed into place only when complete, with IMAGE.sha256,
IMAGE.manifest.json and IMAGE.bmap beside it.

examples:
  boot2ipxe build platforms/rpi3bp.yaml                  writes out/rpi3bp.img
  boot2ipxe build platforms/x86-uefi.yaml -o /tmp/x.img --offline
  boot2ipxe build platforms/rpi4.yaml --dry-run --json   the plan and the sources, nothing written
  boot2ipxe build platforms/rpi4.yaml --trust pki/ca.crt.pem     iPXE trusts this CA (the server's) from the start
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "build",
        help="build the disk image a spec describes",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument(
        "--trust",
        action="append",
        default=[],
        type=Path,
        metavar="CA",
        help="bake this CA certificate (PEM or DER; repeatable) into the image's trust for a deployment: under U-Boot, "
        "ubootefi.var on the EFI system partition (inject can replace it per machine)",
    )
    add_allow_dir_option(p)
    add_cache_options(p)
    add_mirror_option(p)
    add_json_option(p)
    p.set_defaults(handler=cmd_build)


def source_date_epoch(args: argparse.Namespace, spec_default: int) -> int:
    """``--source-date-epoch``, else ``$SOURCE_DATE_EPOCH``, else the spec's."""
    if args.source_date_epoch is not None:
        if args.source_date_epoch < 0:
            raise InputError("--source-date-epoch must not be negative")
        return int(args.source_date_epoch)
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    if not value:
        return spec_default
    if not value.isdigit():
        raise InputError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds")
    return int(value)


def cmd_build(args: argparse.Namespace) -> int:
    from boot2ipxe.build.assemble import build_image
    from boot2ipxe.fetch.cache import Cache, default_dir
    from boot2ipxe.fetch.fetcher import fetch_for_build
    from boot2ipxe.plan.layout import checked_plan
    from boot2ipxe.plan.validate import require_valid
    from boot2ipxe.units import format_size, human_size

    mirrors = mirrors_from(args)
    checked = require_valid(args.spec, mirrors, display=str(args.spec), allowed=args.allow_dir)
    spec, plan = checked.spec, checked.plan
    assert spec is not None and plan is not None
    for problem in checked.warnings:
        print(problem, file=sys.stderr)
    output: Path = args.output or Path("out") / f"{spec.name}.img"
    epoch = source_date_epoch(args, spec.source_date_epoch)
    added = trust_files(spec, args.trust)
    if added:
        plan = checked_plan(spec, added=added)
    cache = Cache(args.cache_dir or default_dir())
    if args.dry_run:
        return _dry_run(args, cache, output, epoch, plan)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{output.parent}: cannot create the output directory: {exc.strerror}") from None
    blobs = fetch_for_build(spec, mirrors, cache_dir=cache.root, offline=args.offline)
    # Plan again with the fetched sizes: checks fit and raw-write extents for blobs the spec did not size.
    plan = checked_plan(spec, {sid: blob.size for sid, blob in blobs.items()}, added)
    result = build_image(plan, blobs, output, epoch)
    allocated = result.image.stat().st_blocks * 512
    if args.json:
        manifest = result.image.with_name(result.image.name + ".manifest.json")
        print_json(
            {
                "image": str(result.image),
                "sha256": result.sha256,
                "size": plan.size,
                "allocated": allocated,
                "manifest": str(manifest),
            }
        )
    else:
        print(f"{result.image}: {format_size(plan.size)} ({human_size(allocated)} allocated), sha256 {result.sha256}")
    return EXIT_OK


def trust_files(spec: Spec, cas: list[Path]) -> list[AddedFile]:
    """``--trust``: the file that makes the platform's iPXE trust these CAs, where its firmware reads it."""
    if not cas:
        return []
    from boot2ipxe.formats.efivar import FILE_NAME, with_trust
    from boot2ipxe.pki.certs import load_ca_certificates
    from boot2ipxe.plan.layout import AddedFile

    store = spec.variable_store() if "u-boot" in spec.chain else None
    if store is None:
        raise InputError(
            f"--trust: {spec.display_path} runs iPXE from UEFI firmware, which keeps TlsCaCertificate in its own NVRAM, "
            "not on the disk: enroll the CA in the firmware ('boot2ipxe certs esl') instead"
        )
    return [AddedFile(store.name, FILE_NAME, with_trust(None, load_ca_certificates(cas)), "trust")]


def _dry_run(args: argparse.Namespace, cache: Any, output: Path, epoch: int, plan: Any) -> int:
    from boot2ipxe.cli.specs import format_plan
    from boot2ipxe.units import format_size

    spec = plan.spec
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
        return EXIT_OK
    print(format_plan(plan))
    print("\nsources:")
    for item in sources:
        where = "in the cache" if item["cached"] else f"to fetch from {item['origins'][0]}"
        print(f"  {item['id']:<28} {str(item['sha256'])[:16]}…  {where}")
    print(f"\nwould write {output} ({format_size(plan.size)}), SOURCE_DATE_EPOCH={epoch}; nothing written")
    return EXIT_OK
