"""U-Boot's file of non-volatile UEFI variables, ``ubootefi.var``: reader, writer, and the ``TlsCaCertificate``
variable that makes iPXE trust a CA.

U-Boot built with ``CONFIG_EFI_VARIABLE_FILE_STORE`` (the default; Debian's qemu_arm64, rpi_arm64, rpi_3 and
rpi_4 builds have it) loads ``/ubootefi.var`` from the first EFI system partition it finds (MBR type ``0xef`` or
the GPT ESP type) when its EFI subsystem starts, and rewrites the whole file each time it sets a non-volatile
variable (at the first boot: ``Boot0000``, ``BootOrder``, ``PlatformLang``), so that partition must be a writable
FAT. Format (U-Boot ``include/efi_variable.h``, ``lib/efi_loader/efi_var_file.c``, ``efi_var_common.c``), all
little-endian:

- header, 24 bytes: u64 reserved = 0, u64 magic ``0x0161566966456255`` ("UbEfiVa" version 1), u32 length of the
  whole file including the header (U-Boot rejects the file unless it equals the number of bytes read), u32 CRC-32
  (zlib's) of everything after the header;
- entries, each starting at an 8-byte boundary: u32 data length, u32 attributes, u64 time (seconds since the
  epoch, set only for time-based authenticated variables), the vendor GUID (16 bytes, EFI's mixed-endian layout,
  :attr:`uuid.UUID.bytes_le`), the name in UTF-16LE ending with a 16-bit zero, the data, then padding up to the
  next multiple of 8: zeros as this module writes it; U-Boot can leave stale bytes there (see :func:`parse`).

U-Boot reads at most ``CONFIG_EFI_VAR_BUF_SIZE`` bytes (131072, the default: Debian's qemu_arm64 reports that
size; the upstream rpi defconfigs keep the default too): a longer file is cut short and refused. Its in-memory
store (file plus volatile variables) has the same size, so keep the file well below it (U-Boot's own variables
took about 900 bytes of it on qemu_arm64). When loading, it skips variables without the NON_VOLATILE attribute,
empty ones, the secure-boot variables (PK, KEK, db, dbx, dbt, dbr, AuditMode, DeployedMode), Shim's MOK
variables, and a second entry with the same name and GUID; see :func:`uboot_ignores`. It writes variables in the
order of its in-memory store: load order, then creation order, a variable that is set again moving to the end.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

FILE_NAME = "ubootefi.var"
MAGIC = 0x0161566966456255
HEADER = struct.Struct("<QQII")  # reserved, magic, length, crc32
ENTRY = struct.Struct("<IIQ16s")  # data length, attributes, time, vendor GUID; the name follows
ALIGNMENT = 8
MAX_FILE_SIZE = 131072  # U-Boot's CONFIG_EFI_VAR_BUF_SIZE default

NON_VOLATILE = 0x00000001
BOOTSERVICE_ACCESS = 0x00000002
RUNTIME_ACCESS = 0x00000004
HARDWARE_ERROR_RECORD = 0x00000008
AUTHENTICATED_WRITE_ACCESS = 0x00000010  # deprecated; U-Boot refuses it
TIME_BASED_AUTHENTICATED_WRITE_ACCESS = 0x00000020
APPEND_WRITE = 0x00000040  # a SetVariable() operation, never stored
ENHANCED_AUTHENTICATED_ACCESS = 0x00000080  # U-Boot refuses it
READ_ONLY = 0x80000000  # U-Boot's own flag (include/efi_variable.h)
NV_BS_RT = NON_VOLATILE | BOOTSERVICE_ACCESS | RUNTIME_ACCESS
STORABLE_ATTRIBUTES = NV_BS_RT | HARDWARE_ERROR_RECORD | TIME_BASED_AUTHENTICATED_WRITE_ACCESS | READ_ONLY

EFI_GLOBAL_VARIABLE_GUID = uuid.UUID("8be4df61-93ca-11d2-aa0d-00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE_GUID = uuid.UUID("d719b2cb-3d3a-4596-a3bc-dad00e67656f")
SHIM_LOCK_GUID = uuid.UUID("605dab50-e046-4300-abb6-3dd810dd8b23")
TLS_CA_CERTIFICATE = "TlsCaCertificate"
EFI_TLS_CA_CERTIFICATE_GUID = uuid.UUID("fd2340d0-3dab-4349-a6c7-3b4f12b48eae")
EFI_CERT_X509_GUID = uuid.UUID("a5c059a1-94e4-4aa7-87b5-ab155c2bf072")
# SignatureOwner of the signature lists boot2ipxe writes.
DEFAULT_OWNER_GUID = uuid.UUID("5f1a5b0e-7f4b-4b9e-9b2a-62b2e7a1c0de")
ESL_SOURCE = "EFI signature list"
ESL_HEADER = struct.Struct("<16sIII")  # SignatureType, SignatureListSize, SignatureHeaderSize, SignatureSize

# Variables U-Boot never loads from the file (efi_var_restore with safe=false): the secure-boot ones.
_AUTHENTICATED = {
    ("PK", EFI_GLOBAL_VARIABLE_GUID),
    ("KEK", EFI_GLOBAL_VARIABLE_GUID),
    ("db", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("dbx", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("dbt", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("dbr", EFI_IMAGE_SECURITY_DATABASE_GUID),
    ("AuditMode", EFI_GLOBAL_VARIABLE_GUID),
    ("DeployedMode", EFI_GLOBAL_VARIABLE_GUID),
}


class VariableFileError(ValueError):
    """A malformed variable file, variable or signature list; ``offset`` is the byte offset in ``source`` (the
    file, unless said otherwise), when there is one."""

    def __init__(self, problem: str, offset: int | None = None, source: str = FILE_NAME) -> None:
        self.problem = problem
        self.offset = offset
        self.source = source
        super().__init__(f"{source}: offset {offset:#x}: {problem}" if offset is not None else f"{source}: {problem}")


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) & ~(ALIGNMENT - 1)


def _encode_name(name: str) -> bytes:
    # surrogatepass: names are sequences of 16-bit units; any a file holds must round-trip.
    return name.encode("utf-16-le", "surrogatepass") + b"\0\0"


def attribute_problem(attributes: int) -> str | None:
    """Why U-Boot would not store or load a variable with these attributes (its setvariable_allowed() rules plus
    the file's: non-volatile, no APPEND_WRITE), or None."""
    if not 0 <= attributes <= 0xFFFFFFFF:
        return f"attributes {attributes:#x} do not fit in 32 bits"
    unknown = attributes & ~STORABLE_ATTRIBUTES
    if unknown:
        return f"attributes {attributes:#010x}: bits {unknown:#x} are not stored by U-Boot (unknown, append or unsupported)"
    if not attributes & NON_VOLATILE:
        return f"attributes {attributes:#010x}: not NON_VOLATILE (0x1); U-Boot skips such entries"
    if not attributes & BOOTSERVICE_ACCESS:
        return f"attributes {attributes:#010x}: NON_VOLATILE without BOOTSERVICE_ACCESS (0x2) is invalid"
    if attributes & HARDWARE_ERROR_RECORD and attributes & NV_BS_RT != NV_BS_RT:
        return f"attributes {attributes:#010x}: HARDWARE_ERROR_RECORD needs NON_VOLATILE, BOOTSERVICE and RUNTIME access"
    return None


@dataclass(frozen=True)
class Variable:
    """One non-volatile UEFI variable as U-Boot stores it."""

    name: str
    guid: uuid.UUID
    attributes: int
    data: bytes
    time: int = 0  # seconds since the epoch; U-Boot sets it only with TIME_BASED_AUTHENTICATED_WRITE_ACCESS

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "\0" in self.name:
            raise VariableFileError(f"variable name {self.name!r}: must be a non-empty string without NUL")
        if not isinstance(self.guid, uuid.UUID):
            raise VariableFileError(f"variable {self.name}: the vendor GUID must be a uuid.UUID")
        problem = attribute_problem(self.attributes)
        if problem:
            raise VariableFileError(f"variable {self.name}: {problem}")
        if not isinstance(self.data, bytes) or not self.data:
            raise VariableFileError(f"variable {self.name}: data must be non-empty bytes (U-Boot skips empty entries)")
        if not 0 <= self.time < 1 << 64:
            raise VariableFileError(f"variable {self.name}: time {self.time} does not fit in 64 bits")

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return (self.name, self.guid)

    def entry(self) -> bytes:
        """This variable as one file entry, padded with zeros to the next 8-byte boundary."""
        body = ENTRY.pack(len(self.data), self.attributes, self.time, self.guid.bytes_le) + _encode_name(self.name) + self.data
        return body + bytes(_align(len(body)) - len(body))


def uboot_ignores(variable: Variable) -> str | None:
    """Why U-Boot would skip this variable when loading the file (efi_var_restore), or None if it loads it."""
    if variable.key in _AUTHENTICATED:
        return f"{variable.name} is a secure-boot variable: U-Boot loads it only from its built-in preseed"
    if variable.guid == SHIM_LOCK_GUID:
        return f"{variable.name} has Shim's MOK GUID: U-Boot does not load those from the file"
    return None


def serialize(variables: Iterable[Variable], *, max_size: int = MAX_FILE_SIZE) -> bytes:
    """The file U-Boot would write for these variables, in this order (zero padding, as efi_var_collect())."""
    seen: set[tuple[str, uuid.UUID]] = set()
    entries = []
    for variable in variables:
        if variable.key in seen:
            raise VariableFileError(f"variable {variable.name} ({variable.guid}) given twice; U-Boot would load the first only")
        seen.add(variable.key)
        entries.append(variable.entry())
    body = b"".join(entries)
    length = HEADER.size + len(body)
    if length > max_size:
        raise VariableFileError(f"{length} bytes, more than the {max_size} U-Boot reads (CONFIG_EFI_VAR_BUF_SIZE)")
    return HEADER.pack(0, MAGIC, length, zlib.crc32(body)) + body


def parse(data: bytes, *, max_size: int = MAX_FILE_SIZE, zero_padding: bool = False) -> list[Variable]:
    """The variables of a file; raises VariableFileError naming the offset and the problem. Work and memory are
    linear in ``len(data)``, which must not exceed ``max_size``.

    The padding after each entry must lie within the file, but its bytes are not checked unless
    ``zero_padding``: U-Boot ignores them, and its own writer can leave stale bytes there (efi_var_collect()
    builds the file in one buffer, writing each variable where a skipped volatile one was; seen with Debian's
    2025.01). Use ``zero_padding=True`` for files that must be exactly as :func:`serialize` writes them."""
    size = len(data)
    if size > max_size:
        raise VariableFileError(f"{size} bytes, more than the {max_size} U-Boot reads (CONFIG_EFI_VAR_BUF_SIZE)", 0)
    if size < HEADER.size:
        raise VariableFileError(f"truncated: {size} bytes, shorter than the {HEADER.size}-byte header", 0)
    reserved, magic, length, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise VariableFileError(f"bad magic {magic:#018x}, expected {MAGIC:#018x}: not a U-Boot variable file", 8)
    if reserved:
        raise VariableFileError(f"reserved field is {reserved:#x}, must be 0 (U-Boot refuses the file)", 0)
    if length != size:
        raise VariableFileError(f"header says {length} bytes, the file has {size} (truncated or padded?)", 16)
    actual = zlib.crc32(memoryview(data)[HEADER.size :])
    if crc != actual:
        raise VariableFileError(f"CRC-32 {crc:#010x} in the header, {actual:#010x} computed: corrupted", 20)
    variables: list[Variable] = []
    seen: set[tuple[str, uuid.UUID]] = set()
    offset = HEADER.size
    while offset < size:
        variable, end = _parse_entry(data, offset, zero_padding)
        if variable.key in seen:
            raise VariableFileError(f"variable {variable.name} ({variable.guid}) appears again", offset)
        seen.add(variable.key)
        variables.append(variable)
        offset = end
    return variables


def _parse_entry(data: bytes, offset: int, zero_padding: bool) -> tuple[Variable, int]:
    size = len(data)
    if offset + ENTRY.size > size:
        raise VariableFileError(f"truncated entry: {size - offset} bytes left, an entry header takes {ENTRY.size}", offset)
    data_length, attributes, time, guid = ENTRY.unpack_from(data, offset)
    name_start = offset + ENTRY.size
    name_end = _name_terminator(data, name_start)
    if name_end < 0:
        raise VariableFileError("variable name not terminated by a 16-bit zero before the end of the file", name_start)
    if name_end == name_start:
        raise VariableFileError("empty variable name", name_start)
    name = data[name_start:name_end].decode("utf-16-le", "surrogatepass")
    data_start = name_end + 2
    data_end = data_start + data_length
    if data_end > size:
        raise VariableFileError(
            f"variable {name}: data of {data_length} bytes runs {data_end - size} bytes past the end of the file", offset
        )
    end = _align(data_end)
    if end > size:
        raise VariableFileError(f"variable {name}: padding to the 8-byte boundary runs past the end of the file", data_end)
    if zero_padding and any(data[data_end:end]):
        raise VariableFileError(f"variable {name}: padding bytes after the data are not zero", data_end)
    if not data_length:
        raise VariableFileError(f"variable {name}: empty data (U-Boot skips such entries)", offset)
    problem = attribute_problem(attributes)
    if problem:
        raise VariableFileError(f"variable {name}: {problem}", offset + 4)
    return Variable(name, uuid.UUID(bytes_le=guid), attributes, data[data_start:data_end], time), end


def _name_terminator(data: bytes, start: int) -> int:
    """Offset of the first 16-bit zero at or after ``start`` on a 2-byte step, or -1."""
    position = start
    while True:
        position = data.find(b"\0\0", position)
        if position < 0:
            return -1
        if (position - start) % 2 == 0:
            return position
        position += 1


def merge(existing: Iterable[Variable], new: Iterable[Variable]) -> list[Variable]:
    """``existing`` with each variable of ``new`` replacing the one of the same name and GUID in place, the
    others kept in order, and the variables of ``new`` not in ``existing`` appended in their order. (U-Boot itself
    moves a variable it sets again to the end; where it loads a variable from makes no difference to it.)"""
    replacements: dict[tuple[str, uuid.UUID], Variable] = {}
    for variable in new:
        if variable.key in replacements:
            raise VariableFileError(f"variable {variable.name} ({variable.guid}) given twice")
        replacements[variable.key] = variable
    merged = []
    for variable in existing:
        merged.append(replacements.pop(variable.key, variable))
    merged.extend(replacements.values())
    return merged


def _check_der_certificate(cert_der: bytes) -> None:
    """One DER SEQUENCE spanning the whole of ``cert_der`` (catches PEM text, truncation and trailing bytes)."""
    if len(cert_der) < 2 or cert_der[0] != 0x30:
        raise VariableFileError("not a DER certificate (no ASN.1 SEQUENCE at the start; PEM given?)")
    first = cert_der[1]
    if first < 0x80:
        header, length = 2, first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or len(cert_der) < 2 + count:
            raise VariableFileError("not a DER certificate (bad ASN.1 length)")
        header, length = 2 + count, int.from_bytes(cert_der[2 : 2 + count], "big")
    if header + length != len(cert_der):
        raise VariableFileError(f"not a DER certificate: its ASN.1 length says {header + length} bytes, it has {len(cert_der)}")


def signature_list(cert_der: bytes, owner: uuid.UUID = DEFAULT_OWNER_GUID) -> bytes:
    """One EFI_SIGNATURE_LIST (UEFI 2.10, 32.4.1) of type EFI_CERT_X509_GUID holding one DER certificate:
    header (type, list size = 28 + 16 + DER length, header size 0, signature size = 16 + DER length), then the
    owner GUID and the certificate."""
    _check_der_certificate(cert_der)
    signature_size = 16 + len(cert_der)
    return (
        ESL_HEADER.pack(EFI_CERT_X509_GUID.bytes_le, ESL_HEADER.size + signature_size, 0, signature_size)
        + owner.bytes_le
        + cert_der
    )


def tls_ca_certificate(certificates: Sequence[bytes], owner: uuid.UUID = DEFAULT_OWNER_GUID) -> Variable:
    """The ``TlsCaCertificate`` variable (NV|BS|RT) trusting each DER certificate, one signature list each, as
    EFI builds of iPXE read it (src/interface/efi/efi_cacert.c)."""
    if not certificates:
        raise VariableFileError("no certificate given for TlsCaCertificate")
    data = b"".join(signature_list(der, owner) for der in certificates)
    return Variable(TLS_CA_CERTIFICATE, EFI_TLS_CA_CERTIFICATE_GUID, NV_BS_RT, data)


def with_trust(existing: bytes | None, certificates: Sequence[bytes]) -> bytes:
    """A variable file trusting ``certificates``: ``existing`` (a file U-Boot or boot2ipxe wrote, or None) with its
    ``TlsCaCertificate`` replaced and every other variable kept as it was."""
    variables = parse(existing) if existing is not None else []
    return serialize(merge(variables, [tls_ca_certificate(certificates)]))


def trusted_certificates(data: bytes) -> list[bytes]:
    """The DER certificates a variable file makes iPXE trust (none when it has no ``TlsCaCertificate``)."""
    for variable in parse(data):
        if variable.key == (TLS_CA_CERTIFICATE, EFI_TLS_CA_CERTIFICATE_GUID):
            return x509_certificates(variable.data)
    return []


def x509_certificates(data: bytes) -> list[bytes]:
    """The DER certificates of a sequence of EFI_SIGNATURE_LISTs of X.509 type, such as ``TlsCaCertificate``'s
    data; raises VariableFileError (offsets relative to ``data``) on anything else."""
    certificates = []
    offset = 0
    while offset < len(data):
        if offset + ESL_HEADER.size > len(data):
            raise VariableFileError("truncated header", offset, ESL_SOURCE)
        kind, list_size, header_size, signature_size = ESL_HEADER.unpack_from(data, offset)
        if uuid.UUID(bytes_le=kind) != EFI_CERT_X509_GUID:
            raise VariableFileError(f"signature list of type {uuid.UUID(bytes_le=kind)}, not X.509", offset, ESL_SOURCE)
        body = list_size - ESL_HEADER.size - header_size
        if list_size < ESL_HEADER.size or offset + list_size > len(data) or body < 0:
            raise VariableFileError(f"signature list size {list_size} does not fit", offset, ESL_SOURCE)
        if signature_size <= 16 or body % signature_size:
            raise VariableFileError(
                f"signature size {signature_size} does not divide the list's {body} bytes", offset, ESL_SOURCE
            )
        start = offset + ESL_HEADER.size + header_size
        for position in range(start, start + body, signature_size):
            der = data[position + 16 : position + signature_size]
            try:
                _check_der_certificate(der)
            except VariableFileError as exc:
                raise VariableFileError(exc.problem, position + 16, ESL_SOURCE) from None
            certificates.append(der)
        offset += list_size
    return certificates
