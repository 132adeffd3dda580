"""Options and helpers shared by several commands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from boot2ipxe.errors import InputError
from boot2ipxe.files import json_text
from boot2ipxe.spec.mirrors import Mirrors, parse_cli_mirrors


def add_mirror_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="base URL for ${NAME} in origin URLs (repeatable); also BOOT2IPXE_MIRROR_<NAME>, the config file, "
        "and for 'debian' the machine's apt sources",
    )


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--offline", action="store_true", help="no network: only the cache and local files; name what is missing")
    parser.add_argument(
        "--cache-dir", type=Path, metavar="DIR", help="blob cache (default: $BOOT2IPXE_CACHE or ~/.cache/boot2ipxe)"
    )


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")


def add_allow_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-dir",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a directory outside the spec's own tree that its templates and path origins may read (repeatable)",
    )


def mirrors_from(args: argparse.Namespace) -> Mirrors:
    return Mirrors(cli=parse_cli_mirrors(args.mirror))


def print_json(data: Any) -> None:
    sys.stdout.write(json_text(data))


def existing_file(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise InputError(f"{value}: no such file")
    if path.is_dir():
        raise InputError(f"{value}: is a directory")
    return path


def warn(message: str) -> None:
    print(message, file=sys.stderr)
