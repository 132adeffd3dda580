"""The shipped specs fetched for real: Debian packages from the local test mirror over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mirror
import pytest
from servers import TestServer

from boot2ipxe.fetch.cache import Cache
from boot2ipxe.plan.validate import require_valid
from boot2ipxe.spec.mirrors import Mirrors

pytestmark = [pytest.mark.mirror, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = sorted((ROOT / "platforms").glob("*.yaml"))


def spec_of(path: Path, url: str) -> Any:
    spec = require_valid(path, Mirrors(cli={"debian": url}, environ={}, apt_paths=())).spec
    assert spec is not None
    return spec


def pool_gets(server: TestServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in server.gets():
        counts[request.path] = counts.get(request.path, 0) + 1
    return counts


@pytest.mark.parametrize("platform", PLATFORMS, ids=lambda p: p.stem)
def test_cold_then_warm(run_cli: Any, http_mirror: TestServer, tmp_path: Path, platform: Path) -> None:
    spec = spec_of(platform, http_mirror.url)
    args = ("fetch", platform, "--cache-dir", tmp_path / "c", "--mirror", f"debian={http_mirror.url}")
    cold = run_cli(*args)
    assert (cold.code, cold.err) == (0, "")
    cache = Cache(tmp_path / "c")
    for source in spec.sources.values():
        path = cache.lookup(source.sha256)
        assert path is not None and path.stat().st_size == source.size, source.id
    # Each package is downloaded once, however many members are taken from it (the rpi specs take 3-5 from
    # raspi-firmware); the fallbacks (the 93 MB kernel package) are never needed.
    gets = pool_gets(http_mirror)
    assert set(gets.values()) == {1}
    assert not any("linux-image" in p for p in gets)
    assert len(cold.out.splitlines()) == len(spec.sources) and all(": fetched (" in line for line in cold.out.splitlines())
    assert cache.leftovers() == []

    http_mirror.reset()
    warm = run_cli(*args)
    assert (warm.code, warm.err) == (0, "")
    assert http_mirror.gets() == []
    assert [line.split(": ")[2].split()[0] for line in warm.out.splitlines()] == ["cached"] * len(spec.sources)
    assert warm.out.replace(": cached (", ": fetched (") == cold.out  # same origins, remembered


def test_all_platforms_in_one_run(run_cli: Any, http_mirror: TestServer, tmp_path: Path) -> None:
    result = run_cli("fetch", *PLATFORMS, "--cache-dir", tmp_path / "c", "--mirror", f"debian={http_mirror.url}", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["ok"] and {b["status"] for b in report["blobs"]} == {"fetched"}
    by_id = {(Path(b["spec"]).stem, b["source"]): b for b in report["blobs"]}
    assert by_id["x86-uefi", "ipxe.efi"]["origin"] == (
        "${debian}/pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb (member usr/lib/ipxe/ipxe-amd64.efi)"
    )
    assert by_id["rpi3bp", "u-boot.bin"]["path"] == by_id["rpi4", "u-boot.bin"]["path"]
    assert set(pool_gets(http_mirror).values()) == {1}  # packages shared by specs: still one download each


def test_symlink_member_names_its_target(run_cli: Any, http_mirror: TestServer, make_spec: Any, tmp_path: Path) -> None:
    """Debian's ipxe.efi is a symlink to ipxe-amd64.efi: the error says which member to take instead."""
    ipxe = "${debian}/pool/main/i/ipxe/ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb"
    spec = make_spec(
        {
            "ipxe.efi": {
                "sha256": "6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a",
                "origins": [
                    {
                        "url": ipxe,
                        "archive-sha256": "eeaca79dbde0fb86c102bf1d362c6f6a67ed0ddab38b3dd12e1b332339f5dd99",
                        "extract": "usr/lib/ipxe/ipxe.efi",
                    }
                ],
            }
        }
    )
    result = run_cli("fetch", spec, "--cache-dir", tmp_path / "c", "--mirror", f"debian={http_mirror.url}")
    assert result.code == 1
    assert (
        "(member usr/lib/ipxe/ipxe.efi): usr/lib/ipxe/ipxe.efi is a symbolic link to ipxe-amd64.efi "
        "(usr/lib/ipxe/ipxe-amd64.efi in the archive): extract that member instead" in result.err
    )


def test_u_boot_qemu_for_the_boot_tests(http_mirror: TestServer, make_spec: Any, tmp_path: Path) -> None:
    from boot2ipxe.fetch.fetcher import Fetcher

    path = make_spec(
        {
            "u-boot.bin": {
                "sha256": mirror.U_BOOT_QEMU_MEMBER_SHA256,
                "origins": [
                    {
                        "url": "${debian}/" + mirror.U_BOOT_QEMU,
                        "archive-sha256": mirror.U_BOOT_QEMU_SHA256,
                        "extract": "./" + mirror.U_BOOT_QEMU_MEMBER,
                    }
                ],
            }
        }
    )
    m = Mirrors(cli={"debian": http_mirror.url}, environ={}, apt_paths=())
    spec = require_valid(path, m).spec
    assert spec is not None
    blob = Fetcher(Cache(tmp_path / "c"), m).ensure(spec)["u-boot.bin"]
    assert blob.origin == f"${{debian}}/{mirror.U_BOOT_QEMU} (member ./{mirror.U_BOOT_QEMU_MEMBER})"


def test_air_gapped_import_then_offline(run_cli: Any, test_mirror_dir: Path, tmp_path: Path) -> None:
    rpi4 = ROOT / "platforms" / "rpi4.yaml"
    cache = ("--cache-dir", tmp_path / "c")
    before = run_cli("fetch", rpi4, *cache, "--offline")
    assert before.code == 1
    assert "--import FILE' with a copy of raspi-firmware_1.20240424+ds-6_all.deb or start4.elf" in before.err
    debs = sorted(test_mirror_dir.rglob("*.deb"))
    result = run_cli("fetch", rpi4, *cache, "--import", *debs)
    assert result.code == 1  # the x86 and QEMU packages are pinned by no rpi4 source
    imported = {Path(line.split(": ")[0]).name for line in result.out.splitlines()}
    assert imported == {
        "raspi-firmware_1.20240424+ds-6_all.deb",
        "u-boot-rpi_2025.01-3+deb13u1_arm64.deb",
        "debian-installer-13-netboot-armhf_20250803+deb13u7_all.deb",
        "linux-image-6.12.107+deb13-arm64_6.12.107-1_arm64.deb",
        "ipxe_1.21.1+git20250501.dad20602+dfsg-1_all.deb",
    }
    assert "u-boot-qemu_2025.01-3+deb13u1_all.deb: sha256 a3751b5d" in result.err
    after = run_cli("fetch", rpi4, *cache, "--offline")  # no server at all: members come from the imported packages
    assert (after.code, after.err) == (0, "")
    assert len(after.out.splitlines()) == 5  # start4.elf, fixup4.dat, u-boot.bin, the DTB, iPXE
