"""Error types and located findings. Every error the CLI reports is one of these, printed as one line per problem.

Exit codes follow Unix habit: 1 for a failure while doing the work, 2 for bad input.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One finding of validation, located by file and key path (e.g. ``partitions[1].size``)."""

    file: str
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.path}" if self.path else self.file
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "path": self.path, "message": self.message, "severity": self.severity}


def key_path(parts: Sequence[str | int]) -> str:
    """['partitions', 1, 'size'] -> 'partitions[1].size'; keys with dots are bracketed."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("-", "").replace("_", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f'["{part}"]'
    return out


class Boot2ipxeError(Exception):
    """Base class: a failure with a message fit for the user, never a traceback."""

    exit_code = EXIT_FAILURE

    def lines(self) -> list[str]:
        return [str(self)]


class InputError(Boot2ipxeError):
    """The user's input (arguments, files, specs) is wrong; exit code 2."""

    exit_code = EXIT_BAD_INPUT


class SpecInvalid(InputError):
    """A spec failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class ToolError(Boot2ipxeError):
    """An external command failed; names the command and shows its stderr."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        detail = " ".join(line.strip() for line in stderr.strip().splitlines()[-3:]) or "no error output"
        super().__init__(f"command failed (exit {returncode}): {format_argv(argv)}: {detail}")


class ToolMissing(Boot2ipxeError):
    def __init__(self, tool: str, package: str) -> None:
        super().__init__(f"{tool} not found: install the Debian package '{package}' (apt-get install {package})")


class FetchError(Boot2ipxeError):
    """No origin of a source yielded the pinned bytes."""


class BuildError(Boot2ipxeError):
    """Assembly produced something that does not match the plan."""


def format_argv(argv: Iterable[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
