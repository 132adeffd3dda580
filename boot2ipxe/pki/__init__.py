"""PKI stage: the gateway CA, one client certificate per machine, the server's certificate (``certs.py``).

May import the shared modules and ``formats``; ``inject`` and ``server`` use it. This module holds what needs no
cryptography library: the directory layout, machine names and fingerprints.
"""

from __future__ import annotations

import hashlib
import re

from boot2ipxe.errors import InputError

CA_CERT = "ca.crt.pem"
CA_KEY = "ca.key.pem"
MACHINES = "machines"
SERVERS = "servers"
DEFAULT_CA_NAME = "boot2ipxe gateway CA"
CA_BITS = (3072, 4096)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


def check_name(name: str) -> str:
    if not NAME_RE.match(name) or len(name) > 64:
        raise InputError(
            f"{name!r}: not a machine name: use letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64"
        )
    return name


def fingerprint_sha1(cert_der: bytes) -> str:
    """nginx's ``$ssl_client_fingerprint``: SHA-1 of the DER, lower-case hex."""
    return hashlib.sha1(cert_der, usedforsecurity=False).hexdigest()


def fingerprint_sha256(cert_der: bytes) -> str:
    return hashlib.sha256(cert_der).hexdigest()
