"""Gateway PKI: a CA, one client certificate per machine, identities for the inject stage, and the CA as an EFI
signature list.

Layout of a PKI directory (keys 0600, directories holding keys 0700)::

    DIR/ca.crt.pem  ca.key.pem
    DIR/machines/NAME/client.key.pem  client.key.der  client.crt.pem  client.crt.der
    DIR/servers/HOST/server.key.pem  server.crt.pem  fullchain.pem

The server identifies a machine by its certificate's SHA-1 fingerprint as nginx's ``$ssl_client_fingerprint``
shows it (lower-case hex of the DER, no colons). iPXE takes the private key as DER PKCS#1 ``RSAPrivateKey``
(ipxe.org/cfg/privkey converts with ``openssl rsa -outform DER``) and speaks RSA only.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from boot2ipxe.errors import InputError
from boot2ipxe.files import make_private_dir, read_bounded, write_atomic, write_secret
from boot2ipxe.formats.efivar import signature_list
from boot2ipxe.pki import (
    CA_BITS,
    CA_CERT,
    CA_KEY,
    DEFAULT_CA_NAME,
    MACHINES,
    SERVERS,
    check_name,
    fingerprint_sha1,
    fingerprint_sha256,
)

CLIENT_BITS = 2048
MAX_IPXE_RSA_BITS = 4096
CLOCK_SKEW = dt.timedelta(hours=1)  # certificates start this much in the past: tolerate slightly wrong clocks
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")


@dataclass(frozen=True)
class ClientIdentity:
    """A machine's certificate and key, checked usable by iPXE. ``key_der`` is secret: never print or log it."""

    subject_cn: str
    cert_der: bytes = field(repr=False)
    key_der: bytes = field(repr=False)  # PKCS#1 RSAPrivateKey, the form iPXE's privkey setting takes
    fingerprint_sha1: str  # nginx $ssl_client_fingerprint
    fingerprint_sha256: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_bits: int

    def as_dict(self) -> dict[str, str | int]:
        """Public facts only (no key material), for JSON output."""
        return {
            "subject_cn": self.subject_cn,
            "fingerprint_sha1": self.fingerprint_sha1,
            "fingerprint_sha256": self.fingerprint_sha256,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "key_bits": self.key_bits,
        }


@dataclass(frozen=True)
class CertificateAuthority:
    directory: Path
    certificate: x509.Certificate
    key: rsa.RSAPrivateKey = field(repr=False)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class MachineFiles:
    directory: Path
    key_pem: Path
    key_der: Path
    cert_pem: Path
    cert_der: Path

    @classmethod
    def of(cls, pki: Path, name: str) -> MachineFiles:
        d = pki / MACHINES / check_name(name)
        return cls(d, d / "client.key.pem", d / "client.key.der", d / "client.crt.pem", d / "client.crt.der")

    def as_dict(self) -> dict[str, str]:
        return {k: str(getattr(self, k)) for k in ("key_pem", "key_der", "cert_pem", "cert_der")}


# iPXE checks the server's certificate chain against its clock; under U-Boot that clock reads 1970 and
# Debian's iPXE has no ntp command, so a CA and server certificate for such machines start at the epoch.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _now(now: dt.datetime | None) -> dt.datetime:
    return (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)


def _years(start: dt.datetime, years: int) -> dt.datetime:
    return start + dt.timedelta(days=365 * years + years // 4)


def _fmt(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def _ski(key: rsa.RSAPrivateKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def init_ca(
    directory: Path,
    *,
    bits: int = 3072,
    years: int = 20,
    common_name: str = DEFAULT_CA_NAME,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
) -> CertificateAuthority:
    """Create a self-signed gateway CA in ``directory``; refuses if one is there already.

    ``not_before`` backdates the start of validity, for machines without a clock (see ``EPOCH``)."""
    if bits not in CA_BITS:
        raise InputError(f"CA key size {bits}: choose 3072 or 4096 bits (iPXE handles RSA up to {MAX_IPXE_RSA_BITS})")
    existing = [n for n in (CA_CERT, CA_KEY) if (directory / n).exists()]
    if existing:
        raise InputError(
            f"{directory}: a CA is already there ({', '.join(existing)}); refusing to overwrite it: "
            "pass another DIR to create a new CA"
        )
    make_private_dir(directory)
    start = _now(now)
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or start - CLOCK_SKEW)
        .not_valid_after(_years(start, years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_secret(directory / CA_KEY, pem_key, overwrite=False)
    write_atomic(directory / CA_CERT, cert.public_bytes(serialization.Encoding.PEM), overwrite=False)
    return CertificateAuthority(directory, cert, key)


def load_ca(directory: Path, *, now: dt.datetime | None = None) -> CertificateAuthority:
    """The CA in ``directory``, checked: key matches, still valid. Loose key file permissions are a warning."""
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    if not cert_path.exists() and not key_path.exists():
        raise InputError(f"{directory}: no CA here ({CA_CERT}, {CA_KEY}); create one with 'boot2ipxe certs init {directory}'")
    cert = _parse_certificate(_read(cert_path, "the CA certificate"), cert_path)
    key = _parse_private_key(_read(key_path, "the CA key"), key_path, None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{key_path}: not an RSA key; this CA was not made by boot2ipxe")
    if not _same_key(cert, key):
        raise InputError(f"{cert_path} and {key_path} do not match: the certificate is for another key")
    start = _now(now)
    if start > cert.not_valid_after_utc:
        raise InputError(f"{cert_path}: the CA expired on {_fmt(cert.not_valid_after_utc)}; create a new one in another DIR")
    warning = key_mode_warning(key_path)
    return CertificateAuthority(directory, cert, key, (warning,) if warning else ())


def key_mode_warning(path: Path) -> str | None:
    """A warning when a private key file is readable or writable by others than its owner."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        return f"{path}: warning: mode {mode:04o} lets other users read this private key; run: chmod 600 {path}"
    return None


def _sign_leaf(
    ca: CertificateAuthority,
    key: rsa.RSAPrivateKey,
    common_name: str,
    usage: x509.ObjectIdentifier,
    years: int,
    now: dt.datetime | None,
    san: Sequence[x509.GeneralName] = (),
    not_before: dt.datetime | None = None,
) -> x509.Certificate:
    start = _now(now)
    end = min(_years(start, years), ca.certificate.not_valid_after_utc)
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(not_before, ca.certificate.not_valid_before_utc) if not_before else start - CLOCK_SKEW)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=usage == ExtendedKeyUsageOID.SERVER_AUTH,  # RSA key exchange (iPXE offers it)
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(_ski(key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def issue_machines(
    directory: Path, names: Sequence[str], *, force: bool = False, years: int = 10, now: dt.datetime | None = None
) -> list[ClientIdentity]:
    """Issue a key and client certificate per name, signed by the CA in ``directory``.

    Every name is checked before anything is written; an existing name is refused unless ``force``.
    """
    for name in names:
        check_name(name)
    if len(set(names)) != len(names):
        raise InputError("the same machine name is given twice")
    if not force:
        for name in names:
            files = MachineFiles.of(directory, name)
            if files.cert_pem.exists() or files.key_pem.exists():
                raise InputError(
                    f"{name}: already issued ({files.cert_pem}); pass --force to replace its key and certificate "
                    "(its fingerprint changes: update the server and the machine's image)"
                )
    ca = load_ca(directory, now=now)
    identities = []
    for name in names:
        files = MachineFiles.of(directory, name)
        make_private_dir(files.directory)
        key = rsa.generate_private_key(public_exponent=65537, key_size=CLIENT_BITS)
        cert = _sign_leaf(ca, key, name, ExtendedKeyUsageOID.CLIENT_AUTH, years, now)
        write_secret(files.key_pem, _pkcs1(key, serialization.Encoding.PEM))
        write_secret(files.key_der, _pkcs1(key, serialization.Encoding.DER))
        write_atomic(files.cert_pem, cert.public_bytes(serialization.Encoding.PEM))
        write_atomic(files.cert_der, cert.public_bytes(serialization.Encoding.DER))
        identities.append(_identity(cert, key))
    return identities


def issue_server(
    directory: Path,
    hostnames: Sequence[str],
    *,
    force: bool = False,
    years: int = 3,
    now: dt.datetime | None = None,
    not_before: dt.datetime | None = None,
) -> Path:
    """A TLS server certificate from the CA, for a boot server that machines trusting this CA (e.g. through the
    ESL) accept. Writes ``servers/HOST/{server.key.pem, server.crt.pem, fullchain.pem}``; the full chain ends with
    the CA certificate because iPXE needs the root sent. Returns the directory."""
    import ipaddress

    if not hostnames:
        raise InputError("give at least one host name or IP address for the server certificate")
    san: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not HOST_RE.match(host):
                raise InputError(f"{host!r}: not a host name or IP address") from None
            san.append(x509.DNSName(host.lower()))
    out = directory / SERVERS / hostnames[0].lower()
    if not force and (out / "server.crt.pem").exists():
        raise InputError(f"{out}: a server certificate is already there; pass --force to replace it")
    ca = load_ca(directory, now=now)
    make_private_dir(out)
    key = rsa.generate_private_key(public_exponent=65537, key_size=CLIENT_BITS)
    cert = _sign_leaf(ca, key, hostnames[0], ExtendedKeyUsageOID.SERVER_AUTH, years, now, san, not_before)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    write_secret(out / "server.key.pem", _pkcs1(key, serialization.Encoding.PEM))
    write_atomic(out / "server.crt.pem", pem)
    write_atomic(out / "fullchain.pem", pem + ca.certificate.public_bytes(serialization.Encoding.PEM))
    return out


def _pkcs1(key: rsa.RSAPrivateKey, encoding: serialization.Encoding) -> bytes:
    return key.private_bytes(encoding, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())


def _identity(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> ClientIdentity:
    der = cert.public_bytes(serialization.Encoding.DER)
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = cns[0].value if cns else ""
    return ClientIdentity(
        subject_cn=cn if isinstance(cn, str) else cn.decode("utf-8", "replace"),
        cert_der=der,
        key_der=_pkcs1(key, serialization.Encoding.DER),
        fingerprint_sha1=fingerprint_sha1(der),
        fingerprint_sha256=fingerprint_sha256(der),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_bits=key.key_size,
    )


def load_machine_identity(directory: Path, name: str, *, now: dt.datetime | None = None) -> ClientIdentity:
    """The identity ``certs issue`` wrote for ``name`` in the PKI ``directory``."""
    files = MachineFiles.of(directory, name)
    if not files.cert_pem.exists():
        raise InputError(f"{name}: no certificate in {directory}; issue one with 'boot2ipxe certs issue {directory} {name}'")
    return load_client_identity(files.cert_pem, files.key_pem, now=now, issued_here=True)


def load_client_identity(
    cert_path: Path,
    key_path: Path,
    passphrase: str | bytes | None = None,
    *,
    now: dt.datetime | None = None,
    issued_here: bool = False,
) -> ClientIdentity:
    """Load a client certificate and its key (PEM or DER each) and check iPXE can use them.

    Refuses (InputError, one line): non-RSA keys, RSA keys over 4096 bits, a key that is not the certificate's,
    an encrypted key without ``passphrase``, a CA certificate or one without clientAuth usage, and a
    certificate that is expired or not yet valid at ``now``.

    ``issued_here``: the key was generated by ``certs issue``. OpenSSL's key check then gives way to
    :func:`_check_rsa_numbers`: the same arithmetic consistency, without the primality tests of p and q that
    cost tens of milliseconds per key (most of an inject batch's time) and only catch hand-crafted keys.
    """
    cert = _parse_certificate(_read(Path(cert_path), "the certificate"), Path(cert_path))
    key = _parse_private_key(_read(Path(key_path), "the private key"), Path(key_path), passphrase, issued_here)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise InputError(f"{key_path}: {_describe_key(key)}: iPXE supports RSA keys only; issue an RSA key (certs issue)")
    if issued_here and not _check_rsa_numbers(key):
        raise InputError(f"{key_path}: a damaged RSA key (its numbers do not agree); reissue it with 'certs issue --force'")
    if key.key_size > MAX_IPXE_RSA_BITS:
        raise InputError(f"{key_path}: RSA key of {key.key_size} bits: iPXE handles RSA keys of at most {MAX_IPXE_RSA_BITS}")
    if not _same_key(cert, key):
        raise InputError(f"{cert_path} and {key_path} do not match: the certificate is for another key")
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            raise InputError(f"{cert_path}: a CA certificate, not a machine's client certificate")
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usages:
            raise InputError(f"{cert_path}: its extended key usage does not allow TLS client authentication (clientAuth)")
    except x509.ExtensionNotFound:
        pass
    start, end, at = cert.not_valid_before_utc, cert.not_valid_after_utc, _now(now)
    if at < start:
        raise InputError(
            f"{cert_path}: not valid yet: valid from {_fmt(start)} to {_fmt(end)}, it is {_fmt(at)}; check this clock or reissue"
        )
    if at > end:
        raise InputError(f"{cert_path}: expired on {_fmt(end)} (valid from {_fmt(start)}); issue a new certificate")
    return _identity(cert, key)


MAX_PKI_FILE = 1024 * 1024  # certificates and keys are a few KiB


def _read(path: Path, what: str) -> bytes:
    try:
        return read_bounded(path, MAX_PKI_FILE)
    except InputError as exc:
        raise InputError(f"{exc} ({what})") from None


def load_ca_certificates(paths: Sequence[Path], *, now: dt.datetime | None = None) -> list[bytes]:
    """The DER of every CA certificate in ``paths`` (PEM bundles or DER), each checked to be a CA (basic constraints
    CA:TRUE) valid now: what iPXE is given to trust, in the firmware's variable store or built in."""
    found: list[bytes] = []
    moment = _now(now)
    for path in paths:
        data = _read(path, "a CA certificate")
        try:
            certificates = (
                x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data else [x509.load_der_x509_certificate(data)]
            )
        except ValueError:
            raise InputError(f"{path}: not a PEM or DER X.509 certificate") from None
        for cert in certificates:
            subject = cert.subject.rfc4514_string() or "(empty subject)"
            try:
                is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
            except x509.ExtensionNotFound:
                is_ca = False
            if not is_ca:
                raise InputError(
                    f"{path}: {subject} is not a CA certificate (no basic constraints CA:TRUE): "
                    "give the CA that signed the server's certificate"
                )
            if not cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc:
                valid = f"{_fmt(cert.not_valid_before_utc)} to {_fmt(cert.not_valid_after_utc)}"
                raise InputError(f"{path}: {subject} is not valid now (valid {valid})")
            found.append(cert.public_bytes(serialization.Encoding.DER))
    return list(dict.fromkeys(found))


def _parse_certificate(data: bytes, path: Path) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            if b"-----BEGIN CERTIFICATE-----" not in data:
                raise InputError(f"{path}: no PEM certificate in it (a key given as certificate?)")
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InputError(f"{path}: not a PEM or DER X.509 certificate") from None


def _parse_private_key(data: bytes, path: Path, passphrase: str | bytes | None, issued_here: bool = False) -> object:
    if b"OPENSSH PRIVATE KEY" in data:
        raise InputError(f"{path}: an OpenSSH key; give a PEM or DER key (RSA, as iPXE needs)")
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    pem = b"-----BEGIN" in data
    if pem and b"PRIVATE KEY-----" not in data:
        raise InputError(f"{path}: no PEM private key in it (a certificate given as key?)")
    load = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    try:
        return load(data, password, unsafe_skip_rsa_key_validation=issued_here)
    except TypeError as exc:
        if "not encrypted" in str(exc):  # a passphrase for a plain key: harmless
            return _parse_private_key(data, path, None, issued_here)
        raise InputError(
            f"{path}: the private key is encrypted: give its passphrase (boot2ipxe: --key-passphrase-file FILE; "
            "Python: passphrase=...), or decrypt it with 'openssl rsa -in KEY -out PLAIN'"
        ) from None
    except ValueError:
        if password is not None:
            raise InputError(f"{path}: cannot decrypt the private key: wrong passphrase?") from None
        raise InputError(f"{path}: not a PEM or DER private key") from None
    except UnsupportedAlgorithm:
        raise InputError(f"{path}: a private key of an unsupported algorithm; iPXE supports RSA keys only") from None


def _describe_key(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"an EC ({key.curve.name}) key"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return "an EdDSA key"
    return f"a {type(key).__name__.removesuffix('PrivateKey').lstrip('_')} key"


def _check_rsa_numbers(key: rsa.RSAPrivateKey) -> bool:
    """n = pq, e·d ≡ 1 (mod lcm(p−1, q−1)) and the CRT values agree: what a damaged key file would break."""
    numbers = key.private_numbers()
    p, q, d = numbers.p, numbers.q, numbers.d
    n, e = numbers.public_numbers.n, numbers.public_numbers.e
    if p < 3 or q < 3 or p * q != n:
        return False
    lcm = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    return e * d % lcm == 1 and numbers.dmp1 == d % (p - 1) and numbers.dmq1 == d % (q - 1) and numbers.iqmp * q % p == 1


def _same_key(cert: x509.Certificate, key: rsa.RSAPrivateKey) -> bool:
    public = cert.public_key()
    return isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == key.public_key().public_numbers()


def ca_signature_list(directory: Path) -> bytes:
    """The CA of ``directory`` as an ESL, for OVMF: ``-fw_cfg name=etc/edk2/https/cacerts,file=ca.esl``."""
    path = directory / CA_CERT
    if not path.exists():
        raise InputError(f"{directory}: no CA here ({CA_CERT}); create one with 'boot2ipxe certs init {directory}'")
    cert = _parse_certificate(_read(path, "the CA certificate"), path)
    return signature_list(cert.public_bytes(serialization.Encoding.DER))
