"""The CAs a machine's iPXE trusts for the boot server, placed where its firmware gives them to iPXE.

Under U-Boot that is U-Boot's EFI variable file, ``ubootefi.var``, on the first EFI system partition: iPXE reads
its ``TlsCaCertificate`` variable at start-up. The variables the base already holds (U-Boot writes its boot
entries there at the first boot) are kept. UEFI firmware keeps its variables in its own NVRAM, not on the disk:
there the CA is enrolled in the firmware instead (``boot2ipxe certs esl``), or built into iPXE.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from boot2ipxe.errors import InputError
from boot2ipxe.formats.efivar import FILE_NAME, VariableFileError, with_trust
from boot2ipxe.inject.image import Target, read_variable_file
from boot2ipxe.pki import fingerprint_sha256
from boot2ipxe.pki.certs import load_ca_certificates

CLOCKLESS_EPOCH = dt.datetime(1970, 1, 2, tzinfo=dt.UTC)  # what a board without a clock reads under U-Boot


@dataclass(frozen=True)
class Trust:
    writes: dict[int, dict[str, bytes]] = field(default_factory=dict)  # FAT offset -> path -> bytes
    facts: list[dict[str, Any]] = field(default_factory=list)  # for the machine manifests
    warnings: list[str] = field(default_factory=list)


def place_trust(base: Path, target: Target, firmware: str, cas: Sequence[Path], *, explicit: bool) -> Trust:
    """The files that make iPXE trust ``cas`` on ``base``'s firmware. ``explicit``: the user named the CAs (refuse
    what cannot be done); else they are the --pki default, skipped where the disk cannot carry them."""
    if not cas:
        return Trust()
    if firmware != "u-boot" or target.variable_store is None:
        if not explicit:
            return Trust()
        if firmware != "u-boot":
            raise InputError(
                "--trust: UEFI firmware keeps TlsCaCertificate in its own NVRAM, not on the disk: enroll the CA in the "
                "firmware (boot2ipxe certs esl; --ca-esl places it on the disk for that) or use an iPXE built with trust"
            )
        raise InputError(
            f"{base}: no EFI system partition, where U-Boot keeps iPXE's trust ({FILE_NAME}); --trust cannot place it"
        )
    ders = load_ca_certificates(cas)
    try:
        data = with_trust(read_variable_file(base, target.variable_store), ders)
    except VariableFileError as exc:
        raise InputError(f"{base}: its {exc}: the base's U-Boot variable file is damaged; rebuild the base") from None
    certificates = [x509.load_der_x509_certificate(der) for der in ders]
    facts = [
        {
            "where": f"{FILE_NAME} TlsCaCertificate",
            "subject": cert.subject.rfc4514_string(),
            "sha256": fingerprint_sha256(der),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
        for cert, der in zip(certificates, ders, strict=True)
    ]
    warnings = []
    if not target.ntp:
        late = [c.subject.rfc4514_string() for c in certificates if c.not_valid_before_utc > CLOCKLESS_EPOCH]
        if late:
            warnings.append(
                f"{base}: this iPXE has no ntp command: on a board without a clock (a Raspberry Pi) it checks certificates "
                f"against a date near 1970, before {', '.join(late)} is valid; issue the CA and the server's certificate "
                "with --valid-from-1970, or use an iPXE built with ntp"
            )
    return Trust({target.variable_store: {FILE_NAME: data}}, facts, warnings)
