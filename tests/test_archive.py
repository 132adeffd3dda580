"""archive.py: members out of .deb, .tar.* and .zip, streamed, with every refusal named."""

from __future__ import annotations

import hashlib
import random
import sys
import tarfile
from pathlib import Path

import pytest
from archives import Entry, deb_bytes, tar_bytes, zip_bytes

from boot2ipxe.fetch import archive
from boot2ipxe.fetch.archive import ArchiveError, extract

pytestmark = pytest.mark.timeout(60)

A = b"first member\n" * 1000
B = bytes(range(256)) * 50


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run(tmp_path: Path, data: bytes, wanted: list[str], max_size: int | None = None) -> archive.Extraction:
    source = tmp_path / "archive"
    source.write_bytes(data)
    names = [archive.member_name(w) for w in wanted]
    return extract(source, names, {n: tmp_path / f"out{i}" for i, n in enumerate(names)}, max_size)


@pytest.mark.parametrize("compression", ["xz", "gz", "bz2", ""])
def test_deb_several_members_in_one_pass(tmp_path: Path, compression: str) -> None:
    data = deb_bytes([Entry("./usr/"), Entry("./usr/lib/a.bin", A), Entry("usr/lib/b.bin", B)], compression)
    # Names match with or without "./", on either side.
    result = run(tmp_path, data, ["usr/lib/a.bin", "./usr/lib/b.bin"])
    assert result.problems == {}
    assert {n: (m.sha256, m.size) for n, m in result.found.items()} == {
        "usr/lib/a.bin": (sha(A), len(A)),
        "usr/lib/b.bin": (sha(B), len(B)),
    }
    assert result.found["usr/lib/a.bin"].path.read_bytes() == A


@pytest.mark.parametrize("compression", ["gz", "xz", "bz2", ""])
def test_plain_tar(tmp_path: Path, compression: str) -> None:
    result = run(tmp_path, tar_bytes([Entry("dir/a.bin", A)], compression), ["dir/a.bin"])
    assert result.found["dir/a.bin"].sha256 == sha(A)


def test_zip(tmp_path: Path) -> None:
    data = zip_bytes([("boot/a.bin", A, 0o100644), ("boot/link", b"a.bin", 0o120777)])
    result = run(tmp_path, data, ["boot/a.bin", "boot/link", "boot/none"])
    assert result.found["boot/a.bin"].sha256 == sha(A)
    assert result.problems["boot/link"] == "boot/link is a symbolic link to a.bin: extract that member instead"
    assert result.problems["boot/none"].startswith("no member boot/none in the archive")


def test_missing_member_suggests_a_close_name(tmp_path: Path) -> None:
    result = run(tmp_path, deb_bytes([Entry("./usr/lib/ipxe/ipxe-arm64.efi", A)]), ["usr/lib/ipxe/ipxe-arm46.efi"])
    assert result.problems == {
        "usr/lib/ipxe/ipxe-arm46.efi": "no member usr/lib/ipxe/ipxe-arm46.efi in the archive "
        "(did you mean usr/lib/ipxe/ipxe-arm64.efi?)"
    }


@pytest.mark.parametrize("bad", ["../etc/passwd", "./usr/../../x", "/etc/passwd"])
def test_dangerous_member_names_refuse_the_archive(tmp_path: Path, bad: str) -> None:
    for data in (deb_bytes([Entry(bad, A), Entry("usr/a", A)]), zip_bytes([(bad, A, 0o100644), ("usr/a", A, 0o100644)])):
        with pytest.raises(ArchiveError, match=r"has an absolute path or '\.\.': refusing the archive"):
            run(tmp_path, data, ["usr/a"])
    assert not (tmp_path / "out0").exists() or (tmp_path / "out0").stat().st_size == 0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            Entry("./usr/lib/ipxe/ipxe.efi", type=tarfile.SYMTYPE, linkname="ipxe-amd64.efi"),
            "usr/lib/ipxe/ipxe.efi is a symbolic link to ipxe-amd64.efi (usr/lib/ipxe/ipxe-amd64.efi in the archive): "
            "extract that member instead",
        ),
        (
            Entry("./usr/lib/ipxe/ipxe.efi", type=tarfile.LNKTYPE, linkname="./usr/lib/ipxe/real.efi"),
            "usr/lib/ipxe/ipxe.efi is a hard link to ./usr/lib/ipxe/real.efi: extract that member instead",
        ),
        (Entry("./usr/lib/ipxe/ipxe.efi", type=tarfile.CHRTYPE), "usr/lib/ipxe/ipxe.efi is a device file, not a regular file"),
        (Entry("./usr/lib/ipxe/ipxe.efi", type=tarfile.FIFOTYPE), "usr/lib/ipxe/ipxe.efi is a FIFO, not a regular file"),
        (Entry("./usr/lib/ipxe/ipxe.efi", type=tarfile.DIRTYPE), "usr/lib/ipxe/ipxe.efi is a directory, not a file"),
    ],
)
def test_wanted_member_must_be_a_regular_file(tmp_path: Path, entry: Entry, message: str) -> None:
    data = deb_bytes([Entry("./usr/lib/ipxe/real.efi", A), entry])
    result = run(tmp_path, data, ["usr/lib/ipxe/ipxe.efi"])
    assert result.found == {}
    assert result.problems == {"usr/lib/ipxe/ipxe.efi": message}


def test_member_over_the_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = deb_bytes([Entry("big", A), Entry("small", b"x")])
    result = run(tmp_path, data, ["big", "small"], max_size=1000)
    assert result.problems == {"big": "big is 12.7 KiB, over the 1000 B bound for archive members"}
    assert result.found["small"].size == 1
    monkeypatch.setattr(archive, "MAX_MEMBER_SIZE", 1000)  # the default bound is the module constant
    zipped = run(tmp_path, zip_bytes([("big", A, 0o100644)]), ["big"])
    assert zipped.problems == {"big": "big is 12.7 KiB, over the 1000 B bound for archive members"}


def test_not_an_archive_and_corrupt_ones(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"not a \.deb, tar or zip archive"):
        run(tmp_path, b"just some bytes" * 100, ["x"])
    good = deb_bytes([Entry("a", random.Random(1).randbytes(20000))])
    with pytest.raises(ArchiveError, match="corrupt or unreadable archive"):
        run(tmp_path, good[: len(good) - 1000] + b"\0" * 1000, ["zzz"])
    with pytest.raises(ArchiveError, match=r"no data\.tar member"):
        run(tmp_path, deb_bytes([Entry("a", A)])[:8] + b"", ["a"])


def test_zstd_needs_the_zstandard_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed
    data = b"!<arch>\n" + f"{'data.tar.zst':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{4:<10}`\n".encode() + b"\x28\xb5\x2f\xfd"
    with pytest.raises(ArchiveError, match=r"install the 'zstandard' Python package"):
        run(tmp_path, data, ["a"])


@pytest.mark.mirror
def test_real_debian_packages(tmp_path: Path, test_mirror_dir: Path) -> None:
    ipxe = test_mirror_dir / "pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb"
    wanted = ["usr/lib/ipxe/ipxe.efi", "usr/lib/ipxe/ipxe-amd64.efi"]
    result = extract(ipxe, wanted, {w: tmp_path / str(i) for i, w in enumerate(wanted)})
    assert result.problems["usr/lib/ipxe/ipxe.efi"].startswith("usr/lib/ipxe/ipxe.efi is a symbolic link to ipxe-amd64.efi")
    assert (
        result.found["usr/lib/ipxe/ipxe-amd64.efi"].sha256 == "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a"
    )

    import mirror

    qemu = test_mirror_dir / mirror.U_BOOT_QEMU
    result = extract(qemu, [mirror.U_BOOT_QEMU_MEMBER], {mirror.U_BOOT_QEMU_MEMBER: tmp_path / "u-boot.bin"})
    assert result.found[mirror.U_BOOT_QEMU_MEMBER].sha256 == mirror.U_BOOT_QEMU_MEMBER_SHA256
