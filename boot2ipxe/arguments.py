"""The parser of ``boot2ipxe COMMAND ...``: every command, or only the one being run.

Each command group lives in ``boot2ipxe/commands/`` and registers its sub-commands here. ``cli.main`` imports
this module unless the command line is a warm build (``warm.py``), which needs no argparse.
"""

from __future__ import annotations

import argparse
import importlib

from boot2ipxe import TYPE_CHECKING, __version__
from boot2ipxe.errors import EXIT_BAD_INPUT

if TYPE_CHECKING:
    from typing import NoReturn

COMMAND_MODULES = ("specs", "fetch", "build", "inspect", "certs", "inject")
# The module that registers each command: a run imports only its own command's module (and what that
# imports), not every command's dependencies; --help and unknown commands register them all.
COMMANDS = {
    "validate": "specs",
    "plan": "specs",
    "platforms": "specs",
    "fetch": "fetch",
    "build": "build",
    "inspect": "inspect",
    "certs": "certs",
    "script": "certs",
    "b2c": "certs",
    "inject": "inject",
}

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


def build_parser(command: str | None = None) -> Parser:
    """The parser with every command, or with only the module registering ``command`` when it is a known one."""
    parser = Parser(
        prog="boot2ipxe",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"boot2ipxe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES:
        module = importlib.import_module(f"boot2ipxe.commands.{name}")
        module.register(sub)
    return parser
