"""Gateway PKI: CA, machine certificates, identities for inject, ESL, and a real mutual-TLS handshake.

openssl (the CLI) is the independent check for fingerprints, key formats and chains.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import ssl
import stat
import struct
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from boot2ipxe.errors import InputError
from boot2ipxe.formats import efivar
from boot2ipxe.pki import certs

UTC = dt.UTC


def openssl(*args: str) -> str:
    return subprocess.run(["openssl", *args], check=True, capture_output=True, text=True).stdout


def openssl_fingerprint(cert: Path, digest: str) -> str:
    # "SHA1 Fingerprint=AB:CD:..." -> "abcd...", the form nginx's $ssl_client_fingerprint uses for SHA-1
    out = openssl("x509", "-in", str(cert), "-noout", "-fingerprint", f"-{digest}")
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "gateway"
    certs.init_ca(directory)
    certs.issue_machines(directory, ["rpi-01", "x86.lab_2"])
    return directory


def make_cert(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    signer: rsa.RSAPrivateKey,
    issuer: x509.Name,
    *,
    cn: str = "machine",
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    ca: bool = False,
) -> x509.Certificate:
    now = dt.datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(signer, hashes.SHA256())
    )


def write_pair(tmp_path: Path, cert: x509.Certificate, key_bytes: bytes, stem: str = "c") -> tuple[Path, Path]:
    cert_path, key_path = tmp_path / f"{stem}.crt", tmp_path / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key_bytes)
    return cert_path, key_path


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@pytest.fixture(scope="module")
def ca(pki: Path) -> certs.CertificateAuthority:
    return certs.load_ca(pki)


# --- CA -------------------------------------------------------------------------------------------------------


def test_ca_certificate_is_a_long_lived_signing_ca(pki: Path) -> None:
    cert = x509.load_pem_x509_certificate((pki / certs.CA_CERT).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).critical
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > dt.timedelta(days=365 * 19)
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size in certs.CA_BITS
    text = openssl("x509", "-in", str(pki / certs.CA_CERT), "-noout", "-text")
    assert "CA:TRUE" in text and "Certificate Sign, CRL Sign" in text and "Subject Key Identifier" in text


def test_ca_key_is_created_0600_and_parent_0700(pki: Path) -> None:
    assert mode(pki / certs.CA_KEY) == 0o600
    assert mode(pki) == 0o700
    assert b"PRIVATE KEY" in (pki / certs.CA_KEY).read_bytes()


def test_ca_key_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        certs.init_ca(tmp_path / "ca")
    finally:
        os.umask(old)
    assert mode(tmp_path / "ca" / certs.CA_KEY) == 0o600


def test_init_refuses_to_overwrite_a_ca(pki: Path) -> None:
    before = (pki / certs.CA_KEY).read_bytes()
    with pytest.raises(InputError, match=r"already there.*another DIR"):
        certs.init_ca(pki)
    assert (pki / certs.CA_KEY).read_bytes() == before


def test_init_refuses_other_key_sizes(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="3072 or 4096"):
        certs.init_ca(tmp_path / "ca", bits=2048)


def test_loading_a_ca_with_a_readable_key_warns(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    certs.init_ca(directory)
    assert certs.load_ca(directory).warnings == ()
    (directory / certs.CA_KEY).chmod(0o644)
    (warning,) = certs.load_ca(directory).warnings
    assert "0644" in warning and "chmod 600" in warning


def test_load_ca_refuses_an_expired_ca(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    certs.init_ca(directory, years=1, now=dt.datetime(2000, 1, 1, tzinfo=UTC))
    with pytest.raises(InputError, match="expired"):
        certs.load_ca(directory)


# --- machines -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rpi-01", "x86.lab_2"])
def test_issued_files_modes_and_fingerprints_match_openssl(pki: Path, name: str) -> None:
    files = certs.MachineFiles.of(pki, name)
    assert mode(files.key_pem) == mode(files.key_der) == 0o600
    assert mode(files.directory) == 0o700
    identity = certs.load_machine_identity(pki, name)
    assert identity.subject_cn == name
    assert identity.fingerprint_sha1 == openssl_fingerprint(files.cert_pem, "sha1")
    assert identity.fingerprint_sha256 == openssl_fingerprint(files.cert_pem, "sha256")
    assert identity.cert_der == files.cert_der.read_bytes()
    assert identity.key_der == files.key_der.read_bytes()
    assert "OK" in openssl("verify", "-CAfile", str(pki / certs.CA_CERT), "-purpose", "sslclient", str(files.cert_pem))


def test_client_key_der_is_pkcs1_as_ipxe_documents(pki: Path) -> None:
    files = certs.MachineFiles.of(pki, "rpi-01")
    assert files.key_pem.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    # PKCS#1 RSAPrivateKey: SEQUENCE { INTEGER version, INTEGER modulus, ... }; PKCS#8 would have an
    # AlgorithmIdentifier SEQUENCE (rsaEncryption) second.
    lines = openssl("asn1parse", "-inform", "DER", "-in", str(files.key_der)).splitlines()
    assert "SEQUENCE" in lines[0] and "INTEGER" in lines[1] and "INTEGER" in lines[2]
    assert "rsaEncryption" not in "\n".join(lines)
    # ipxe.org/cfg/privkey: `openssl rsa -in client.key -outform DER` gives the bytes iPXE takes
    converted = subprocess.run(
        ["openssl", "rsa", "-in", str(files.key_pem), "-outform", "DER", "-traditional"], check=True, capture_output=True
    ).stdout
    assert converted == files.key_der.read_bytes()


def test_client_certificate_extensions(pki: Path) -> None:
    identity = certs.load_machine_identity(pki, "rpi-01")
    cert = x509.load_der_x509_certificate(identity.cert_der)
    ca_cert = x509.load_pem_x509_certificate((pki / certs.CA_CERT).read_bytes())
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == ca_cert.subject
    assert identity.key_bits == 2048
    assert dt.timedelta(days=365 * 9) < identity.not_after - identity.not_before <= dt.timedelta(days=365 * 10 + 4)


def test_identity_repr_and_dict_hide_the_key(pki: Path) -> None:
    identity = certs.load_machine_identity(pki, "rpi-01")
    assert identity.key_der.hex() not in repr(identity)
    assert "key_der" not in repr(identity) and "key_der" not in identity.as_dict()
    with pytest.raises(AttributeError):
        identity.subject_cn = "other"  # type: ignore[misc]


def test_reissue_refuses_without_force_and_changes_fingerprint_with_it(pki: Path) -> None:
    before = certs.load_machine_identity(pki, "x86.lab_2")
    with pytest.raises(InputError, match=r"already issued.*--force"):
        certs.issue_machines(pki, ["new-one", "x86.lab_2"])
    assert not (pki / certs.MACHINES / "new-one").exists()  # every name checked before anything is written
    (after,) = certs.issue_machines(pki, ["x86.lab_2"], force=True)
    assert after.fingerprint_sha1 != before.fingerprint_sha1
    assert certs.load_machine_identity(pki, "x86.lab_2") == after
    assert mode(certs.MachineFiles.of(pki, "x86.lab_2").key_pem) == 0o600


@pytest.mark.parametrize("name", ["", "-x", ".hidden", "a/b", "../up", "a b", "é", "x" * 65, "a\nb"])
def test_unsafe_machine_names_are_refused(pki: Path, name: str) -> None:
    with pytest.raises(InputError, match="not a machine name"):
        certs.issue_machines(pki, [name])


def test_client_validity_is_capped_by_the_ca(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    ca = certs.init_ca(directory, years=2)
    (identity,) = certs.issue_machines(directory, ["m"], years=10)
    assert identity.not_after == ca.certificate.not_valid_after_utc


# --- load_client_identity refusals ----------------------------------------------------------------------------


def test_identity_loads_from_der_files_too(pki: Path) -> None:
    files = certs.MachineFiles.of(pki, "rpi-01")
    assert certs.load_client_identity(files.cert_der, files.key_der) == certs.load_client_identity(files.cert_pem, files.key_pem)


def test_refuses_non_rsa_keys(tmp_path: Path, ca: certs.CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = write_pair(tmp_path, make_cert(key, ca.key, ca.certificate.subject), pem(key))
    with pytest.raises(InputError, match=r"EC \(secp256r1\) key: iPXE supports RSA keys only"):
        certs.load_client_identity(cert_path, key_path)


def test_refuses_rsa_keys_over_4096_bits(tmp_path: Path, ca: certs.CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=4104)
    cert_path, key_path = write_pair(tmp_path, make_cert(key, ca.key, ca.certificate.subject), pem(key))
    with pytest.raises(InputError, match="4104 bits: iPXE handles RSA keys of at most 4096"):
        certs.load_client_identity(cert_path, key_path)


def test_refuses_a_key_that_is_not_the_certificates(tmp_path: Path, pki: Path) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "other.key"
    key_path.write_bytes(pem(other))
    cert_path = certs.MachineFiles.of(pki, "rpi-01").cert_pem
    with pytest.raises(InputError, match="do not match"):
        certs.load_client_identity(cert_path, key_path)


@pytest.mark.parametrize("damage", ["d", "dmp1", "dmq1", "iqmp"])
def test_a_damaged_key_in_the_pki_is_refused(tmp_path: Path, damage: str) -> None:
    # Machine keys from certs issue load without OpenSSL's primality tests (inject reads one per machine); the
    # arithmetic checks that replace them still refuse a key whose numbers disagree.
    directory = tmp_path / "pki"
    certs.init_ca(directory)
    certs.issue_machines(directory, ["m1"])
    files = certs.MachineFiles.of(directory, "m1")
    good = serialization.load_pem_private_key(files.key_pem.read_bytes(), None)
    assert isinstance(good, rsa.RSAPrivateKey)
    n = good.private_numbers()
    values = {"p": n.p, "q": n.q, "d": n.d, "dmp1": n.dmp1, "dmq1": n.dmq1, "iqmp": n.iqmp}
    values[damage] += 2
    broken = rsa.RSAPrivateNumbers(**values, public_numbers=n.public_numbers).private_key(unsafe_skip_rsa_key_validation=True)
    files.key_pem.write_bytes(pem(broken))
    with pytest.raises(InputError, match=r"client\.key\.pem: a damaged RSA key"):
        certs.load_machine_identity(directory, "m1")
    with pytest.raises(InputError, match="not a PEM or DER private key"):  # OpenSSL's own check, for keys from elsewhere
        certs.load_client_identity(files.cert_pem, files.key_pem)


@pytest.mark.parametrize("traditional", [False, True], ids=["pkcs8", "legacy-pem"])
def test_encrypted_keys_need_their_passphrase(tmp_path: Path, pki: Path, traditional: bool) -> None:
    files = certs.MachineFiles.of(pki, "rpi-01")
    key = serialization.load_pem_private_key(files.key_pem.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    fmt = serialization.PrivateFormat.TraditionalOpenSSL if traditional else serialization.PrivateFormat.PKCS8
    encrypted = tmp_path / "enc.key"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"s3cret")))
    with pytest.raises(InputError, match=r"encrypted: give its passphrase.*--key-passphrase-file"):
        certs.load_client_identity(files.cert_pem, encrypted)
    with pytest.raises(InputError, match="wrong passphrase"):
        certs.load_client_identity(files.cert_pem, encrypted, passphrase="nope")
    identity = certs.load_client_identity(files.cert_pem, encrypted, passphrase="s3cret")
    assert identity.key_der == files.key_der.read_bytes()  # decrypted, as PKCS#1 DER


def test_refuses_expired_and_not_yet_valid_certificates_with_dates(tmp_path: Path, ca: certs.CertificateAuthority) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = make_cert(
        key,
        ca.key,
        ca.certificate.subject,
        not_before=dt.datetime(2020, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2021, 6, 30, 12, tzinfo=UTC),
    )
    cert_path, key_path = write_pair(tmp_path, expired, pem(key), "old")
    with pytest.raises(InputError, match="expired on 2021-06-30 12:00:00 UTC") as info:
        certs.load_client_identity(cert_path, key_path)
    assert "2020-01-01" in str(info.value) and "\n" not in str(info.value)

    future = make_cert(
        key,
        ca.key,
        ca.certificate.subject,
        not_before=dt.datetime(2099, 1, 1, tzinfo=UTC),
        not_after=dt.datetime(2100, 1, 1, tzinfo=UTC),
    )
    cert_path, key_path = write_pair(tmp_path, future, pem(key), "future")
    with pytest.raises(InputError, match="not valid yet: valid from 2099-01-01 00:00:00 UTC to 2100-01-01"):
        certs.load_client_identity(cert_path, key_path)
    # the clock is a parameter: the same certificate is fine in 2099
    assert certs.load_client_identity(cert_path, key_path, now=dt.datetime(2099, 6, 1, tzinfo=UTC)).subject_cn == "machine"


def test_refuses_server_only_and_ca_certificates(tmp_path: Path, ca: certs.CertificateAuthority, pki: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = make_cert(key, ca.key, ca.certificate.subject, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    cert_path, key_path = write_pair(tmp_path, server, pem(key))
    with pytest.raises(InputError, match="clientAuth"):
        certs.load_client_identity(cert_path, key_path)
    with pytest.raises(InputError, match="a CA certificate"):
        certs.load_client_identity(pki / certs.CA_CERT, pki / certs.CA_KEY)


def test_refuses_unreadable_and_swapped_inputs(tmp_path: Path, pki: Path) -> None:
    files = certs.MachineFiles.of(pki, "rpi-01")
    with pytest.raises(InputError, match="no such file"):
        certs.load_client_identity(tmp_path / "missing.crt", files.key_pem)
    with pytest.raises(InputError, match="no PEM certificate"):
        certs.load_client_identity(files.key_pem, files.cert_pem)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01junk")
    with pytest.raises(InputError, match=r"not a PEM or DER X.509 certificate"):
        certs.load_client_identity(junk, files.key_pem)
    with pytest.raises(InputError, match="not a PEM or DER private key"):
        certs.load_client_identity(files.cert_pem, junk)


# --- ESL ------------------------------------------------------------------------------------------------------


def test_esl_parses_back(pki: Path) -> None:
    esl = certs.ca_signature_list(pki)
    ca_der = subprocess.run(
        ["openssl", "x509", "-in", str(pki / certs.CA_CERT), "-outform", "DER"], check=True, capture_output=True
    ).stdout
    # EFI_GUID a5c059a1-94e4-4aa7-87b5-ab155c2bf072: Data1..3 little-endian, Data4 as is
    assert esl[:16] == bytes.fromhex("a159c0a5e494a74a87b5ab155c2bf072")
    assert uuid.UUID(bytes_le=esl[:16]) == efivar.EFI_CERT_X509_GUID
    list_size, header_size, signature_size = struct.unpack_from("<III", esl, 16)
    assert list_size == len(esl) == 28 + signature_size
    assert header_size == 0
    assert signature_size == 16 + len(ca_der)
    assert uuid.UUID(bytes_le=esl[28:44]) == efivar.DEFAULT_OWNER_GUID
    assert efivar.x509_certificates(esl) == [ca_der]
    assert esl[44:] == ca_der


def test_esl_without_a_ca(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no CA here"):
        certs.ca_signature_list(tmp_path)


# --- mutual TLS -----------------------------------------------------------------------------------------------

IPXE_CIPHERS = "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA256:AES128-SHA256"  # from ipxe.org/crypto


class TlsServer:
    """One-thread HTTPS-like server on 127.0.0.1 requiring a client certificate from the CA; answers the
    client certificate's SHA-1 fingerprint, as nginx computes $ssl_client_fingerprint."""

    def __init__(self, pki: Path, server_dir: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.maximum_version = ssl.TLSVersion.TLSv1_2  # what iPXE speaks
        self.context.set_ciphers(IPXE_CIPHERS)
        self.context.load_cert_chain(server_dir / "fullchain.pem", server_dir / "server.key.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(pki / certs.CA_CERT)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.errors: list[Exception] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    der = tls.getpeercert(binary_form=True)
                    assert der is not None
                    tls.sendall(hashlib.sha1(der).hexdigest().encode())
            except (ssl.SSLError, OSError) as exc:
                self.errors.append(exc)

    def fetch(self, client: ssl.SSLContext) -> str:
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw,
            client.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.recv(100).decode()

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (close alone does not, on Linux)
        self.sock.close()
        self.thread.join(5)
        assert not self.thread.is_alive()


def client_context(pki: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / certs.CA_CERT))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


def test_mutual_tls_accepts_issued_machines_and_refuses_others(pki: Path, tmp_path: Path) -> None:
    server = TlsServer(pki, certs.issue_server(pki, ["localhost", "127.0.0.1"], force=True))
    try:
        files = certs.MachineFiles.of(pki, "rpi-01")
        identity = certs.load_machine_identity(pki, "rpi-01")
        assert server.fetch(client_context(pki, files.cert_pem, files.key_pem)) == identity.fingerprint_sha1

        other = tmp_path / "other"
        certs.init_ca(other)
        certs.issue_machines(other, ["rpi-01"])  # same name, other CA
        stranger = certs.MachineFiles.of(other, "rpi-01")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            server.fetch(client_context(pki, stranger.cert_pem, stranger.key_pem))
        with pytest.raises((ssl.SSLError, ConnectionError)):
            server.fetch(client_context(pki))  # no certificate at all
    finally:
        server.close()
    assert any("certificate" in str(e).lower() for e in server.errors)


def test_server_certificate_chain_ends_with_the_root(pki: Path) -> None:
    out = certs.issue_server(pki, ["boot.example.com", "10.0.0.1"], force=True)
    chain = x509.load_pem_x509_certificates((out / "fullchain.pem").read_bytes())
    root = x509.load_pem_x509_certificate((pki / certs.CA_CERT).read_bytes())
    assert len(chain) == 2 and chain[1] == root
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["boot.example.com"]
    assert mode(out / "server.key.pem") == 0o600
    assert "OK" in openssl("verify", "-CAfile", str(pki / certs.CA_CERT), "-purpose", "sslserver", str(out / "server.crt.pem"))
    with pytest.raises(InputError, match="already there"):
        certs.issue_server(pki, ["boot.example.com"])
    with pytest.raises(InputError, match="not a host name"):
        certs.issue_server(pki, ["bad host"], force=True)


def test_valid_from_1970_for_machines_without_a_clock(tmp_path: Path) -> None:
    """iPXE under U-Boot checks the server's chain against a clock reading 1970."""
    import datetime as dt
    import subprocess
    import sys

    def certs_cli(*args: str) -> None:
        assert subprocess.run([sys.executable, "-m", "boot2ipxe", "certs", *args], capture_output=True).returncode == 0

    pki, plain = tmp_path / "pki", tmp_path / "plain"
    certs_cli("init", str(pki), "--valid-from-1970")
    certs_cli("server", str(pki), "10.0.2.2", "--valid-from-1970")
    certs_cli("init", str(plain))
    certs_cli("server", str(plain), "10.0.2.2")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    for pem in (pki / "ca.crt.pem", pki / "servers/10.0.2.2/server.crt.pem"):
        cert = x509.load_pem_x509_certificate(pem.read_bytes())
        assert cert.not_valid_before_utc == epoch
        assert cert.not_valid_after_utc > dt.datetime.now(dt.UTC)
    # openssl agrees the chain verifies at a 1970 clock (what iPXE sees under U-Boot)
    check = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            "3600",
            "-CAfile",
            str(pki / "ca.crt.pem"),
            str(pki / "servers/10.0.2.2/server.crt.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    refused = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            "3600",
            "-CAfile",
            str(plain / "ca.crt.pem"),
            str(plain / "servers/10.0.2.2/server.crt.pem"),
        ],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0 and "not yet valid" in refused.stdout + refused.stderr
