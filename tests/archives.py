"""Builders for synthetic archives in tests: tar (any compression), .deb (ar + data.tar.*) and zip."""

from __future__ import annotations

import io
import tarfile
import zipfile
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE  # SYMTYPE, LNKTYPE, CHRTYPE, FIFOTYPE, DIRTYPE
    linkname: str = ""


def tar_bytes(entries: list[Entry], compression: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tf:  # type: ignore[call-overload]
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.type
            info.linkname = entry.linkname
            info.size = len(entry.data) if entry.type == tarfile.REGTYPE else 0
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(entry.data) if info.size else None)
    return buffer.getvalue()


def ar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    return bytes(out)


def deb_bytes(entries: list[Entry], compression: str = "xz") -> bytes:
    control = tar_bytes([Entry("./control", b"Package: test\n")], "gz")
    data_name = "data.tar" + (f".{compression}" if compression else "")
    return ar_bytes([("debian-binary", b"2.0\n"), ("control.tar.gz", control), (data_name, tar_bytes(entries, compression))])


def zip_bytes(entries: list[tuple[str, bytes, int]]) -> bytes:
    """(name, data, unix mode) per member; mode 0o120777 makes a symbolic link whose data is the target."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()
