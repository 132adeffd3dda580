"""A warm build: from the command line straight to the stored recipe's image, importing only what that needs.

When nothing a build reads has changed since a build before (``buildcache.py``), ``boot2ipxe build`` runs the
recipe that build stored. Start-up is then most of its time, so this path imports no argparse, pathlib, json,
re, subprocess or threading: :func:`parse_build_argv` reads the plain forms of the build command line (anything
else goes to argparse, which then comes back here through ``commands/build.py``), and the recipe is run by
``assemble.execute`` on string paths.
"""

from __future__ import annotations

import os
import sys

from boot2ipxe import TYPE_CHECKING
from boot2ipxe.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from typing import Any, Protocol

    from boot2ipxe.assemble import BuildResult
    from boot2ipxe.buildcache import BuildCache

    class BuildArgs(Protocol):
        """What a build reads of its command line: argparse's namespace or :class:`BuildOptions`."""

        spec: str
        output: str | None
        dry_run: bool
        fresh: bool
        source_date_epoch: int | None
        offline: bool
        cache_dir: Any
        mirror: list[str]
        json: bool


# The build command's options as ``commands/build.py`` registers them with argparse: option -> attribute.
FLAGS = {"--dry-run": "dry_run", "--fresh": "fresh", "--offline": "offline", "--json": "json"}
VALUES = {"-o": "output", "--output": "output", "--source-date-epoch": "source_date_epoch", "--cache-dir": "cache_dir"}
APPENDED = {"--mirror": "mirror"}
# tests/test_warm.py checks these against the argparse parser, and that both read every accepted line alike.


class BuildOptions:
    """A build command line read without argparse; the same attributes, values and defaults as its namespace."""

    __slots__ = ("cache_dir", "dry_run", "fresh", "json", "mirror", "offline", "output", "source_date_epoch", "spec")

    def __init__(self) -> None:
        self.spec: str = ""
        self.output: str | None = None
        self.dry_run = self.fresh = self.offline = self.json = False
        self.source_date_epoch: int | None = None
        self.cache_dir: str | None = None
        self.mirror: list[str] = []


def parse_build_argv(argv: list[str]) -> BuildOptions | None:
    """The options of ``boot2ipxe build ARGV`` when ARGV is in a form read the same way as argparse reads it:
    one SPEC, options spelt in full (``--name VALUE``, ``--name=VALUE`` or ``-o VALUE``), no value starting with
    ``-``. Anything else (help, abbreviations, ``--``, mistakes) is None: argparse reads it, and reports errors."""
    options = BuildOptions()
    spec: list[str] = []
    items = iter(argv)
    for item in items:
        if not item.startswith("-"):
            if not item:
                return None
            spec.append(item)
            continue
        name, equals, attached = item.partition("=") if item.startswith("--") else (item, "", "")
        if name in FLAGS and not equals:
            setattr(options, FLAGS[name], True)
            continue
        if name not in VALUES and name not in APPENDED:
            return None
        value = attached if equals else next(items, None)
        if not value or value.startswith("-"):
            return None
        if name in APPENDED:
            options.mirror.append(value)
        elif name == "--source-date-epoch":
            try:
                options.source_date_epoch = int(value)
            except ValueError:
                return None
        else:
            setattr(options, VALUES[name], value)
    if len(spec) != 1:
        return None
    options.spec = spec[0]
    return options


def epoch_override(args: BuildArgs) -> int | None:
    """--source-date-epoch, else $SOURCE_DATE_EPOCH, else None (the spec decides)."""
    value: int
    if args.source_date_epoch is not None:
        value = int(args.source_date_epoch)
    elif os.environ.get("SOURCE_DATE_EPOCH"):
        try:
            value = int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise InputError(f"SOURCE_DATE_EPOCH={os.environ['SOURCE_DATE_EPOCH']!r} is not a number of seconds") from None
    else:
        return None
    if value < 0:
        raise InputError("--source-date-epoch must not be negative")
    return value


def build_key(args: BuildArgs, spec_bytes: bytes) -> str:
    from boot2ipxe.buildcache import recipe_key
    from boot2ipxe.locations import config_file

    spec = os.fspath(args.spec)
    return recipe_key(spec, spec, spec_bytes, epoch_override(args), args.mirror, os.environ, config_file())


def cache_root(args: BuildArgs) -> str:
    from boot2ipxe.locations import cache_dir

    return os.fspath(args.cache_dir) if args.cache_dir else cache_dir()


def spec_bytes(args: BuildArgs) -> bytes | None:
    """The spec's bytes, or None when it cannot be read (validation then says why)."""
    try:
        with open(args.spec, "rb") as f:
            return f.read()
    except OSError:
        return None


def warm_build(args: BuildArgs) -> int | None:
    """Run the build from its stored recipe if there is one and every blob it takes is cached and unchanged; None
    (nothing written) otherwise, and for --fresh and --dry-run."""
    if args.fresh or args.dry_run:
        return None
    data = spec_bytes(args)
    if data is None:
        return None
    from boot2ipxe.buildcache import BuildCache

    root = cache_root(args)
    builds = BuildCache(root)
    return run_stored(args, root, builds, build_key(args, data))


def run_stored(args: BuildArgs, root: str, builds: BuildCache, key: str) -> int | None:
    from boot2ipxe import stamps

    recipe = builds.load_recipe(key, lambda sha256: stamps.blob_path(root, sha256))
    if recipe is None or any(stamps.lookup(root, sha256) is None for sha256 in recipe["blobs"]):
        return None
    for source in recipe["manifest"]["sources"]:  # where the cached bytes came from may have changed
        source["origin"] = stamps.origin(root, source["sha256"])
    for line in recipe["warnings"]:
        print(line, file=sys.stderr)
    from boot2ipxe.assemble import execute

    output = os.fspath(args.output) if args.output else os.path.join("out", f"{recipe['name']}.img")
    return report(args, execute(recipe, output, builds), recipe=True)


def report(args: BuildArgs, result: BuildResult, recipe: bool) -> int:
    from boot2ipxe.units import format_size, human_size

    output, size = result.image, result.manifest["image"]["size"]
    allocated = os.stat(output).st_blocks * 512
    if args.json:
        from boot2ipxe.jsonout import dumps

        document = {
            "image": output,
            "sha256": result.sha256,
            "size": size,
            "allocated": allocated,
            "manifest": output + ".manifest.json",
            "reused": {"recipe": recipe, "image": result.reused},
        }
        sys.stdout.write(dumps(document, indent=2) + "\n")
    else:
        print(f"{output}: {format_size(size)} ({human_size(allocated)} allocated), sha256 {result.sha256}")
    return EXIT_OK
