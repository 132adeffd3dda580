"""certs, script, b2c: the gateway PKI, the machine chain script, and the boot server's per-machine files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from boot2ipxe.cli.common import add_json_option, existing_file, print_json, warn
from boot2ipxe.errors import EXIT_BAD_INPUT, EXIT_OK, InputError
from boot2ipxe.files import write_atomic, write_secret
from boot2ipxe.formats.ipxe_script import FIRMWARES, lint_script
from boot2ipxe.pki import CA_BITS, CA_CERT, CA_KEY, DEFAULT_CA_NAME, fingerprint_sha256

if TYPE_CHECKING:
    from boot2ipxe.pki.certs import ClientIdentity

NGINX_FP = "nginx $ssl_client_fingerprint"


def register(sub: Any) -> None:
    _register_certs(sub)
    _register_script(sub)
    _register_b2c(sub)


CLOCKLESS_HELP = (
    "valid from 1970-01-01: for machines whose iPXE has no clock (under U-Boot it reads 1970, and Debian's iPXE "
    "has no ntp command), which check the server's chain against that date"
)


def _register_certs(sub: Any) -> None:
    p = sub.add_parser(
        "certs",
        help="the gateway CA and one client certificate per machine",
        description="Manage the PKI the boot server uses to recognise machines: a CA, and per machine an RSA key and "
        "a client certificate whose SHA-1 fingerprint (nginx's $ssl_client_fingerprint) names its files on the server. "
        "Private keys are written mode 0600 and never printed.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    a = actions.add_parser("init", help="create a CA in DIR", description="Create a self-signed CA (RSA, PEM) in DIR.")
    a.add_argument("dir", type=Path, metavar="DIR")
    a.add_argument("--bits", type=int, choices=CA_BITS, default=3072, help="CA key size (default: 3072)")
    a.add_argument("--years", type=int, default=20, help="validity (default: 20)")
    a.add_argument("--cn", default=DEFAULT_CA_NAME, help=f"the CA's common name (default: {DEFAULT_CA_NAME})")
    a.add_argument("--valid-from-1970", action="store_true", help=CLOCKLESS_HELP)
    a.set_defaults(handler=cmd_init)

    a = actions.add_parser(
        "issue",
        help="issue a key and client certificate per machine",
        description="For each NAME write DIR/machines/NAME/{client.key.pem, client.key.der (PKCS#1, as iPXE's privkey "
        "setting takes it), client.crt.pem, client.crt.der} and print its fingerprints.",
    )
    a.add_argument("dir", type=Path, metavar="DIR")
    a.add_argument("names", nargs="+", metavar="NAME", help="machine names: [A-Za-z0-9][A-Za-z0-9._-]*")
    a.add_argument("--force", action="store_true", help="replace an existing machine's key and certificate")
    a.add_argument("--years", type=int, default=10, help="validity, capped by the CA's (default: 10)")
    add_json_option(a)
    a.set_defaults(handler=cmd_issue)

    a = actions.add_parser(
        "esl",
        help="the CA certificate as an EFI signature list",
        description="Write the CA certificate as an EFI_SIGNATURE_LIST (EFI_CERT_X509_GUID), the form UEFI's "
        "TlsCaCertificates takes; for OVMF: qemu -fw_cfg name=etc/edk2/https/cacerts,file=FILE.",
    )
    a.add_argument("dir", type=Path, metavar="DIR")
    a.add_argument("-o", "--output", type=Path, help="output file (default: DIR/ca.esl)")
    a.set_defaults(handler=cmd_esl)

    a = actions.add_parser(
        "server",
        help="issue a TLS server certificate from the CA",
        description="Write DIR/servers/HOST/{server.key.pem, server.crt.pem, fullchain.pem} for a boot server "
        "that machines trusting this CA accept; fullchain.pem ends with the CA, as iPXE needs the root sent.",
    )
    a.add_argument("dir", type=Path, metavar="DIR")
    a.add_argument("hosts", nargs="+", metavar="HOST", help="DNS names or IP addresses (the first names the directory)")
    a.add_argument("--force", action="store_true", help="replace an existing server certificate")
    a.add_argument(
        "--valid-from-1970", action="store_true", help=CLOCKLESS_HELP + " (the CA must be too: certs init --valid-from-1970)"
    )
    a.set_defaults(handler=cmd_server)


def _register_script(sub: Any) -> None:
    p = sub.add_parser(
        "script",
        help="render a machine's iPXE chain script, or lint a script",
        description="Render the script iPXE runs on a machine: DHCP, NTP, then chain "
        "https://SERVER/PATH?mac=...&platform=...&buildarch=... with retries. With --firmware u-boot nothing waits "
        "(iPXE hangs on waits under U-Boot). With a certificate and key the script embeds them as iPXE settings and "
        "is a secret: it is only written to a file (mode 0600), never printed. "
        "With --lint FILE, report every construct unsafe under --firmware (exit 2 if any).",
    )
    p.add_argument("--server", metavar="URL", help="HOST[:PORT] or https://HOST[:PORT]")
    p.add_argument("--firmware", choices=FIRMWARES, help="what runs iPXE (default when rendering: uefi)")
    p.add_argument("--path", default="/boot/ipxe", help="URL path of the boot endpoint (default: /boot/ipxe)")
    p.add_argument("--ntp", default="pool.ntp.org", metavar="HOST", help="NTP server (default: pool.ntp.org)")
    p.add_argument("--no-ntp", action="store_true", help="do not set the clock (certificate dates then rely on the RTC)")
    p.add_argument("--cert", type=Path, help="client certificate (PEM or DER)")
    p.add_argument("--key", type=Path, help="its RSA private key (PEM or DER)")
    p.add_argument("--key-passphrase-file", type=Path, metavar="FILE", help="file holding the key's passphrase")
    p.add_argument("--pki", type=Path, metavar="DIR", help="PKI directory of 'certs issue' (with --name)")
    p.add_argument("--name", help="machine name in --pki")
    p.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the script here instead of printing it")
    p.add_argument("--lint", type=Path, metavar="FILE", help="lint this script instead of rendering one")
    p.set_defaults(handler=cmd_script)


def _register_b2c(sub: Any) -> None:
    p = sub.add_parser(
        "b2c",
        help="write a machine's boot2container files for the boot server",
        description="Write SERVER_DIR/files/<fingerprint>/boot.ipxe (kernel with boot2container arguments, initrd, "
        "boot) and a 'secrets' template for valve-infra's ipxe-boot-server, which serves them to the machine "
        "presenting that client certificate. An existing secrets file is kept.",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="SERVER_DIR", help="the server's data root")
    p.add_argument("--pki", type=Path, metavar="DIR", help="PKI directory (with --name): fingerprint of its certificate")
    p.add_argument("--name", help="machine name in --pki")
    p.add_argument("--fingerprint", metavar="HEX", help="SHA-1 fingerprint of the machine's client certificate")
    p.add_argument("--kernel", required=True, metavar="URL", help="kernel URL (absolute, or a path on the server)")
    p.add_argument("--initrd", required=True, metavar="URL", help="boot2container initramfs URL")
    p.add_argument(
        "--run", action="append", required=True, metavar="ARGS", help="b2c.run value, e.g. 'docker://IMAGE' (repeatable)"
    )
    p.add_argument(
        "--legacy-container",
        action="store_true",
        help="pass --run as b2c.container= instead of b2c.run= (b2c releases before b2c.run)",
    )
    p.add_argument(
        "--cache-device", default="auto", metavar="DEV", help="b2c.cache_device (default: auto, our images' B2C_CACHE partition)"
    )
    p.add_argument("--ntp-peer", default="auto", metavar="HOST", help="b2c.ntp_peer (default: auto)")
    p.add_argument(
        "--extra-args-url",
        metavar="URL",
        help="b2c.extra_args_url (default: the server's ${secrets_url})",
    )
    p.add_argument("--no-extra-args", action="store_true", help="no b2c.extra_args_url and no secrets file")
    p.add_argument("--console", action="append", default=[], metavar="TTY", help="console=, e.g. ttyS0,115200 (repeatable)")
    p.add_argument("--cmdline-extra", action="append", default=[], metavar="ARGS", help="more kernel arguments (repeatable)")
    p.add_argument("--secret", action="append", default=[], metavar="ARG", help="argument for the secrets file (repeatable)")
    p.add_argument(
        "--plain",
        action="store_true",
        help="for a server that sends files as they are (nginx alone) rather than valve-infra's: no $$ escaping, "
        "no secrets file, no default b2c.extra_args_url",
    )
    p.add_argument("--force", action="store_true", help="replace an existing boot.ipxe")
    add_json_option(p)
    p.set_defaults(handler=cmd_b2c)


def cmd_init(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.serialization import Encoding

    from boot2ipxe.pki import certs

    ca = certs.init_ca(
        args.dir, bits=args.bits, years=args.years, common_name=args.cn, not_before=certs.EPOCH if args.valid_from_1970 else None
    )
    der = ca.certificate.public_bytes(Encoding.DER)
    print(f"{args.dir / CA_CERT}: CA '{args.cn}', RSA {args.bits}, valid until {ca.certificate.not_valid_after_utc:%Y-%m-%d}")
    print(f"{args.dir / CA_KEY}: its private key (mode 0600): keep it offline and backed up")
    print(f"sha256 fingerprint {fingerprint_sha256(der)}")
    return EXIT_OK


def cmd_issue(args: argparse.Namespace) -> int:
    from boot2ipxe.pki import certs

    if (args.dir / CA_KEY).exists() and (message := certs.key_mode_warning(args.dir / CA_KEY)):
        warn(message)
    identities = certs.issue_machines(args.dir, args.names, force=args.force, years=args.years)
    rows = []
    for name, identity in zip(args.names, identities, strict=True):
        rows.append({"name": name, **identity.as_dict(), "files": certs.MachineFiles.of(args.dir, name).as_dict()})
    if args.json:
        print_json(rows)
    else:
        for row in rows:
            print(f"{row['name']}: {row['fingerprint_sha1']} ({NGINX_FP}), sha256 {row['fingerprint_sha256']}")
    return EXIT_OK


def cmd_esl(args: argparse.Namespace) -> int:
    from boot2ipxe.pki import certs

    data = certs.ca_signature_list(args.dir)
    output = args.output or args.dir / "ca.esl"
    write_atomic(output, data)
    print(
        f"{output}: EFI signature list with the CA certificate ({len(data)} bytes); "
        f"OVMF: -fw_cfg name=etc/edk2/https/cacerts,file={output}"
    )
    return EXIT_OK


def cmd_server(args: argparse.Namespace) -> int:
    from boot2ipxe.pki import certs

    out = certs.issue_server(args.dir, args.hosts, force=args.force, not_before=certs.EPOCH if args.valid_from_1970 else None)
    print(f"{out}: server.key.pem (mode 0600), server.crt.pem, fullchain.pem (give nginx the full chain)")
    return EXIT_OK


def _identity(args: argparse.Namespace) -> ClientIdentity | None:
    from boot2ipxe.pki import certs

    if (args.cert is None) != (args.key is None):
        raise InputError("--cert and --key go together")
    if (args.pki is None) != (args.name is None):
        raise InputError("--pki and --name go together")
    if args.cert is not None and args.pki is not None:
        raise InputError("give either --cert/--key or --pki/--name, not both")
    passphrase = None
    if args.key_passphrase_file is not None:
        passphrase = existing_file(str(args.key_passphrase_file)).read_bytes().rstrip(b"\r\n")
    if args.cert is not None:
        return certs.load_client_identity(args.cert, args.key, passphrase)
    if args.pki is not None:
        return certs.load_machine_identity(args.pki, args.name)
    return None


def cmd_script(args: argparse.Namespace) -> int:
    if args.lint is not None:
        if args.firmware is None:
            raise InputError("--lint needs --firmware u-boot or uefi")
        path = existing_file(str(args.lint))
        findings = lint_script(path.read_text(encoding="utf-8", errors="replace"), args.firmware)
        for line, message in findings:
            print(f"{path}:{line}: {message}", file=sys.stderr)
        if not findings:
            print(f"{path}: ok for {args.firmware}")
        return EXIT_BAD_INPUT if findings else EXIT_OK
    if args.server is None:
        raise InputError("give --server URL (or --lint FILE)")
    from boot2ipxe.inject.script import render_machine_script

    identity = _identity(args)
    if identity is not None and args.output is None:
        raise InputError("the script would contain a private key: write it to a file with -o FILE (mode 0600) instead")
    text = render_machine_script(args.server, args.firmware or "uefi", identity, None if args.no_ntp else args.ntp, args.path)
    if args.output is None:
        sys.stdout.write(text)
    elif identity is not None:
        write_secret(args.output, text.encode())
        print(
            f"{args.output}: chain script for {identity.subject_cn} ({identity.fingerprint_sha1}); "
            "it contains the private key (mode 0600)"
        )
    else:
        write_atomic(args.output, text.encode())
        print(f"{args.output}: chain script")
    return EXIT_OK


def cmd_b2c(args: argparse.Namespace) -> int:
    from boot2ipxe.pki import certs
    from boot2ipxe.server import b2c

    if args.fingerprint is not None and args.pki is not None:
        raise InputError("give either --fingerprint or --pki/--name, not both")
    if args.fingerprint is None:
        if args.pki is None or args.name is None:
            raise InputError("say which machine: --pki DIR --name NAME, or --fingerprint HEX")
        identity = certs.load_machine_identity(args.pki, args.name)
        fingerprint, name = identity.fingerprint_sha1, args.name
    else:
        fingerprint, name = b2c.normalise_fingerprint(args.fingerprint), args.name
    cfg = b2c.BootConfig(
        kernel=args.kernel,
        initrd=args.initrd,
        run=tuple(args.run),
        legacy_container=args.legacy_container,
        cache_device=args.cache_device,
        ntp_peer=args.ntp_peer,
        extra_args_url=None
        if args.no_extra_args or (args.plain and args.extra_args_url is None)
        else args.extra_args_url or b2c.SECRETS_URL,
        console=tuple(args.console),
        cmdline_extra=tuple(args.cmdline_extra),
        secrets=tuple(args.secret),
        templated=not args.plain,
    )
    if args.secret and not args.plain and cfg.extra_args_url != b2c.SECRETS_URL:
        raise InputError("--secret needs the server's secrets URL: drop --extra-args-url/--no-extra-args")
    files = b2c.write_server_files(args.output, fingerprint, cfg, name=name, force=args.force)
    for message in files.warnings:
        warn(f"warning: {message}")
    if files.secrets_kept and args.secret:
        warn(f"warning: {files.secrets} exists and was kept: edit it to add the --secret arguments")
    if args.json:
        print_json(
            {
                "fingerprint": fingerprint,
                "boot_script": str(files.boot_script),
                "secrets": str(files.secrets) if files.secrets else None,
                "secrets_kept": files.secrets_kept,
            }
        )
    else:
        print(f"{files.boot_script}: boot2container for {name or fingerprint}")
        if files.secrets is not None:
            print(f"{files.secrets}: {'kept as it was' if files.secrets_kept else 'secrets template (mode 0600)'}")
    return EXIT_OK
