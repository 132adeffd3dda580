"""inject: one netboot image per machine from a base image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

from boot2ipxe.commands.common import add_json_option, print_json
from boot2ipxe.errors import EXIT_OK, InputError

DESCRIPTION = """\
Make per-machine images from a base image (one built by 'boot2ipxe build', or a vendor's image with a FAT
partition holding an EFI iPXE): the base is copied sparsely, and only the FAT files that change are written —
the iPXE script (with the machine's client certificate and key embedded as iPXE settings), optionally a
custom iPXE binary and the CA as an EFI signature list. Each image is checked and renamed into place with
OUT.manifest.json (fingerprints, never the key).

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
    p.add_argument("--firmware", choices=("uefi", "u-boot"), help="what runs iPXE (default: from the spec or the image)")
    p.add_argument("--ntp", default="pool.ntp.org", metavar="HOST", help="NTP server for the clock (default pool.ntp.org)")
    p.add_argument("--no-ntp", action="store_true", help="do not sync the clock (the firmware's must be right)")
    p.add_argument("--path", default="/boot/ipxe", metavar="PATH", help="path of the boot script on the server")
    p.add_argument("--source-date-epoch", type=int, default=315532800, metavar="SECONDS", help="FAT timestamps")
    add_json_option(p)
    p.set_defaults(handler=cmd_inject)


def _outputs(args: argparse.Namespace, names: list[str | None]) -> list[Path]:
    if len(names) == 1:
        return [Path(args.output.replace("{name}", names[0] or "machine"))]
    if "{name}" in args.output:
        return [Path(args.output.replace("{name}", str(name))) for name in names]
    directory = Path(args.output)
    if not directory.is_dir():
        raise InputError(f"-o {args.output}: with several --name, give a path containing {{name}} or an existing directory")
    return [directory / f"{name}.img" for name in names]


def cmd_inject(args: argparse.Namespace) -> int:
    from boot2ipxe import certs, scripts
    from boot2ipxe.inject import inject_image, locate, read_base_fat

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
    spec = None
    if args.platform:
        from boot2ipxe.validate import require_valid  # the spec stack (jsonschema, YAML) only when a spec is given

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
        findings = scripts.lint_script(user_script, firmware)
        if findings:
            raise InputError("; ".join(f"{args.script}:{line}: {message}" for line, message in findings))
    passphrase = _read(args.key_passphrase_file, "passphrase file").strip() if args.key_passphrase_file else None

    names: list[str | None] = list(args.name) or [None]
    outputs = _outputs(args, names)
    results = []
    base_sha = _base_sha256(args.base)
    fat = read_base_fat(args.base, target)  # once: every machine image starts as a copy of the base
    for name, output in zip(names, outputs, strict=True):
        identity = None
        if name is not None:
            identity = certs.load_machine_identity(args.pki, name)
        elif args.cert:
            identity = certs.load_client_identity(args.cert, args.key, passphrase)
        if user_script is not None:
            script = scripts.with_identity(user_script, identity) if identity else user_script
        else:
            script = scripts.render_machine_script(args.server, firmware, identity, None if args.no_ntp else args.ntp, args.path)
        files = {**extra, target.script: script.encode()}
        inject_image(args.base, output, target, files, args.source_date_epoch, fat)
        facts: dict[str, Any] = {
            "format": "boot2ipxe-machine/1",
            "image": str(output),
            "machine": name or (identity.subject_cn if identity else None),
            "base": {"path": str(args.base), "sha256": base_sha},
            "partition": target.partition,
            "firmware": firmware,
            "server": args.server,
            "files": [{"dest": dest, "size": len(data)} for dest, data in sorted(files.items())],
            "client_certificate": identity.as_dict() if identity else None,
        }
        output.with_name(output.name + ".manifest.json").write_text(json.dumps(facts, indent=2) + "\n")
        results.append(facts)
        if not args.json:
            fingerprint = f", fingerprint {identity.fingerprint_sha1}" if identity else ""
            print(f"{output}: {facts['machine'] or 'no client certificate'}{fingerprint}")
    if args.json:
        print_json(results)
    return EXIT_OK


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
