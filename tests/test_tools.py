"""tools.run: list argv spawned without a shell, stdin given or /dev/null, output captured whole, failures named."""

from __future__ import annotations

import time

import pytest

from boot2ipxe import tools
from boot2ipxe.errors import ToolError, ToolMissing


def test_stdin_is_given_and_output_captured() -> None:
    result = tools.run(["sh", "-c", "tr a-z A-Z; echo warned >&2"], stdin=b"script\n")
    assert (result.stdout, result.stderr) == (b"SCRIPT\n", b"warned\n")


def test_without_stdin_a_tool_reads_dev_null_not_the_terminal() -> None:
    assert tools.run(["sh", "-c", "cat; readlink /proc/self/fd/0"]).stdout == b"/dev/null\n"


def test_more_output_than_a_pipe_holds_is_captured_whole() -> None:
    result = tools.run(["sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2"])
    assert (len(result.stdout), len(result.stderr)) == (300000, 200000)


def test_env_adds_to_the_environment() -> None:
    out = tools.run(["sh", "-c", 'echo "$BOOT2IPXE_T $HOME"'], env={"BOOT2IPXE_T": "set"}).stdout.decode()
    assert out.startswith("set /")


def test_a_failure_names_the_command_its_exit_code_and_its_last_words() -> None:
    with pytest.raises(ToolError, match=r"command failed \(exit 3\): sh -c 'echo first >&2; echo last >&2; exit 3': first last"):
        tools.run(["sh", "-c", "echo first >&2; echo last >&2; exit 3"])


def test_a_tool_killed_by_a_signal_reports_it() -> None:
    with pytest.raises(ToolError, match=r"\(exit -9\)"):
        tools.run(["sh", "-c", "kill -9 $$"])


def test_a_tool_past_its_timeout_is_killed() -> None:
    started = time.monotonic()
    with pytest.raises(ToolError, match=r"timed out after 0\.2 s"):
        tools.run(["sleep", "30"], timeout=0.2)
    assert time.monotonic() - started < 10


def test_a_missing_tool_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(tools, "EXTRA_PATH", ())
    with pytest.raises(ToolMissing, match="mcopy not found: install the Debian package 'mtools'"):
        tools.run(["mcopy", "-V"])


def test_a_tool_gets_the_default_sigpipe_python_ignores() -> None:
    """As with subprocess: a tool writing to a closed pipe dies of SIGPIPE (Python itself ignores it)."""
    result = tools.run(["grep", "SigIgn", "/proc/self/status"])
    ignored = int(result.stdout.decode().split()[-1], 16)
    assert not ignored & (1 << (13 - 1))  # SIGPIPE is not in the child's ignored set
