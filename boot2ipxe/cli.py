"""Command line: ``boot2ipxe COMMAND ...``. Exit 0 success, 1 failure, 2 bad input.

Each command group lives in ``boot2ipxe/commands/`` and registers its sub-commands here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from boot2ipxe import TYPE_CHECKING, __version__
from boot2ipxe.errors import EXIT_BAD_INPUT, EXIT_FAILURE, Boot2ipxeError

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


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
        return code
    except Boot2ipxeError as exc:
        for line in exc.lines():
            print(line if ":" in line.split(" ", 1)[0] else f"boot2ipxe: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("boot2ipxe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
