"""The command line imports only what the command it runs needs (start-up is part of every command's time)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from boot2ipxe import arguments, cli


def registered(module: str) -> set[str]:
    parser = arguments.Parser(prog="boot2ipxe")
    sub = parser.add_subparsers(dest="command", parser_class=arguments.Parser)
    __import__(f"boot2ipxe.commands.{module}", fromlist=["register"]).register(sub)
    return set(sub.choices)


def test_every_command_is_mapped_to_the_module_registering_it() -> None:
    for module in arguments.COMMAND_MODULES:
        assert registered(module) == {c for c, m in arguments.COMMANDS.items() if m == module}, module
    assert set(arguments.COMMANDS.values()) == set(arguments.COMMAND_MODULES)


def test_a_command_parses_alone_and_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(arguments.build_parser("inject")._subparsers._group_actions[0].choices) == {"inject"}  # type: ignore[union-attr]
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in arguments.COMMANDS)


def imported_by(code: str) -> set[str]:
    """Top-level packages imported by ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("command", "modules", "absent"),
    [
        # A warm build downloads nothing and signs nothing.
        ("build", "boot2ipxe.fetch, boot2ipxe.assemble, boot2ipxe.inspect", {"requests", "cryptography", "urllib3"}),
        # inject reads keys and renders a script: no schema, no HTTP.
        ("inject", "boot2ipxe.inject, boot2ipxe.certs, boot2ipxe.scripts", {"requests", "jsonschema", "urllib3"}),
        ("inspect", "boot2ipxe.inspect", {"requests", "cryptography", "jsonschema", "jinja2"}),
    ],
)
def test_commands_do_not_import_what_they_do_not_use(command: str, modules: str, absent: set[str]) -> None:
    found = imported_by(f"from boot2ipxe import arguments\narguments.build_parser({command!r})\nimport {modules}")
    assert not found & absent
