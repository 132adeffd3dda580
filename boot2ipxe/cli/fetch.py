"""fetch: download and verify every blob the specs pin into the cache, or import local copies."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from boot2ipxe.cli.common import (
    add_allow_dir_option,
    add_cache_options,
    add_json_option,
    add_mirror_option,
    mirrors_from,
    print_json,
    warn,
)
from boot2ipxe.errors import EXIT_FAILURE, EXIT_OK, InputError, Problem, SpecInvalid
from boot2ipxe.fetch.cache import Cache, default_dir
from boot2ipxe.fetch.fetcher import Fetcher
from boot2ipxe.fetch.report import FetchFailed, Outcome
from boot2ipxe.progress import TtyProgress
from boot2ipxe.spec.mirrors import Mirrors
from boot2ipxe.spec.model import Spec
from boot2ipxe.units import human_size

EPILOG = """\
examples:
  boot2ipxe fetch platforms/*.yaml                          fill the cache for every platform
  boot2ipxe fetch platforms/rpi4.yaml --mirror debian=http://127.0.0.1:8000/debian
  boot2ipxe fetch platforms/*.yaml --import ~/usb/*.deb    air-gapped: cache local copies of pinned files
  boot2ipxe fetch platforms/rpi4.yaml --offline             check that the cache holds everything

Exit 0 when every blob is in the cache, 1 when one could not be obtained (or an --import file matched
nothing), 2 for bad input (an invalid spec, a bad option). Details: docs/fetch.md.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "fetch",
        help="download and verify every pinned blob of specs into the cache",
        description="Fill the blob cache with everything SPEC... pin, verified by sha256: origins are tried in order "
        "(URLs with retries and resume, local paths, members of .deb/.tar/.zip archives), several downloads at once. "
        "A blob already cached costs no network request. Prints one line per blob (progress on stderr when it is a "
        "terminal).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("specs", nargs="*", type=Path, metavar="SPEC", help="platform spec files (YAML)")
    p.add_argument(
        "--import",
        dest="imports",
        nargs="+",
        action="extend",
        default=[],
        type=Path,
        metavar="FILE",
        help="instead of downloading, put these local files into the cache when a SPEC pins their sha256 "
        "(as a blob or an archive-sha256); give the specs first",
    )
    add_cache_options(p)
    p.add_argument("-j", "--jobs", type=int, default=4, metavar="N", help="parallel downloads (default 4)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    add_mirror_option(p)
    add_json_option(p)
    add_allow_dir_option(p)
    p.set_defaults(handler=cmd_fetch)


def load_specs(paths: list[Path], mirrors: Mirrors | None, allowed: list[Path]) -> list[Spec]:
    """Every spec validated; all problems of all specs reported together (exit 2)."""
    from boot2ipxe.plan.validate import require_valid

    specs: list[Spec] = []
    problems: list[Problem] = []
    for path in paths:
        try:
            checked = require_valid(path, mirrors, display=str(path), allowed=allowed)
        except SpecInvalid as exc:
            problems += exc.problems
            continue
        for problem in checked.warnings:
            warn(str(problem))
        assert checked.spec is not None
        specs.append(checked.spec)
    if problems:
        raise SpecInvalid(problems)
    return specs


class CliReporter:
    """Progress on a terminal (stderr), and one summary line per blob on stdout."""

    def __init__(self, summary: bool, tty: TtyProgress | None) -> None:
        self.summary = summary
        self.tty = tty

    def progress(self, label: str, done: int, total: int | None) -> None:
        if self.tty is not None:
            self.tty.progress(label, done, total)

    def outcome(self, outcome: Outcome) -> None:
        if not self.summary or outcome.blob is None or outcome.error is not None:
            return
        blob = outcome.blob
        line = f"{outcome.spec.display_path}: {outcome.source}: {outcome.status} ({human_size(blob.size)}) from {blob.origin}"
        if self.tty is not None:
            self.tty.print_line(line, sys.stdout)
        else:
            print(line, flush=True)


def cmd_fetch(args: argparse.Namespace) -> int:
    if not args.specs:
        raise InputError("fetch: no SPEC given; name the specs before --import (boot2ipxe fetch SPEC... --import FILE...)")
    if args.jobs < 1:
        raise InputError(f"--jobs {args.jobs}: must be at least 1")
    for file in args.imports:
        if not file.is_file():
            raise InputError(f"--import {file}: {'is a directory' if file.is_dir() else 'no such file'}")
    mirrors = mirrors_from(args)
    # Importing needs no URL, so placeholders without a mirror are no reason to refuse a spec then.
    specs = load_specs(args.specs, None if args.imports else mirrors, args.allow_dir)
    cache = Cache(args.cache_dir or default_dir())
    tty = TtyProgress(sys.stderr) if sys.stderr.isatty() and not args.quiet else None
    reporter = CliReporter(summary=not (args.quiet or args.json), tty=tty)
    fetcher = Fetcher(cache, mirrors, args.offline, jobs=args.jobs, reporter=reporter)
    if args.imports:
        return _import(args, fetcher, specs)
    try:
        report = fetcher.fetch(specs)
    finally:
        if tty is not None:
            tty.close()
    if args.json:
        print_json(
            {
                "cache": str(cache.root),
                "ok": not report.failures,
                "blobs": [o.as_dict() for o in report.outcomes],
                "downloads": report.transfer_summary(),
            }
        )
    if report.failures:
        raise FetchFailed(report.failures)
    return EXIT_OK


def _import(args: argparse.Namespace, fetcher: Fetcher, specs: list[Spec]) -> int:
    results = fetcher.import_files(args.imports, specs)
    unmatched = [(file, digest) for file, digest, matched in results if not matched]
    if args.json:
        print_json(
            {
                "cache": str(fetcher.cache.root),
                "ok": not unmatched,
                "imported": [{"file": str(f), "sha256": d, "matches": m} for f, d, m in results if m],
                "unmatched": [{"file": str(f), "sha256": d} for f, d in unmatched],
            }
        )
    elif not args.quiet:
        for file, digest, matched in results:
            if matched:
                more = f" and {len(matched) - 1} more" if len(matched) > 1 else ""
                print(f"{file}: imported sha256 {digest} ({matched[0]}{more})")
    for file, digest in unmatched:
        warn(str(Problem(str(file), "", f"sha256 {digest} is pinned by none of the given specs; not imported")))
    return EXIT_FAILURE if unmatched else EXIT_OK
