"""Command line: ``boot2ipxe COMMAND ...``. Exit 0 success, 1 failure, 2 bad input.

The CLI stage owns argument parsing and presentation (text or ``--json``, progress on a terminal) and nothing
else: each command module in this package parses its options and calls the stages. ``parser.py`` builds the
argparse tree; every error a stage raises is a ``Boot2ipxeError`` printed here as one line per problem.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from boot2ipxe.errors import EXIT_FAILURE, Boot2ipxeError


def main(argv: Sequence[str] | None = None) -> int:
    from boot2ipxe.cli.parser import build_parser
    from boot2ipxe.tools import set_debug

    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        set_debug(args.debug)
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
    finally:
        set_debug(False)
