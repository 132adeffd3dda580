"""iPXE's script language: logical lines and commands as iPXE reads them, settings in its hex syntax, and a lint
for commands that wait (they hang iPXE under U-Boot).

Parsing follows iPXE (src/image/script.c, src/core/exec.c): a trailing backslash joins the next line, a line may
start with ``:label``, tokens are split on whitespace, a token starting with ``#`` begins a comment, and the
tokens ``||``, ``&&`` and ``;`` separate commands.
"""

from __future__ import annotations

import re
from typing import Literal

Firmware = Literal["uefi", "u-boot"]
FIRMWARES: tuple[Firmware, ...] = ("uefi", "u-boot")

# iPXE's idle loop executes `wfi` (cpu_nap); U-Boot runs EFI applications with interrupts disabled, so any
# command that naps never returns there (iPXE issues #1442, #1510). These commands nap: sleep (timer loop), and
# everything reading the keyboard through getkey()/readline (prompt, menus, forms, login, read, shell, config),
# with or without --timeout. dhcp/ifconf/ntp/chain/imgfetch/ping/sync --timeout wait in monojob_wait(), which
# polls without napping, so they are safe.
WAITING_COMMANDS = {
    "sleep": "waits for a timer",
    "prompt": "waits for a key press",
    "choose": "shows a menu and waits for a choice",
    "present": "shows a form and waits for input",
    "login": "waits for typed credentials",
    "read": "waits for typed input",
    "shell": "waits for typed commands",
    "config": "opens the interactive settings editor",
}
SEPARATORS = ("||", "&&", ";")
HEX_BYTES_PER_LINE = 32


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(number of the first physical line, joined text) as iPXE reads them: CR stripped, backslash continues."""
    lines: list[tuple[int, str]] = []
    pending: str | None = None
    start = 0
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r")
        if pending is None:
            pending, start = "", number
        pending += line
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        lines.append((start, pending))
        pending = None
    if pending:
        lines.append((start, pending))
    return lines


def commands(line: str) -> list[list[str]]:
    """The commands of one logical line, each a token list; label and comment removed."""
    tokens = line.split()
    if tokens and tokens[0].startswith(":"):
        tokens = tokens[1:]
    result: list[list[str]] = [[]]
    for token in tokens:
        if token.startswith("#"):
            break
        if token in SEPARATORS:
            result.append([])
        else:
            result[-1].append(token)
    return [c for c in result if c]


def lint_script(text: str, firmware: str) -> list[tuple[int, str]]:
    """(line number, message) for every construct unsafe under ``firmware`` ("u-boot" or "uefi")."""
    if firmware != "u-boot":
        return []
    findings = []
    for number, line in logical_lines(text):
        for argv in commands(line):
            while len(argv) > 1 and argv[0] == "time":  # `time CMD...` runs CMD
                argv = argv[1:]
            cmd = argv[0]
            if cmd in WAITING_COMMANDS:
                why = WAITING_COMMANDS[cmd]
                findings.append((number, f"'{cmd}' {why}, and iPXE hangs on any wait under U-Boot (no interrupts): remove it"))
    return findings


def hex_setting(name: str, data: bytes, per_line: int = HEX_BYTES_PER_LINE) -> str:
    """``set NAME:hex aa:bb:...`` in iPXE's hex syntax (colon-separated bytes), continued over lines by a
    trailing backslash so no line exceeds ``per_line`` bytes. Continuation lines are not indented: iPXE joins
    them verbatim, and a space would split the value."""
    if not data:
        raise ValueError("empty hex setting")
    chunks = [data[i : i + per_line].hex(":") for i in range(0, len(data), per_line)]
    return f"set {name}:hex " + ":\\\n".join(chunks)


def read_hex_setting(text: str, name: str) -> bytes | None:
    """The bytes the last ``set NAME:hex ...`` of a script stores, parsed as iPXE would (None if absent)."""
    value = None
    for _, line in logical_lines(text):
        for argv in commands(line):
            if len(argv) >= 3 and argv[0] == "set" and argv[1] in (f"{name}:hex", f"{name}:hexraw"):
                raw = " ".join(argv[2:])  # iPXE's `set` concatenates its arguments with spaces
                parts = raw.split(":") if argv[1].endswith(":hex") else re.findall("..", raw)
                if any(len(p) != 2 for p in parts):
                    raise ValueError(f"malformed hex in 'set {argv[1]}'")
                value = bytes.fromhex("".join(parts))
    return value
