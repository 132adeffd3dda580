"""Server side: the per-machine files valve-infra's ipxe-boot-server serves to boot boot2container.

Layout, under the server's data root::

    files/<fingerprint>/boot.ipxe   kernel + initrd + boot, for the machine whose client certificate has that
                                    SHA-1 fingerprint (nginx $ssl_client_fingerprint)
    files/<fingerprint>/secrets     extra boot2container arguments fetched once through b2c.extra_args_url

The server renders both as Python ``string.Template``: ``${secrets_url}``, ``${s3_endpoint}`` ... are its
variables and ``$$`` is a dollar sign. Values given here for boot.ipxe are literal (their ``$`` are escaped);
secrets arguments are templates, so they can use the server's S3 variables. With ``templated=False`` (a plain
web server such as nginx serving files/ as they are) nothing is escaped and there is no secrets file.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from boot2ipxe import __version__
from boot2ipxe.errors import InputError
from boot2ipxe.files import PUBLIC_MODE, write_atomic, write_secret
from boot2ipxe.formats.ipxe_script import SEPARATORS, lint_script
from boot2ipxe.inject.script import render_template
from boot2ipxe.pki import check_name

SECRETS_URL = "${secrets_url}"  # valve-infra replaces it by a short-lived, one-time URL of the rendered secrets
SERVER_VARIABLES = frozenset(
    {"secrets_url", "client_cert_fingerprint", "s3_endpoint", "s3_access_key_id", "s3_access_key", "s3_bucket_name"}
)
FINGERPRINT_RE = re.compile(r"[0-9a-f]{40}\Z")
WORD_RE = re.compile(r"[^\s\"]+\Z")
CONSOLE_RE = re.compile(r"[A-Za-z0-9_,./:-]+\Z")
MAX_CMDLINE = 2048  # COMMAND_LINE_SIZE on x86 and (before 6.x) arm64


@dataclass(frozen=True)
class BootConfig:
    """What a machine boots. ``run`` holds the b2c.run values (podman arguments then the image)."""

    kernel: str
    initrd: str
    run: tuple[str, ...]
    legacy_container: bool = False  # b2c releases before b2c.run: pass b2c.container= instead
    cache_device: str = "auto"  # safe: our images carry a partition labelled B2C_CACHE
    ntp_peer: str = "auto"
    extra_args_url: str | None = SECRETS_URL
    console: tuple[str, ...] = ()
    cmdline_extra: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    templated: bool = True  # the server renders the files as string.Template (valve-infra); False: served as is


@dataclass(frozen=True)
class ServerFiles:
    boot_script: Path
    secrets: Path | None
    secrets_kept: bool  # an existing secrets file is never overwritten
    warnings: tuple[str, ...] = ()


def normalise_fingerprint(text: str) -> str:
    """Lower-case hex without colons, as nginx's $ssl_client_fingerprint (accepts openssl's AA:BB:... form)."""
    fp = text.strip().lower().replace(":", "")
    if fp.startswith("sha1fingerprint="):
        fp = fp.removeprefix("sha1fingerprint=")
    if not FINGERPRINT_RE.match(fp):
        raise InputError(f"{text!r}: not a SHA-1 certificate fingerprint (40 hex digits, as nginx's $ssl_client_fingerprint)")
    return fp


def _literal(cfg: BootConfig, value: str) -> str:
    return value.replace("$", "$$") if cfg.templated else value


def _check(what: str, value: str, pattern: re.Pattern[str] = WORD_RE) -> str:
    if not pattern.match(value):
        raise InputError(f"{what} {value!r}: must be one word without spaces or double quotes")
    return value


def kernel_args(cfg: BootConfig) -> list[str]:
    """The kernel command line, one argument each, as boot.ipxe passes it (before the server's substitution)."""
    if not cfg.templated and (cfg.extra_args_url == SECRETS_URL or cfg.secrets):
        raise InputError("a plain server has no ${secrets_url} nor secrets file: give --extra-args-url URL or --no-extra-args")
    if not cfg.run:
        raise InputError("give the container to run (--run 'docker://IMAGE' or '-ti docker://IMAGE')")
    args = ["initrd=b2c"]  # the EFI stub loads iPXE's image named b2c (see `initrd --name b2c`)
    for run in cfg.run:
        if '"' in run or "\n" in run or not run.strip():
            raise InputError(f"--run {run!r}: must be non-empty, on one line and without double quotes (b2c splits on them)")
        args.append(f'b2c.{"container" if cfg.legacy_container else "run"}="{_literal(cfg, run.strip())}"')
    args.append(f"b2c.cache_device={_literal(cfg, _check('--cache-device', cfg.cache_device))}")
    args.append(f"b2c.ntp_peer={_literal(cfg, _check('--ntp-peer', cfg.ntp_peer))}")
    if cfg.extra_args_url is not None:
        url = (
            cfg.extra_args_url
            if cfg.extra_args_url == SECRETS_URL
            else _literal(cfg, _check("--extra-args-url", cfg.extra_args_url))
        )
        args.append(f'b2c.extra_args_url="{url}"')
    args.extend(f"console={_check('--console', c, CONSOLE_RE)}" for c in cfg.console)
    for extra in cfg.cmdline_extra:
        if "\n" in extra or extra.count('"') % 2:
            raise InputError(f"--cmdline-extra {extra!r}: must be on one line with balanced double quotes")
        args.append(_literal(cfg, " ".join(extra.split())))
    for token in " ".join(args).split():
        # iPXE knows no quotes: it would end the kernel command at these tokens, quoted or not
        if token in SEPARATORS or token.startswith("#"):
            raise InputError(
                f"{token!r} in the kernel arguments: iPXE reads it as a command separator or comment, even in quotes; "
                "move it into the container (or the secrets file)"
            )
    return args


def render_boot_script(cfg: BootConfig, fingerprint: str, name: str | None = None) -> tuple[str, list[str]]:
    """boot.ipxe (a valve-infra template) and warnings."""
    fingerprint = normalise_fingerprint(fingerprint)
    if name is not None:
        check_name(name)
    args = kernel_args(cfg)
    text = render_template(
        "b2c-boot.ipxe.j2",
        version=__version__,
        who=name or fingerprint,
        fingerprint=fingerprint,
        templated=cfg.templated,
        kernel=_literal(cfg, _check("--kernel", cfg.kernel)),
        initrd=_literal(cfg, _check("--initrd", cfg.initrd)),
        args=" ".join(args),
    )
    if cfg.templated:
        _check_template(text, "boot.ipxe")
    warnings = []
    cmdline = len(" ".join(args)) + 200  # room for the substituted secrets URL
    if cmdline > MAX_CMDLINE:
        warnings.append(f"the kernel command line is about {cmdline} bytes, over {MAX_CMDLINE}: move arguments to the secrets")
    assert not lint_script(text, "u-boot"), "boot.ipxe must not wait"
    return text, warnings


def render_secrets(cfg: BootConfig, fingerprint: str, name: str | None = None) -> str:
    """The ``secrets`` template: arguments b2c parses like its command line, kept off /proc/cmdline."""
    if name is not None:
        check_name(name)
    for arg in cfg.secrets:
        if "\n" in arg:
            raise InputError(f"--secret {arg[:20]!r}...: must be on one line")
        _check_template(arg, "--secret")
    text = render_template("b2c-secrets.j2", who=name or normalise_fingerprint(fingerprint), secrets=list(cfg.secrets))
    _check_template(text, "secrets")
    return text


def _check_template(text: str, what: str) -> None:
    template = string.Template(text)
    if not template.is_valid():
        raise InputError(f"{what}: not a valid server template: write $$ for a dollar sign, ${{name}} for a server variable")
    unknown = sorted(set(template.get_identifiers()) - SERVER_VARIABLES)
    if unknown:
        raise InputError(f"{what}: unknown server variable(s) {', '.join(unknown)}; known: {', '.join(sorted(SERVER_VARIABLES))}")


def write_server_files(
    server_dir: Path, fingerprint: str, cfg: BootConfig, *, name: str | None = None, force: bool = False
) -> ServerFiles:
    """Write files/<fingerprint>/boot.ipxe (and secrets when b2c.extra_args_url is the server's secrets URL)."""
    fingerprint = normalise_fingerprint(fingerprint)
    text, warnings = render_boot_script(cfg, fingerprint, name)
    with_secrets = cfg.templated and cfg.extra_args_url == SECRETS_URL
    secrets_text = render_secrets(cfg, fingerprint, name) if with_secrets else None
    directory = server_dir / "files" / fingerprint
    boot = directory / "boot.ipxe"
    if boot.exists() and not force:
        raise InputError(f"{boot}: already exists; pass --force to replace it")
    try:
        directory.mkdir(parents=True, exist_ok=True)  # the server reads it: only the secrets file is private
    except OSError as exc:
        raise InputError(f"{directory}: cannot create directory: {exc.strerror}") from None
    write_atomic(boot, text.encode(), mode=PUBLIC_MODE)
    secrets = directory / "secrets" if with_secrets else None
    kept = False
    if secrets is not None and secrets_text is not None:
        kept = secrets.exists()
        if not kept:
            write_secret(secrets, secrets_text.encode(), overwrite=False)
    return ServerFiles(boot, secrets, kept, tuple(warnings))


def parse_b2c_cmdline(cmdline: str) -> list[str]:
    """Split a command line the way boot2container does (awk on double quotes): quotes removed, words kept
    together inside them. For tests and for checking what b2c will see."""
    joined = "".join(part if i % 2 else re.sub(r"[ \t]+", "\n", part) for i, part in enumerate(cmdline.split('"')))
    return [p for p in joined.split("\n") if p]


def split_b2c_values(params: Sequence[str], key: str) -> list[str]:
    return [p.split("=", 1)[1] for p in params if p.startswith(f"{key}=")]
