"""inspect on things that are not disk images: one line, exit 2."""

from __future__ import annotations

from pathlib import Path

from images import boot2ipxe


def test_missing_image(tmp_path: Path) -> None:
    result = boot2ipxe("inspect", str(tmp_path / "nope.img"), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"{tmp_path / 'nope.img'}: no such image file"]


def test_not_a_disk_image(tmp_path: Path) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"\x00" * 1024 * 1024)
    result = boot2ipxe("inspect", str(junk), check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{junk}: no partition table found (not a disk image?)")
    assert "Traceback" not in result.stderr


def test_image_without_b2c_cache_is_a_finding(tmp_path: Path) -> None:
    import subprocess

    image = tmp_path / "bare.img"
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["sfdisk", "-q", str(image)], input=b"label: dos\nstart=2048, type=83\n", check=True)
    result = boot2ipxe("inspect", "--check", "--json", str(image), check=False)
    assert result.returncode == 1
    assert "no B2C_CACHE partition" in result.stdout
