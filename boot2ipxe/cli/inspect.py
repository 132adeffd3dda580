"""inspect: explain any disk image (ours or a vendor's)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from boot2ipxe.cli.common import add_json_option, print_json
from boot2ipxe.errors import EXIT_FAILURE, EXIT_OK
from boot2ipxe.inspect.image import format_report, inspect_image


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inspect",
        help="explain a disk image: partitions, files, B2C_CACHE, iPXE, boot chain",
        description="Read a disk image — one built here or anyone else's — and report its partition table, the "
        "filesystem in each partition, the files on FAT partitions, which partition is B2C_CACHE, where iPXE is, "
        "and the boot chain it recognises (EFI removable path, Raspberry Pi firmware, config.txt, U-Boot, DTB). "
        "Findings are problems that would stop the machine booting. Nothing is written.",
    )
    p.add_argument("image", type=Path, metavar="IMAGE")
    add_json_option(p)
    p.add_argument("--check", action="store_true", help="exit 1 when there are findings")
    p.set_defaults(handler=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    report = inspect_image(args.image)
    if args.json:
        print_json(report.as_dict())
    else:
        print(format_report(report))
    return EXIT_FAILURE if args.check and report.findings else EXIT_OK
