"""inject: one netboot image per machine from a base image."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from boot2ipxe.cli.common import add_json_option, print_json
from boot2ipxe.errors import EXIT_OK, InputError
from boot2ipxe.pki import CA_CERT

if TYPE_CHECKING:
    from boot2ipxe.inject.image import Target
    from boot2ipxe.inject.trust import Trust

DESCRIPTION = """\
Make per-machine images from a base image (one built by 'boot2ipxe build', or a vendor's image with a FAT
partition holding an EFI iPXE): the base is copied sparsely, and only the FAT files that change are written —
the iPXE script (with the machine's client certificate and key embedded as iPXE settings), optionally a
custom iPXE binary and the CA as an EFI signature list. Under U-Boot, the CA iPXE trusts (--trust, else the
gateway CA of --pki) goes into U-Boot's EFI variable file (ubootefi.var on the EFI system partition), merged with
the variables the base already holds. Every machine of a batch is checked before any image is written; the images
are renamed into place, with OUT.manifest.json (fingerprints, never the key), only when all of them are complete.

A machine image contains its private key: store and ship it as a secret (it is written with mode 0600).

examples:
  boot2ipxe inject out/x86-uefi.img -o out/gw1.img --server https://boot.example.com --pki pki --name gw1
  boot2ipxe inject out/rpi3bp.img -o 'out/{name}.img' --server https://boot.example.com --pki pki \\
      --name pi-01 --name pi-02 --name pi-03
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "inject",
        help="make per-machine images: iPXE script, client certificate and key in a base image",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("base", type=Path, metavar="BASE", help="base disk image")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output image; with several --name, a path containing {name} or a directory",
    )
    p.add_argument("--platform", type=Path, metavar="SPEC", help="the base's spec (default: find iPXE in the image)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--server", metavar="URL", help="boot server: the script chains URL/boot/ipxe?mac=…&platform=…")
    what.add_argument("--script", type=Path, metavar="FILE", help="use this iPXE script instead of the generated one")
    p.add_argument("--pki", type=Path, metavar="DIR", help="PKI directory from 'boot2ipxe certs init'")
    p.add_argument("--name", action="append", default=[], metavar="NAME", help="machine name in --pki (repeatable: batch)")
    p.add_argument("--cert", type=Path, metavar="FILE", help="client certificate (PEM or DER), instead of --pki/--name")
    p.add_argument("--key", type=Path, metavar="FILE", help="its RSA private key (PEM or DER)")
    p.add_argument("--key-passphrase-file", type=Path, metavar="FILE", help="passphrase of an encrypted --key")
    p.add_argument("--ipxe", type=Path, metavar="FILE", help="replace the iPXE binary with this build")
    p.add_argument(
        "--ca-esl", action="store_true", help="also place the CA (from --pki) as boot2ipxe/ca.esl for firmware enrolment"
    )
    p.add_argument(
        "--trust",
        action="append",
        default=[],
        type=Path,
        metavar="CA",
        help="a CA certificate iPXE trusts for the server (PEM or DER; repeatable; default: the --pki CA), placed "
        "where the firmware reads it (U-Boot: ubootefi.var)",
    )
    p.add_argument("--no-trust", action="store_true", help="leave the trust the base holds as it is")
    p.add_argument("--firmware", choices=("uefi", "u-boot"), help="what runs iPXE (default: from the spec or the image)")
    p.add_argument("--ntp", default="pool.ntp.org", metavar="HOST", help="NTP server for the clock (default pool.ntp.org)")
    p.add_argument("--no-ntp", action="store_true", help="do not sync the clock (the firmware's must be right)")
    p.add_argument("--path", default="/boot/ipxe", metavar="PATH", help="path of the boot script on the server")
    p.add_argument("--source-date-epoch", type=int, default=315532800, metavar="SECONDS", help="FAT timestamps")
    add_json_option(p)
    p.set_defaults(handler=cmd_inject)


def cmd_inject(args: argparse.Namespace) -> int:
    from boot2ipxe.formats.ipxe_script import lint_script
    from boot2ipxe.inject import script as scripts
    from boot2ipxe.inject.batch import Machine, outputs_for, prepare, write_all
    from boot2ipxe.inject.image import locate
    from boot2ipxe.pki import certs

    _check_options(args)
    spec = None
    if args.platform:
        from boot2ipxe.plan.validate import require_valid

        spec = require_valid(args.platform, display=str(args.platform)).spec
    target = locate(args.base, spec)
    firmware: Literal["uefi", "u-boot"] = "u-boot" if (args.firmware or target.firmware) == "u-boot" else "uefi"
    extra: dict[str, bytes] = {}
    if args.ipxe:
        extra[target.binary] = _read(args.ipxe, "iPXE binary")
    if args.ca_esl:
        extra["boot2ipxe/ca.esl"] = certs.ca_signature_list(args.pki)
    user_script = _read(args.script, "script").decode("utf-8", "replace") if args.script else None
    if user_script is not None:
        findings = lint_script(user_script, firmware)
        if findings:
            raise InputError("; ".join(f"{args.script}:{line}: {message}" for line, message in findings))
    passphrase = _read(args.key_passphrase_file, "passphrase file").strip() if args.key_passphrase_file else None

    def identity_of(name: str | None) -> certs.ClientIdentity | None:
        if name is not None:
            return certs.load_machine_identity(args.pki, name)
        return certs.load_client_identity(args.cert, args.key, passphrase) if args.cert else None

    trust = _trust(args, target, firmware)

    def writes_of(identity: certs.ClientIdentity | None) -> dict[int, dict[str, bytes]]:
        if user_script is not None:
            script = scripts.with_identity(user_script, identity) if identity else user_script
        else:
            ntp = None if args.no_ntp else args.ntp
            script = scripts.render_machine_script(args.server, firmware, identity, ntp, args.path)
        return {**trust.writes, target.offset: {**extra, target.script: script.encode()}}

    names: list[str | None] = list(args.name) or [None]
    machines = prepare(args.base, names, outputs_for(args.output, names), identity_of, writes_of)
    base_sha = _base_sha256(args.base)

    def facts(machine: Machine) -> dict[str, Any]:
        identity = machine.identity
        return {
            "format": "boot2ipxe-machine/1",
            "image": str(machine.output),
            "machine": machine.name or (identity.subject_cn if identity else None),
            "base": {"path": str(args.base), "sha256": base_sha},
            "partition": target.partition,
            "firmware": firmware,
            "server": args.server,
            "files": [
                {"partition_offset": offset, "dest": dest, "size": len(data)}
                for offset, files in sorted(machine.writes.items())
                for dest, data in sorted(files.items())
            ],
            "client_certificate": identity.as_dict() if identity else None,
            "trust": trust.facts,
        }

    for warning in trust.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    results = write_all(machines, args.base, args.source_date_epoch, facts)
    if args.json:
        print_json(results)
    else:
        for machine, result in zip(machines, results, strict=True):
            fingerprint = f", fingerprint {machine.identity.fingerprint_sha1}" if machine.identity else ""
            print(f"{machine.output}: {result['machine'] or 'no client certificate'}{fingerprint}")
    return EXIT_OK


def _trust(args: argparse.Namespace, target: Target, firmware: str) -> Trust:
    """The CAs iPXE is to trust (``--trust``, else the gateway CA of ``--pki``) where the firmware keeps them."""
    from boot2ipxe.inject.trust import place_trust

    if args.no_trust:
        return place_trust(args.base, target, firmware, [], explicit=False)
    cas = list(args.trust) or ([args.pki / CA_CERT] if args.pki else [])
    return place_trust(args.base, target, firmware, cas, explicit=bool(args.trust))


def _check_options(args: argparse.Namespace) -> None:
    if not args.base.is_file():
        raise InputError(f"{args.base}: no such base image")
    if args.name and not args.pki:
        raise InputError("--name needs --pki DIR (the PKI from 'boot2ipxe certs init')")
    if args.pki and not args.name:
        raise InputError("--pki needs at least one --name")
    if bool(args.cert) != bool(args.key):
        raise InputError("--cert and --key go together")
    if args.cert and args.name:
        raise InputError("use either --cert/--key or --pki/--name, not both")
    if args.ca_esl and not args.pki:
        raise InputError("--ca-esl needs --pki DIR (the CA to place)")
    if args.no_trust and args.trust:
        raise InputError("--no-trust and --trust contradict each other")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror}") from None


def _base_sha256(base: Path) -> str | None:
    """The base's sha256 from the IMAGE.sha256 that build writes (None for a vendor's image without one)."""
    try:
        return (base.with_name(base.name + ".sha256")).read_text().split()[0]
    except (OSError, IndexError):
        return None
