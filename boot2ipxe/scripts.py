"""iPXE scripts: linting for constructs that hang under U-Boot."""

from __future__ import annotations

import re

# iPXE's idle loop executes `wfi`; U-Boot runs EFI applications with interrupts disabled, so any
# command that waits for time or for a key never returns there (iPXE issues #1442, #1510).
WAITING_COMMANDS = {
    "sleep": "waits for a timer",
    "prompt": "waits for a key press",
    "choose": "waits for a menu choice",
    "login": "waits for typed credentials",
    "read": "waits for typed input",
    "shell": "waits for typed commands",
}
COMMAND_RE = re.compile(r"^\s*(?::\S+\s+)?(?P<cmd>[a-z_]+)\b")


def lint_script(text: str, firmware: str) -> list[tuple[int, str]]:
    """(line number, message) for every construct unsafe under ``firmware`` ("u-boot" or "uefi")."""
    if firmware != "u-boot":
        return []
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split("#", 1)[0] if not line.lstrip().startswith("#!") else ""
        for statement in re.split(r"\|\||&&", code):
            match = COMMAND_RE.match(statement)
            if match and match.group("cmd") in WAITING_COMMANDS:
                cmd = match.group("cmd")
                findings.append(
                    (
                        number,
                        f"'{cmd}' {WAITING_COMMANDS[cmd]}, and iPXE hangs on any wait under U-Boot (no interrupts): remove it",
                    )
                )
    return findings
