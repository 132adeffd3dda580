"""The README's commands are the ones CI runs, and every command the README names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (ROOT / ".ci/run").read_text().splitlines()
    test_command = ci[ci.index("# The README's test command:") + 1]
    readme = (ROOT / "README.md").read_text()
    assert f"```sh\n{test_command}\n```" in readme


def test_readme_setup_installs_the_ci_package_list() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "$S apt-get install -y $(grep -v '^#' .ci/packages.txt)" in readme
    assert "$(grep -v '^#' .ci/packages.txt)" in (ROOT / ".ci/run").read_text()


def test_every_command_in_the_readme_table_is_registered() -> None:
    from boot2ipxe.cli.parser import build_parser

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    readme = (ROOT / "README.md").read_text()
    named = set(re.findall(r"^\| `boot2ipxe (\w[\w-]*)", readme, flags=re.M))
    assert named and named <= commands
