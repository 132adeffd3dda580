"""The parser of ``boot2ipxe COMMAND ...``: one sub-command per stage a user drives.

Each command module in this package has a ``register(sub)`` that adds its sub-commands; heavy libraries
(cryptography, requests, jsonschema, jinja2) are imported by the handlers that need them, not here.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from boot2ipxe import __version__
from boot2ipxe.cli import build, certs, fetch, inject, inspect, specs
from boot2ipxe.errors import EXIT_BAD_INPUT

DESCRIPTION = """\
Build netboot disk images from per-platform YAML specs: the platform's firmware and bootloader
chain, iPXE with its script and certificates, and a B2C_CACHE partition for boot2container.

typical use:
  boot2ipxe platforms                          list the specs in ./platforms
  boot2ipxe validate platforms/*.yaml          check specs (exit 2 and one line per problem)
  boot2ipxe plan platforms/rpi3bp.yaml         show the exact layout, nothing written
  boot2ipxe build platforms/rpi3bp.yaml        fetch pinned blobs and write out/rpi3bp.img
  boot2ipxe inspect out/rpi3bp.img             explain any disk image

Run 'boot2ipxe COMMAND --help' for each command. Spec reference: docs/spec.md.
"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> Parser:
    parser = Parser(prog="boot2ipxe", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"boot2ipxe {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print each external command on stderr as it runs (to repeat a step by hand)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (specs, fetch, build, inspect, certs, inject):
        module.register(sub)
    return parser
