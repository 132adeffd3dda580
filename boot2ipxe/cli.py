"""Command line: ``boot2ipxe COMMAND ...``. Exit 0 success, 1 failure, 2 bad input.

A warm build (``warm.py``) is recognised and run before argparse is even imported; every other command line is
parsed by ``arguments.py``, which imports only the module of the command being run.
"""

from __future__ import annotations

import os
import sys

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import EXIT_FAILURE, Boot2ipxeError

if TYPE_CHECKING:
    from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["build"]:
            from boot2ipxe.warm import parse_build_argv, warm_build

            options = parse_build_argv(argv[1:])
            if options is not None and (done := warm_build(options)) is not None:
                return done
        from boot2ipxe.arguments import build_parser

        args = build_parser(argv[0] if argv else None).parse_args(argv)
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
