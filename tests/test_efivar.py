"""U-Boot's ubootefi.var format: bytes built by hand from the documented layout, files U-Boot itself wrote, round
trips, and hostile input.

Layout (U-Boot include/efi_variable.h), little-endian: header ``<QQII`` reserved, magic, length, crc32 (zlib) of
bytes 24..end; entries ``<IIQ16s`` data length, attributes, time, GUID (mixed-endian) + UTF-16LE name + NUL16 +
data, each padded to 8 bytes.
"""

from __future__ import annotations

import struct
import time
import uuid
import zlib
from pathlib import Path

import pytest

from boot2ipxe.formats import efivar
from boot2ipxe.formats.efivar import Variable, VariableFileError

GOLDEN = Path(__file__).parent / "golden" / "efivar"
MAGIC = 0x0161566966456255
GLOBAL = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
TLS_GUID = uuid.UUID("fd2340d0-3dab-4349-a6c7-3b4f12b48eae")
X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
OWNER = uuid.UUID("5f1a5b0e-7f4b-4b9e-9b2a-62b2e7a1c0de")


def fake_der(payload_size: int, fill: int = 0x41) -> bytes:
    """A DER SEQUENCE of the given content size (long-form length), enough for the TLV check."""
    body = bytes([fill]) * payload_size
    if payload_size < 0x80:
        return b"\x30" + bytes([payload_size]) + body
    n = payload_size.to_bytes((payload_size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(n)]) + n + body


CA1 = fake_der(300, 0x11)
CA2 = fake_der(1021, 0x22)


def entry(name: str, guid: uuid.UUID, attributes: int, data: bytes, time_: int = 0, pad: bytes | None = None) -> bytes:
    raw = struct.pack("<IIQ", len(data), attributes, time_) + guid.bytes_le + name.encode("utf-16-le") + b"\0\0" + data
    padding = (-len(raw)) % 8
    return raw + (bytes(padding) if pad is None else pad[:padding].ljust(padding, b"\0"))


def wrap(body: bytes, *, length: int | None = None, crc: int | None = None, magic: int = MAGIC, reserved: int = 0) -> bytes:
    length = 24 + len(body) if length is None else length
    crc = zlib.crc32(body) if crc is None else crc
    return struct.pack("<QQII", reserved, magic, length, crc) + body


def esl(der: bytes, owner: uuid.UUID = OWNER) -> bytes:
    return X509_GUID.bytes_le + struct.pack("<III", 28 + 16 + len(der), 0, 16 + len(der)) + owner.bytes_le + der


# --- the format, against bytes built by hand -------------------------------------------------------------------


def test_tls_ca_certificate_file_matches_hand_built_bytes() -> None:
    expected = wrap(entry("TlsCaCertificate", TLS_GUID, 0x7, esl(CA1)))
    assert efivar.serialize([efivar.tls_ca_certificate([CA1])]) == expected
    assert len(expected) % 8 == 0
    assert expected[:8] == bytes(8) and expected[8:16] == b"UbEfiVa\x01"


def test_entry_layout_offsets() -> None:
    data = efivar.serialize([Variable("Ab", GLOBAL, 0x7, b"xyz")])
    # header 24; entry: length 3 @24, attributes @28, time @32, GUID @40, name "Ab\0" @56..62, data @62..65, pad to 72
    assert len(data) == 72
    assert struct.unpack_from("<IIQ", data, 24) == (3, 7, 0)
    assert data[40:56] == GLOBAL.bytes_le == bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")
    assert data[56:62] == "Ab\0".encode("utf-16-le") and data[62:65] == b"xyz" and data[65:72] == bytes(7)
    assert struct.unpack_from("<I", data, 16)[0] == 72
    assert struct.unpack_from("<I", data, 20)[0] == zlib.crc32(data[24:])


def test_entries_start_on_8_byte_boundaries_for_every_name_and_data_length() -> None:
    for name_len in range(1, 6):
        for data_len in range(1, 17):
            variables = [Variable("N" * name_len, GLOBAL, 0x7, b"d" * data_len), Variable("second", GLOBAL, 0x3, b"s")]
            data = efivar.serialize(variables)
            first = 32 + 2 * (name_len + 1) + data_len
            second_at = 24 + first + (-first) % 8
            assert struct.unpack_from("<I", data, second_at)[0] == 1  # the second entry's data length
            assert efivar.parse(data, zero_padding=True) == variables


def test_empty_store_is_just_the_header() -> None:
    assert efivar.serialize([]) == wrap(b"") == struct.pack("<QQII", 0, MAGIC, 24, 0)
    assert efivar.parse(wrap(b"")) == []


def test_tls_ca_certificate_holds_one_signature_list_per_certificate() -> None:
    var = efivar.tls_ca_certificate([CA1, CA2])
    assert (var.name, var.guid, var.attributes, var.time) == ("TlsCaCertificate", TLS_GUID, 0x7, 0)
    assert var.data == esl(CA1) + esl(CA2)
    assert struct.unpack_from("<III", var.data, 16) == (28 + 16 + len(CA1), 0, 16 + len(CA1))
    assert efivar.x509_certificates(var.data) == [CA1, CA2]
    other_owner = uuid.UUID("00000000-0000-4000-8000-000000000001")
    assert efivar.tls_ca_certificate([CA1], other_owner).data == esl(CA1, other_owner)


def test_time_and_other_attributes_are_written_as_given() -> None:
    when = 1_700_000_000
    var = Variable("db", uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f"), 0x27, b"\x01", when)
    assert efivar.serialize([var]) == wrap(entry("db", var.guid, 0x27, b"\x01", when))
    assert efivar.parse(efivar.serialize([var])) == [var]


def test_names_are_utf16_code_units_and_round_trip() -> None:
    # U+0100 U+0001 encodes as 00 01 01 00: a zero pair at an odd offset is not the terminator.
    for name in ["\u0100\u0001", "Café", "\U0001f600", "\ud800"]:
        var = Variable(name, GLOBAL, 0x7, b"v")
        assert efivar.parse(efivar.serialize([var])) == [var]


# --- files U-Boot wrote (Debian u-boot-qemu 2025.01-3+deb13u1, qemu_arm64) ---------------------------------------


def test_uboot_first_boot_file_is_byte_identical_to_serialize_of_its_variables() -> None:
    written = (GOLDEN / "uboot-2025.01-first-boot.var").read_bytes()
    variables = efivar.parse(written, zero_padding=True)
    assert [(v.name, v.guid, v.attributes, v.time, len(v.data)) for v in variables] == [
        ("TlsCaCertificate", TLS_GUID, 0x7, 0, 1077),
        ("Boot0000", GLOBAL, 0x7, 0, 128),
        ("BootOrder", GLOBAL, 0x7, 0, 2),
        ("PlatformLang", GLOBAL, 0x7, 0, 6),
    ]
    assert variables[2].data == b"\0\0" and variables[3].data == b"en-US\0"
    assert efivar.serialize(variables) == written
    ours = (GOLDEN / "boot2ipxe-tlsca-only.var").read_bytes()
    assert efivar.parse(ours) == variables[:1]  # U-Boot kept our variable first, unchanged


def test_uboot_can_leave_stale_bytes_in_padding() -> None:
    """After `setenv -e -bs -rt Vola ZZZ…` (volatile) then `setenv -e -nv -bs -rt Nvar x` in U-Boot's shell."""
    written = (GOLDEN / "uboot-2025.01-stale-padding.var").read_bytes()
    variables = efivar.parse(written)
    assert variables[-1] == Variable("Nvar", GLOBAL, 0x7, b"x")
    assert written[-5:] == b"ZZZZZ"
    with pytest.raises(VariableFileError, match=r"offset 0x5eb: variable Nvar: padding bytes after the data are not zero"):
        efivar.parse(written, zero_padding=True)
    ours = efivar.serialize(variables)
    assert ours[24:-5] == written[24:-5] and ours[-5:] == bytes(5)


def test_merge_into_uboots_file_replaces_the_ca_in_place() -> None:
    written = efivar.parse((GOLDEN / "uboot-2025.01-first-boot.var").read_bytes())
    merged = efivar.merge(written, [efivar.tls_ca_certificate([CA1, CA2])])
    assert [v.name for v in merged] == ["TlsCaCertificate", "Boot0000", "BootOrder", "PlatformLang"]
    assert merged[0].data == esl(CA1) + esl(CA2) and merged[1:] == written[1:]


# --- round trips and merge -------------------------------------------------------------------------------------


def test_round_trip() -> None:
    variables = [
        efivar.tls_ca_certificate([CA1]),
        Variable("BootOrder", GLOBAL, 0x7, b"\0\0"),
        Variable("Bs", GLOBAL, 0x3, b"x" * 13),
        Variable("Hr", GLOBAL, 0xF, b"y"),
        Variable("Ro", GLOBAL, 0x80000007, b"z"),
    ]
    data = efivar.serialize(variables)
    assert efivar.parse(data, zero_padding=True) == variables
    assert efivar.serialize(efivar.parse(data)) == data


def test_merge_replaces_keeps_order_and_appends() -> None:
    a, b, c = (Variable(n, GLOBAL, 0x7, n.encode()) for n in "abc")
    b2, d = Variable("b", GLOBAL, 0x7, b"new"), Variable("d", GLOBAL, 0x7, b"d")
    other_vendor_b = Variable("b", TLS_GUID, 0x7, b"vendor")
    assert efivar.merge([a, b, c], [d, b2]) == [a, b2, c, d]
    assert efivar.merge([a, b, c], [other_vendor_b]) == [a, b, c, other_vendor_b]
    assert efivar.merge([], [a]) == [a]
    with pytest.raises(VariableFileError, match="given twice"):
        efivar.merge([a], [b, b2])


def test_serialize_refuses_duplicates_and_oversize() -> None:
    v = Variable("a", GLOBAL, 0x7, b"1")
    with pytest.raises(VariableFileError, match="given twice; U-Boot would load the first only"):
        efivar.serialize([v, Variable("a", GLOBAL, 0x7, b"2")])
    big = Variable("big", GLOBAL, 0x7, bytes(131072 - 24 - 32 - 8))  # exactly the limit
    assert len(efivar.serialize([big])) == 131072
    with pytest.raises(VariableFileError, match="131080 bytes, more than the 131072 U-Boot reads"):
        efivar.serialize([Variable("big", GLOBAL, 0x7, bytes(131072 - 24 - 32 - 8 + 1))])
    assert len(efivar.parse(efivar.serialize([big]))[0].data) == 131072 - 64


def test_uboot_ignores() -> None:
    assert efivar.uboot_ignores(efivar.tls_ca_certificate([CA1])) is None
    assert "secure-boot" in (efivar.uboot_ignores(Variable("PK", GLOBAL, 0x27, b"k")) or "")
    assert efivar.uboot_ignores(Variable("PK", TLS_GUID, 0x7, b"k")) is None
    assert "MOK" in (efivar.uboot_ignores(Variable("MokList", efivar.SHIM_LOCK_GUID, 0x7, b"k")) or "")


# --- Variable validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        (0x6, "not NON_VOLATILE"),
        (0x1, "NON_VOLATILE without BOOTSERVICE_ACCESS"),
        (0x5, "NON_VOLATILE without BOOTSERVICE_ACCESS"),
        (0x47, "bits 0x40 are not stored"),
        (0x17, "bits 0x10 are not stored"),
        (0x87, "bits 0x80 are not stored"),
        (0x107, "bits 0x100 are not stored"),
        (0xB, "HARDWARE_ERROR_RECORD needs"),
        (1 << 32, "do not fit in 32 bits"),
        (-1, "do not fit in 32 bits"),
    ],
)
def test_bad_attributes_are_refused(attributes: int, problem: str) -> None:
    with pytest.raises(VariableFileError, match=problem):
        Variable("x", GLOBAL, attributes, b"v")
    if 0 <= attributes <= 0xFFFFFFFF:
        with pytest.raises(VariableFileError, match=rf"offset 0x1c: variable x: .*{problem}"):
            efivar.parse(wrap(entry("x", GLOBAL, attributes, b"v")))


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"name": ""}, "non-empty string without NUL"),
        ({"name": "a\0b"}, "non-empty string without NUL"),
        ({"guid": str(GLOBAL)}, "must be a uuid.UUID"),
        ({"data": b""}, "non-empty bytes"),
        ({"data": bytearray(b"x")}, "non-empty bytes"),
        ({"time": -1}, "does not fit in 64 bits"),
        ({"time": 1 << 64}, "does not fit in 64 bits"),
    ],
)
def test_bad_variables_are_refused(kwargs: dict[str, object], problem: str) -> None:
    args: dict[str, object] = {"name": "x", "guid": GLOBAL, "attributes": 7, "data": b"v", "time": 0} | kwargs
    with pytest.raises(VariableFileError, match=problem):
        Variable(**args)  # type: ignore[arg-type]


def test_errors_are_value_errors_with_an_offset() -> None:
    with pytest.raises(ValueError, match=r"^ubootefi\.var: offset 0x14: CRC-32") as info:
        efivar.parse(wrap(entry("x", GLOBAL, 7, b"v"), crc=1))
    assert isinstance(info.value, VariableFileError) and info.value.offset == 20


# --- hostile input ---------------------------------------------------------------------------------------------


GOOD = wrap(entry("TlsCaCertificate", TLS_GUID, 0x7, esl(CA1)) + entry("BootOrder", GLOBAL, 0x7, b"\0\0"))


def test_every_truncation_is_refused() -> None:
    for size in range(len(GOOD)):
        with pytest.raises(VariableFileError):
            efivar.parse(GOOD[:size])


def test_every_single_bit_flip_is_refused() -> None:
    for offset in range(len(GOOD)):
        for bit in (0x01, 0x80):
            damaged = bytearray(GOOD)
            damaged[offset] ^= bit
            with pytest.raises(VariableFileError):
                efivar.parse(bytes(damaged))


@pytest.mark.parametrize(
    ("data", "offset", "problem"),
    [
        (b"", 0, "truncated: 0 bytes"),
        (GOOD[:23], 0, "shorter than the 24-byte header"),
        (wrap(b"", magic=MAGIC + 1), 8, "bad magic"),
        (wrap(b"", reserved=1), 0, "reserved field is 0x1"),
        (wrap(b"", length=32), 16, "header says 32 bytes, the file has 24"),
        (wrap(b"", length=16), 16, "header says 16 bytes"),
        (wrap(b"\0" * 8, length=24), 16, "header says 24 bytes, the file has 32"),
        (wrap(b"", crc=0xDEADBEEF), 20, "CRC-32 0xdeadbeef in the header, 0x00000000 computed"),
        (GOOD + bytes(8), 16, "the file has"),
        (wrap(bytes(8)), 24, "truncated entry: 8 bytes left"),
        (wrap(entry("x", GLOBAL, 7, b"v")[:31]), 24, "truncated entry"),
        (wrap(struct.pack("<IIQ", 1, 7, 0) + GLOBAL.bytes_le + "abc".encode("utf-16-le")), 56, "not terminated"),
        (wrap(struct.pack("<IIQ", 1, 7, 0) + GLOBAL.bytes_le + b"a\0\0"), 56, "not terminated"),  # odd zero pair
        (wrap(struct.pack("<IIQ", 1, 7, 0) + GLOBAL.bytes_le + b"\0\0v" + bytes(5)), 56, "empty variable name"),
        (wrap(struct.pack("<IIQ", 0xFFFFFFFF, 7, 0) + GLOBAL.bytes_le + b"x\0\0\0" + bytes(4)), 24, "runs 4294967291 bytes past"),
        (wrap(struct.pack("<IIQ", 9, 7, 0) + GLOBAL.bytes_le + b"x\0\0\0" + bytes(8)), 24, "runs 1 bytes past"),
        (wrap(struct.pack("<IIQ", 1, 7, 0) + GLOBAL.bytes_le + b"x\0\0\0v"), 61, "padding to the 8-byte boundary runs past"),
        (wrap(entry("x", GLOBAL, 7, b"")), 24, "empty data"),
        (wrap(entry("x", GLOBAL, 7, b"v") * 2), 64, "variable x .* appears again"),
    ],
)
def test_hostile_files_are_refused_with_offset(data: bytes, offset: int, problem: str) -> None:
    with pytest.raises(VariableFileError, match=problem) as info:
        efivar.parse(data)
    assert info.value.offset == offset, str(info.value)
    assert f"offset {offset:#x}:" in str(info.value)


def test_non_zero_padding_only_when_asked() -> None:
    data = wrap(entry("x", GLOBAL, 7, b"v", pad=b"\x01" * 8))
    assert efivar.parse(data) == [Variable("x", GLOBAL, 7, b"v")]
    with pytest.raises(VariableFileError, match=r"offset 0x3d: variable x: padding bytes after the data are not zero"):
        efivar.parse(data, zero_padding=True)


def test_size_limit_applies_before_anything_else() -> None:
    with pytest.raises(VariableFileError, match="131073 bytes, more than the 131072 U-Boot reads") as info:
        efivar.parse(bytes(131073))
    assert info.value.offset == 0
    small = wrap(entry("x", GLOBAL, 7, b"v"))
    with pytest.raises(VariableFileError, match="more than the 40 U-Boot reads"):
        efivar.parse(small, max_size=40)


def test_worst_case_file_parses_in_bounded_time() -> None:
    many = [Variable(chr(0x4E00 + i), GLOBAL, 7, b"v") for i in range(3000)]  # 40 bytes each
    data = efivar.serialize(many)
    assert len(data) == 24 + 3000 * 40
    started = time.monotonic()
    assert len(efivar.parse(data)) == 3000
    # a name without terminator filling the whole limit fails after one scan
    endless = wrap(struct.pack("<IIQ", 1, 7, 0) + GLOBAL.bytes_le + b"a\0" * ((131072 - 24 - 32) // 2))
    with pytest.raises(VariableFileError, match="not terminated"):
        efivar.parse(endless)
    assert time.monotonic() - started < 2


# --- signature lists -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("der", "problem"),
    [
        (b"-----BEGIN CERTIFICATE-----\nMIIB\n", "no ASN.1 SEQUENCE at the start; PEM given"),
        (b"", "no ASN.1 SEQUENCE"),
        (CA1[:-1], "ASN.1 length says"),
        (CA1 + b"\0", "ASN.1 length says"),
        (b"\x30\x85" + bytes(5), "bad ASN.1 length"),
        (b"\x30\x82\x01", "bad ASN.1 length"),
    ],
)
def test_signature_list_wants_one_der_certificate(der: bytes, problem: str) -> None:
    with pytest.raises(VariableFileError, match=problem):
        efivar.signature_list(der)


def test_tls_ca_certificate_needs_a_certificate() -> None:
    with pytest.raises(VariableFileError, match="no certificate given"):
        efivar.tls_ca_certificate([])


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (esl(CA1)[:27], "truncated header"),
        (uuid.UUID(int=1).bytes_le + esl(CA1)[16:], "not X.509"),
        (esl(CA1)[:16] + struct.pack("<III", 27, 0, 16 + len(CA1)) + esl(CA1)[28:], "does not fit"),
        (esl(CA1)[:16] + struct.pack("<III", 28 + 17 + len(CA1), 0, 16 + len(CA1)) + esl(CA1)[28:], "does not fit"),
        (esl(CA1)[:16] + struct.pack("<III", 28 + 16 + len(CA1), 0, 16) + esl(CA1)[28:], "signature size 16"),
        (esl(CA1)[:16] + struct.pack("<III", 28 + 16 + len(CA1), 0, 15 + len(CA1)) + esl(CA1)[28:], "does not divide"),
    ],
)
def test_bad_signature_lists_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(VariableFileError, match=rf"^EFI signature list: offset 0x0: .*{problem}"):
        efivar.x509_certificates(data)


def test_bad_certificate_in_a_signature_list_is_located() -> None:
    bad = esl(CA1)[:-1]  # the list size says one byte more than there is
    with pytest.raises(VariableFileError, match="does not fit"):
        efivar.x509_certificates(bad)
    not_der = b"\x31" + CA1[1:]
    with pytest.raises(VariableFileError, match=r"^EFI signature list: offset 0x(\w+): not a DER certificate") as info:
        efivar.x509_certificates(esl(CA2) + esl(not_der))
    assert info.value.offset == len(esl(CA2)) + 44


def test_golden_ca_is_the_one_in_the_file() -> None:
    import base64

    pem = (GOLDEN / "ca.crt.pem").read_text()
    der = base64.b64decode("".join(line for line in pem.splitlines() if not line.startswith("-----")))
    written = efivar.parse((GOLDEN / "uboot-2025.01-first-boot.var").read_bytes())
    assert efivar.x509_certificates(written[0].data) == [der]
    assert written[0] == efivar.tls_ca_certificate([der])
