"""The machine chain script: DHCP, the clock, then the server's boot script over HTTPS with the machine's client
certificate; and the package's iPXE templates."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING

import jinja2
import jinja2.sandbox

from boot2ipxe import __version__
from boot2ipxe.errors import InputError
from boot2ipxe.formats.ipxe_script import FIRMWARES, Firmware, hex_setting, lint_script

if TYPE_CHECKING:  # keeps `script`, which only renders, from importing cryptography
    from boot2ipxe.pki.certs import ClientIdentity

RETRY_DELAY = 5  # seconds between attempts, UEFI form only
SERVER_RE = re.compile(
    r"(?:https://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::(?P<port>\d{1,5}))?/?\Z"
)
PATH_RE = re.compile(r"/[A-Za-z0-9._~/%+-]*\Z")
NTP_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.:-]*[A-Za-z0-9])?\Z")


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
