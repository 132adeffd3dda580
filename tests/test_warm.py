"""warm.parse_build_argv reads a build command line as argparse does, or leaves it to argparse."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from boot2ipxe import warm
from boot2ipxe.arguments import build_parser

FIELDS = ("spec", "output", "dry_run", "fresh", "source_date_epoch", "offline", "cache_dir", "mirror", "json")


def argparse_reads(argv: list[str]) -> dict[str, object] | None:
    try:
        namespace = build_parser("build").parse_args(["build", *argv])
    except SystemExit:
        return None
    return {name: getattr(namespace, name) for name in FIELDS}  # --cache-dir is a Path (shared with fetch)


def fast_reads(argv: list[str]) -> dict[str, object] | None:
    options = warm.parse_build_argv(argv)
    if options is None:
        return None
    found = {name: getattr(options, name) for name in FIELDS}
    found["cache_dir"] = Path(options.cache_dir) if options.cache_dir is not None else None  # the same directory
    return found


def test_the_options_are_the_build_commands() -> None:
    """Every option of the argparse build command is known to the fast reader, as a flag, a value or a list."""
    (action,) = build_parser("build")._subparsers._group_actions  # type: ignore[union-attr]
    build = action.choices["build"]  # type: ignore[index]
    kinds: dict[str, str] = {}
    for option in build._actions:
        for name in option.option_strings:
            kinds[name] = type(option).__name__
    kinds.pop("-h")
    kinds.pop("--help")
    assert {n for n, k in kinds.items() if k == "_StoreTrueAction"} == set(warm.FLAGS)
    assert {n for n, k in kinds.items() if k == "_StoreAction"} == set(warm.VALUES)
    assert {n for n, k in kinds.items() if k == "_AppendAction"} == set(warm.APPENDED)
    assert {o.dest for o in build._actions if o.option_strings and o.dest != "help"} | {"spec"} == set(FIELDS)


PLAIN = [
    ["s.yaml"],
    ["platforms/rpi3bp.yaml", "-o", "out/x.img", "--json"],
    ["./s.yaml", "--output", "a//b/./c.img", "--cache-dir", "~/c", "--fresh"],
    ["s.yaml", "--output=x.img", "--mirror", "debian=http://127.0.0.1:1/d", "--mirror=other=http://a=b"],
    ["--dry-run", "s.yaml", "--source-date-epoch", "1700000000", "--offline"],
    ["s.yaml", "--source-date-epoch=0", "-o", "x.img", "--json", "--json"],
    ["s.yaml", "-o", "a.img", "-o", "b.img"],
    ["s.yaml", "--source-date-epoch", " 5 "],
    ["spec with spaces.yaml", "-o", "out dir/x.img"],
]


@pytest.mark.parametrize("argv", PLAIN)
def test_plain_command_lines_read_as_argparse_reads_them(argv: list[str]) -> None:
    fast = fast_reads(argv)
    assert fast is not None, "a plain command line should not need argparse"
    assert fast == argparse_reads(argv)


LEFT_TO_ARGPARSE = [
    [],
    ["a.yaml", "b.yaml"],
    ["--help"],
    ["-h"],
    ["s.yaml", "--out", "x.img"],  # an abbreviation
    ["s.yaml", "-ox.img"],
    ["s.yaml", "-o"],
    ["s.yaml", "-o", "--json"],
    ["s.yaml", "--source-date-epoch", "-5"],
    ["s.yaml", "--source-date-epoch", "soon"],
    ["s.yaml", "--json=yes"],
    ["--", "s.yaml"],
    ["-"],
    [""],
    ["s.yaml", "--output="],
    ["s.yaml", "-o", ""],
    ["s.yaml", "--unknown"],
]


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE)
def test_anything_else_is_left_to_argparse(argv: list[str]) -> None:
    assert fast_reads(argv) is None


def test_random_command_lines_read_alike_or_are_left_to_argparse() -> None:
    words = ["s.yaml", "t.yaml", "-o", "--output", "--output=o.img", "x.img", "--json", "--fresh", "--dry-run", "--offline"]
    words += ["--cache-dir", "c", "--mirror", "debian=http://h/d", "--source-date-epoch", "12", "-1", "--", "-", "--out"]
    rng = random.Random(2)
    accepted = 0
    for argv in itertools.islice((rng.choices(words, k=rng.randint(0, 7)) for _ in itertools.count()), 4000):
        fast = fast_reads(argv)
        if fast is not None:
            accepted += 1
            assert fast == argparse_reads(argv), argv
    assert accepted > 200  # the reader does take most plain lines


def test_a_build_it_cannot_run_from_a_stored_recipe_says_so(tmp_path: Path) -> None:
    options = warm.parse_build_argv([str(tmp_path / "missing.yaml"), "--cache-dir", str(tmp_path / "cache")])
    assert options is not None and warm.warm_build(options) is None  # unreadable spec: validation reports it
    (tmp_path / "s.yaml").write_text("spec: 1\n")
    options = warm.parse_build_argv([str(tmp_path / "s.yaml"), "--cache-dir", str(tmp_path / "cache")])
    assert options is not None and warm.warm_build(options) is None  # no recipe stored
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()
