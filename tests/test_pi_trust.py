"""A Raspberry Pi image reaches an HTTPS server with its client certificate, nothing typed at any prompt: the CA
iPXE trusts is in U-Boot's EFI variable file (ubootefi.var) on the image's EFI system partition.

The images run on QEMU's arm64 virt machine under Debian's U-Boot (as the other boot tests do), the clock starting
in 1970 as a Raspberry Pi's does (it has no RTC), with Debian's stock iPXE (no ntp): the CA and the server's
certificate are valid from 1970. The server requires a client certificate from the gateway CA, like nginx with
ssl_verify_client, and records its fingerprint.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from images import Built, boot2ipxe
from qemu import DISK_IPXE, boot, virt_argv
from tls_server import MutualTLSServer

from boot2ipxe.formats import efivar
from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.inspect.image import inspect_image

pytestmark = pytest.mark.boot

PI_CLOCK = ["-rtc", "base=1970-01-02T00:00:00"]  # what a Raspberry Pi's clock reads when U-Boot starts iPXE
FETCHING = "boot2ipxe: fetching this machine's boot script"
OK = "BOOT2IPXE-PI-HTTPS-OK"
REFUSED = r"/boot/ipxe\.\.\. .*\(https://ipxe\.org/[0-9a-f]{8}\)"  # iPXE names the error, then retries


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gateway CA and the server's certificate, valid from 1970 (stock iPXE has no clock), and two machines."""
    directory = tmp_path_factory.mktemp("pki") / "pki"
    boot2ipxe("certs", "init", str(directory), "--valid-from-1970")
    boot2ipxe("certs", "issue", str(directory), "pi-01", "pi-02")
    boot2ipxe("certs", "server", str(directory), "10.0.2.2", "--valid-from-1970")
    return directory


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("other") / "pki"
    boot2ipxe("certs", "init", str(directory), "--valid-from-1970")
    boot2ipxe("certs", "issue", str(directory), "pi-01")
    return directory


@pytest.fixture
def server(pki: Path, tmp_path: Path) -> Iterator[MutualTLSServer]:
    www = tmp_path / "www" / "boot"
    www.mkdir(parents=True)
    (www / "ipxe").write_text(f"#!ipxe\necho {OK} ${{platform}} ${{buildarch}}\npoweroff\n")
    chain = pki / "servers" / "10.0.2.2"
    tls = MutualTLSServer(tmp_path / "www", chain / "fullchain.pem", chain / "server.key.pem", pki / "ca.crt.pem").start()
    yield tls
    tls.stop()


def fingerprint(pki: Path, name: str) -> str:
    return hashlib.sha1((pki / "machines" / name / "client.crt.der").read_bytes()).hexdigest()


def skip_without_qemu() -> None:
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 is not installed")


def boot_pi(image: Path, uboot: Path, tmp_path: Path, markers: list[str], *, exits: bool, snapshot: bool = True) -> str:
    serial = tmp_path / f"{image.stem}.serial.log"
    result = boot(
        [*virt_argv(image, serial, uboot, "none", snapshot=snapshot), *PI_CLOCK],
        [serial],
        ["Booting: virtio 0", *DISK_IPXE, FETCHING, *markers],
        timeout=90,
        log=tmp_path / f"{image.stem}.boot.log",
        wait_for_exit=exits,
    )
    if exits:
        assert result.exit_code == 0
    return result.text()


def inject(base: Path, output: Path, server: MutualTLSServer, *args: str) -> None:
    boot2ipxe("inject", str(base), "-o", str(output), "--server", f"https://10.0.2.2:{server.port}", "--no-ntp", *args)


@pytest.mark.parametrize("platform", ["rpi3bp", "rpi4"])
def test_an_injected_pi_reaches_the_https_server_with_its_client_certificate(
    platform: str, platform_images: dict[str, Built], uboot_for_virt: Path, pki: Path, server: MutualTLSServer, tmp_path: Path
) -> None:
    skip_without_qemu()
    image = tmp_path / f"{platform}-pi-01.img"
    inject(platform_images[platform].image, image, server, "--pki", str(pki), "--name", "pi-01")
    text = boot_pi(image, uboot_for_virt, tmp_path, [f"{OK} efi arm64"], exits=True)
    assert "${unixtime}" not in text
    assert server.fingerprints[-1] == fingerprint(pki, "pi-01")
    assert server.served[-1].startswith("/boot/ipxe?mac=")


def test_without_the_variable_file_or_with_another_ca_the_server_is_not_trusted(
    platform_images: dict[str, Built], uboot_for_virt: Path, pki: Path, other_pki: Path, server: MutualTLSServer, tmp_path: Path
) -> None:
    skip_without_qemu()
    base = platform_images["rpi3bp"].image
    untrusted = tmp_path / "untrusted.img"  # the base has no ubootefi.var, and --no-trust leaves it so
    inject(base, untrusted, server, "--pki", str(pki), "--name", "pi-01", "--no-trust")
    with untrusted.open("rb") as f:
        assert not any(
            e.path == "ubootefi.var" for e in FatReader(f, inspect_image(untrusted).partitions[1].start * 512).entries()
        )
    other_ca = tmp_path / "other-ca.img"
    inject(base, other_ca, server, "--pki", str(pki), "--name", "pi-01", "--trust", str(other_pki / "ca.crt.pem"))
    for image in (untrusted, other_ca):
        text = boot_pi(image, uboot_for_virt, tmp_path, [REFUSED], exits=False)
        assert OK not in text
        assert "Permission denied" in text
    assert server.served == []


def test_a_client_certificate_from_another_ca_is_refused_by_the_server(
    platform_images: dict[str, Built], uboot_for_virt: Path, pki: Path, other_pki: Path, server: MutualTLSServer, tmp_path: Path
) -> None:
    skip_without_qemu()
    image = tmp_path / "stranger.img"  # trusts the right server, but presents a certificate our CA never signed
    inject(
        platform_images["rpi3bp"].image,
        image,
        server,
        "--pki",
        str(other_pki),
        "--name",
        "pi-01",
        "--trust",
        str(pki / "ca.crt.pem"),
    )
    text = boot_pi(image, uboot_for_virt, tmp_path, [REFUSED], exits=False)
    assert OK not in text
    assert server.refused and server.served == []


def test_variables_uboot_wrote_are_kept_when_the_image_is_injected_again(
    platform_images: dict[str, Built], uboot_for_virt: Path, pki: Path, other_pki: Path, server: MutualTLSServer, tmp_path: Path
) -> None:
    """U-Boot rewrites ubootefi.var at the first boot (its boot entries): inspect reads that file, and a second
    inject replaces the trust and keeps U-Boot's variables; the machine still boots."""
    skip_without_qemu()
    first = tmp_path / "first.img"
    inject(platform_images["rpi3bp"].image, first, server, "--pki", str(pki), "--name", "pi-01")
    boot_pi(first, uboot_for_virt, tmp_path, [f"{OK} efi arm64"], exits=True, snapshot=False)
    booted = read_variables(first)
    names = [v.name for v in booted]
    assert names[0] == efivar.TLS_CA_CERTIFICATE and {"Boot0000", "BootOrder"} <= set(names), names
    assert efivar.serialize(booted) == variable_file(first)  # U-Boot's file is exactly what its format rules give
    assert [t["subject"] for t in inspect_image(first).trust] == ["CN=boot2ipxe gateway CA"]

    again = tmp_path / "again.img"
    trust = ["--trust", str(other_pki / "ca.crt.pem"), "--trust", str(pki / "ca.crt.pem")]
    inject(first, again, server, "--pki", str(pki), "--name", "pi-02", *trust)
    variables = read_variables(again)
    assert [v.name for v in variables] == names
    assert [v for v in variables if v.name != efivar.TLS_CA_CERTIFICATE] == [
        v for v in booted if v.name != efivar.TLS_CA_CERTIFICATE
    ]
    assert len(efivar.trusted_certificates(variable_file(again))) == 2
    boot_pi(again, uboot_for_virt, tmp_path, [f"{OK} efi arm64"], exits=True)
    assert server.fingerprints[-1] == fingerprint(pki, "pi-02")


def variable_file(image: Path) -> bytes:
    with image.open("rb") as f:
        return FatReader(f, inspect_image(image).partitions[1].start * 512).read("ubootefi.var")


def read_variables(image: Path) -> list[efivar.Variable]:
    return efivar.parse(variable_file(image))
