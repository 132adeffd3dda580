"""The command line: every command is registered, --help lists them, --debug shows the commands run, and a command
imports only the heavy libraries it uses (start-up is part of every command's time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from boot2ipxe import cli
from boot2ipxe.cli.parser import build_parser

COMMANDS = {"validate", "plan", "platforms", "fetch", "build", "inspect", "certs", "script", "b2c", "inject"}


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    choices = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(choices) == COMMANDS
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


def test_debug_prints_each_command_before_it_runs(run_cli: Any, tmp_path: Path) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    result = run_cli("--debug", "inspect", image)
    assert result.code == 2
    assert f"+ sfdisk --json {image}" in result.err.splitlines()
    quiet = run_cli("inspect", image)
    assert "+ sfdisk" not in quiet.err


def imported_by(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("modules", "absent"),
    [
        # The parser and every command module: no heavy library until a handler needs it.
        ("boot2ipxe.cli.parser", {"requests", "cryptography", "urllib3", "jsonschema", "jinja2", "yaml", "parted"}),
        # Building downloads nothing when the cache has the blobs, and signs nothing.
        ("boot2ipxe.fetch.fetcher, boot2ipxe.build.assemble, boot2ipxe.inspect.image", {"requests", "cryptography", "urllib3"}),
        # inject reads keys and renders a script: no schema, no HTTP.
        ("boot2ipxe.inject.image, boot2ipxe.pki.certs, boot2ipxe.inject.script", {"requests", "jsonschema", "urllib3"}),
        ("boot2ipxe.inspect.image", {"requests", "cryptography", "jsonschema", "jinja2"}),
    ],
)
def test_modules_do_not_import_what_they_do_not_use(modules: str, absent: set[str]) -> None:
    assert not imported_by(f"import {modules}") & absent
