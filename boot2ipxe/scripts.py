"""iPXE scripts: the machine chain script, settings in iPXE's hex syntax, and a lint for waits that hang U-Boot.

Parsing follows iPXE (src/image/script.c, src/core/exec.c): a trailing backslash joins the next line, a line may
start with ``:label``, tokens are split on whitespace, a token starting with ``#`` begins a comment, and the
tokens ``||``, ``&&`` and ``;`` separate commands.
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Literal

import jinja2
import jinja2.sandbox

from boot2ipxe import __version__
from boot2ipxe.errors import InputError

if TYPE_CHECKING:  # keeps `validate`, which only lints, from importing cryptography
    from boot2ipxe.certs import ClientIdentity

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
RETRY_DELAY = 5  # seconds between attempts, UEFI form only
SERVER_RE = re.compile(
    r"(?:https://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(?P<port>\d{1,5}))?/?\Z"
)
PATH_RE = re.compile(r"/[A-Za-z0-9._~/%+-]*\Z")
NTP_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9])?\Z")


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


def chain_url(server: str, path: str = "/boot/ipxe") -> str:
    """``https://SERVER/PATH?mac=...`` as iPXE will request it; the ``${...}`` are expanded by iPXE."""
    match = SERVER_RE.match(server)
    if server.startswith("http://"):
        raise InputError(f"{server}: the server must be reached over https (client certificates need TLS)")
    if not match:
        raise InputError(f"{server!r}: not a server: give HOST, HOST:PORT or https://HOST[:PORT] (no path; see --path)")
    if match.group("port") and not 0 < int(match.group("port")) < 65536:
        raise InputError(f"{server}: port out of range")
    if not PATH_RE.match(path):
        raise InputError(f"{path!r}: not a URL path: start with '/', no spaces, query or '$'")
    host = match.group("host") + (f":{match.group('port')}" if match.group("port") else "")
    return f"https://{host}{path}?mac=${{netX/mac}}&platform=${{platform}}&buildarch=${{buildarch}}"


@functools.cache
def _environment() -> jinja2.Environment:
    """One environment per process, so each template is compiled once (inject renders one script per machine)."""
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.PackageLoader("boot2ipxe", "data"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_template(name: str, **context: object) -> str:
    return _environment().get_template(name).render(context)


def render_machine_script(
    server: str,
    firmware: Firmware,
    identity: ClientIdentity | None,
    ntp: str | None = "pool.ntp.org",
    path: str = "/boot/ipxe",
) -> str:
    """The script a machine's iPXE runs: DHCP, NTP (certificate dates need a clock), then chain the server's boot
    script over HTTPS, retrying forever. ``firmware="u-boot"`` never waits: retries ride on dhcp/ntp timeouts.
    With ``identity``, its certificate and private key are set as iPXE settings: the result is then a secret."""
    if firmware not in FIRMWARES:
        raise InputError(f"firmware {firmware!r}: choose uefi or u-boot")
    if ntp is not None and not NTP_RE.match(ntp):
        raise InputError(f"{ntp!r}: not an NTP server name or address")
    url = chain_url(server, path)
    text = render_template(
        "machine.ipxe.j2",
        version=__version__,
        firmware=firmware,
        url=url,
        ntp=ntp,
        retry_delay=RETRY_DELAY,
        identity=identity,
        not_after=identity.not_after.strftime("%Y-%m-%d") if identity else "",
        cert_setting=hex_setting("cert", identity.cert_der) if identity else "",
        key_setting=hex_setting("privkey", identity.key_der) if identity else "",
    )
    problems = lint_script(text, firmware)
    assert not problems, problems  # the template must stay safe for the firmware it targets
    return text


def with_identity(script: str, identity: ClientIdentity) -> str:
    """A user's script with the machine's certificate and key set first (after the ``#!ipxe`` line)."""
    settings = f"{hex_setting('cert', identity.cert_der)}\n{hex_setting('privkey', identity.key_der)}\n"
    first, newline, rest = script.partition("\n")
    if first.strip().lower().startswith("#!ipxe"):
        return f"{first}{newline}{settings}{rest}"
    return f"#!ipxe\n{settings}{script}"
