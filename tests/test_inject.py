"""Per-machine images: inject into our bases and a vendor's, refuse bad input, and boot one over mutual TLS."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from images import Built, boot2ipxe
from qemu import DISK_IPXE, DISK_NOT_BOOTED, boot, virt_argv, x86_argv
from servers import TestServer
from tls_server import MutualTLSServer

from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.formats.ipxe_script import read_hex_setting
from boot2ipxe.formats.sparse import hash_image
from boot2ipxe.inspect.image import inspect_image

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gateway CA with three machines and a server certificate for the guest's view of the host."""
    directory = tmp_path_factory.mktemp("pki") / "pki"
    boot2ipxe("certs", "init", str(directory))
    boot2ipxe("certs", "issue", str(directory), "gw1", "gw2", "gw3")
    boot2ipxe("certs", "server", str(directory), "10.0.2.2")
    return directory


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("other") / "pki"
    boot2ipxe("certs", "init", str(directory))
    boot2ipxe("certs", "issue", str(directory), "gw1")
    return directory


def fingerprint(pki: Path, name: str) -> str:
    """nginx's $ssl_client_fingerprint of a machine's certificate: SHA-1 of the DER."""
    return hashlib.sha1((pki / "machines" / name / "client.crt.der").read_bytes()).hexdigest()


@contextlib.contextmanager
def fat_of(image: Path, partition: int = 1) -> Iterator[FatReader]:
    part = inspect_image(image).partitions[partition - 1]
    with image.open("rb") as f:
        yield FatReader(f, part.start * 512)


def test_batch_inject_gives_each_machine_its_own_identity(platform_images: dict[str, Built], pki: Path, tmp_path: Path) -> None:
    base = platform_images["x86-uefi"].image
    result = boot2ipxe(
        "inject",
        str(base),
        "-o",
        str(tmp_path / "{name}.img"),
        "--server",
        "https://boot.example.com",
        "--pki",
        str(pki),
        "--name",
        "gw1",
        "--name",
        "gw2",
        "--name",
        "gw3",
        "--json",
    )
    machines = json.loads(result.stdout)
    assert [m["machine"] for m in machines] == ["gw1", "gw2", "gw3"]
    for m in machines:
        image = Path(m["image"])
        assert image.stat().st_mode & 0o777 == 0o600, "a machine image holds its key"
        assert image.stat().st_blocks * 512 < base.stat().st_blocks * 512 + MiB, "copies stay sparse"
        cert = (pki / "machines" / m["machine"] / "client.crt.der").read_bytes()
        key = (pki / "machines" / m["machine"] / "client.key.der").read_bytes()
        with fat_of(image) as reader, fat_of(base) as original:
            script = reader.read("autoexec.ipxe").decode()
            assert read_hex_setting(script, "cert") == cert and read_hex_setting(script, "privkey") == key
            assert "chain --autofree https://boot.example.com/boot/ipxe?mac=${netX/mac}&platform=${platform}" in script
            assert reader.read("EFI/BOOT/BOOTX64.EFI") == original.read("EFI/BOOT/BOOTX64.EFI")
        manifest = json.loads(image.with_name(image.name + ".manifest.json").read_text())
        assert manifest["client_certificate"]["fingerprint_sha1"] == fingerprint(pki, m["machine"])
        assert manifest["base"]["sha256"] == platform_images["x86-uefi"].sha256
        text = image.with_name(image.name + ".manifest.json").read_text()
        assert "PRIVATE" not in text and key.hex()[:64] not in text
    assert hash_image(base) == platform_images["x86-uefi"].sha256, "the base image is left untouched"
    assert len(set(tmp_path.glob("*.img"))) == 3


def test_inject_into_the_rpi3bp_base_uses_the_uboot_safe_script(
    platform_images: dict[str, Built], pki: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pi.img"
    boot2ipxe(
        "inject",
        str(platform_images["rpi3bp"].image),
        "-o",
        str(out),
        "--server",
        "https://boot.example.com",
        "--pki",
        str(pki),
        "--name",
        "gw1",
    )
    report = inspect_image(out)
    assert report.ipxe[0]["binary"] == "EFI/BOOT/BOOTAA64.EFI" and report.ipxe[0]["script"] == "autoexec.ipxe"
    assert report.findings == [] and report.b2c_cache == 3
    with fat_of(out) as reader:
        script = reader.read("autoexec.ipxe").decode()
    assert "U-Boot form" in script and "\nsleep" not in script
    assert read_hex_setting(script, "cert") == (pki / "machines/gw1/client.crt.der").read_bytes()


def vendor_image(tmp_path: Path, ipxe: bytes, fat_size_mib: int = 16, filler: int = 0) -> Path:
    """A hand-made vendor-style image: MBR, a raw first partition, FAT16 second, iPXE in EFI/BOOT, no spec."""
    image = tmp_path / "vendor.img"
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    script = f"label: dos\nstart=2048, size=4096, type=da\nstart=8192, size={fat_size_mib * 2048}, type=e, bootable\n"
    subprocess.run(["sfdisk", "-q", str(image)], input=script.encode(), check=True)
    subprocess.run(
        [
            "mkfs.vfat",
            "-F",
            "16" if fat_size_mib >= 16 else "12",
            "--offset=8192",
            "-n",
            "VENDOR",
            str(image),
            str(fat_size_mib * 1024),
        ],
        check=True,
        capture_output=True,
    )
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    target = f"{image}@@{8192 * 512}"
    subprocess.run(["mmd", "-i", target, "::/EFI", "::/EFI/BOOT", "::/vendor"], check=True, env=env)
    (tmp_path / "BOOTX64.EFI").write_bytes(ipxe)
    (tmp_path / "readme.txt").write_text("vendor files stay\n")
    subprocess.run(["mcopy", "-i", target, str(tmp_path / "BOOTX64.EFI"), "::/EFI/BOOT/"], check=True, env=env)
    subprocess.run(["mcopy", "-i", target, str(tmp_path / "readme.txt"), "::/vendor/"], check=True, env=env)
    if filler:
        (tmp_path / "filler.bin").write_bytes(b"\xff" * filler)
        subprocess.run(["mcopy", "-i", target, str(tmp_path / "filler.bin"), "::/vendor/"], check=True, env=env)
    return image


def _real_ipxe(platform_images: dict[str, Built]) -> bytes:
    with platform_images["x86-uefi"].image.open("rb") as f:
        return FatReader(f, MiB).read("EFI/BOOT/BOOTX64.EFI")


def test_inject_into_a_vendor_image_found_without_a_spec(platform_images: dict[str, Built], pki: Path, tmp_path: Path) -> None:
    base = vendor_image(tmp_path, _real_ipxe(platform_images))
    out = tmp_path / "out.img"
    boot2ipxe(
        "inject",
        str(base),
        "-o",
        str(out),
        "--server",
        "https://boot.example.com",
        "--pki",
        str(pki),
        "--name",
        "gw2",
        "--ca-esl",
    )
    report = inspect_image(out)
    assert report.partitions[1].fat_bits == 16
    assert report.ipxe == [
        {
            "partition": 2,
            "binary": "EFI/BOOT/BOOTX64.EFI",
            "arch": "x86_64",
            "version": "1.21.1+git20250501.dad20602+dfsg-1",
            "script": "autoexec.ipxe",
            "ntp": False,
        }
    ]
    with out.open("rb") as f:
        reader = FatReader(f, 8192 * 512)
        assert reader.read("vendor/readme.txt") == b"vendor files stay\n"
        assert reader.read("boot2ipxe/ca.esl")[:16].hex() == "a159c0a5e494a74a87b5ab155c2bf072"  # EFI_CERT_X509_GUID
        assert (
            read_hex_setting(reader.read("autoexec.ipxe").decode(), "cert") == (pki / "machines/gw2/client.crt.der").read_bytes()
        )
    part = tmp_path / "fat.img"
    with out.open("rb") as src:
        src.seek(8192 * 512)
        part.write_bytes(src.read(16 * MiB))
    check = subprocess.run(["fsck.vfat", "-n", str(part)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mismatched key", r"client\.crt\.pem and .*client\.key\.pem do not match: the certificate is for another key"),
        ("encrypted key", r"encrypted"),
        ("no ipxe", r"no EFI iPXE found \(looked for EFI/BOOT/BOOT\*\.EFI on FAT partitions\)"),
        ("full fat", r"free|no room"),
    ],
)
def test_bad_input_is_refused_in_one_line_and_leaves_no_output(
    platform_images: dict[str, Built], pki: Path, tmp_path: Path, case: str, message: str
) -> None:
    base = platform_images["x86-uefi"].image
    args = ["--server", "https://boot.example.com"]
    if case == "mismatched key":
        args += ["--cert", str(pki / "machines/gw1/client.crt.pem"), "--key", str(pki / "machines/gw2/client.key.pem")]
    elif case == "encrypted key":
        encrypted = tmp_path / "enc.key.pem"
        subprocess.run(
            [
                "openssl",
                "rsa",
                "-in",
                str(pki / "machines/gw1/client.key.pem"),
                "-aes256",
                "-passout",
                "pass:x",
                "-out",
                str(encrypted),
            ],
            check=True,
            capture_output=True,
        )
        args += ["--cert", str(pki / "machines/gw1/client.crt.pem"), "--key", str(encrypted)]
    elif case == "no ipxe":
        base = vendor_image(tmp_path, b"MZ not ipxe at all")
        subprocess.run(
            ["mdel", "-i", f"{base}@@{8192 * 512}", "::/EFI/BOOT/BOOTX64.EFI"],
            check=True,
            env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
        )
        args += ["--pki", str(pki), "--name", "gw1"]
    elif case == "full fat":
        base = vendor_image(tmp_path, _real_ipxe(platform_images), fat_size_mib=2, filler=int(0.95 * MiB))
        args += ["--pki", str(pki), "--name", "gw1", "--ipxe", str(tmp_path / "BOOTX64.EFI")]
        (tmp_path / "BOOTX64.EFI").write_bytes(b"\x90" * (2 * MiB))  # a custom "build" that cannot fit
    out = tmp_path / "out" / "machine.img"
    out.parent.mkdir()
    result = boot2ipxe("inject", str(base), "-o", str(out), *args, check=False)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), result.stderr
    assert list(out.parent.iterdir()) == []


@pytest.mark.boot
@pytest.mark.timeout(240)
def test_x86_machine_image_boots_over_mutual_tls(
    platform_images: dict[str, Built], pki: Path, other_pki: Path, tmp_path: Path
) -> None:
    """OVMF trusts the gateway CA (fw_cfg ESL); the server requires a client certificate from it."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    www = tmp_path / "www" / "boot"
    www.mkdir(parents=True)
    (www / "ipxe").write_text("#!ipxe\necho BOOT2IPXE-MTLS-OK ${platform}\npoweroff\n")
    server_dir = pki / "servers" / "10.0.2.2"
    server = MutualTLSServer(
        tmp_path / "www", server_dir / "fullchain.pem", server_dir / "server.key.pem", pki / "ca.crt.pem"
    ).start()
    esl = tmp_path / "ca.esl"
    boot2ipxe("certs", "esl", str(pki), "-o", str(esl))
    base = platform_images["x86-uefi"].image
    try:
        url = f"https://10.0.2.2:{server.port}"
        for name, machine_pki, expect_ok in (("gw3", pki, True), ("gw1", other_pki, False), (None, None, False)):
            image = tmp_path / f"{name or 'anonymous'}-{expect_ok}.img"
            identity = ["--pki", str(machine_pki), "--name", name] if name and machine_pki else []
            boot2ipxe("inject", str(base), "-o", str(image), "--server", url, "--no-ntp", *identity)
            serial = tmp_path / f"{image.stem}.log"
            argv = [*x86_argv(image, serial, "none"), "-fw_cfg", f"name=etc/edk2/https/cacerts,file={esl}"]
            before_refused = len(server.refused)
            fetching = ["boot2ipxe: fetching this machine's boot script"]
            if expect_ok:
                result = boot(
                    argv,
                    [serial],
                    [*DISK_IPXE, *fetching, "BOOT2IPXE-MTLS-OK efi"],
                    timeout=90,
                    log=tmp_path / f"{image.stem}.boot.log",
                    wait_for_exit=True,
                    forbidden=DISK_NOT_BOOTED,
                )
                assert result.exit_code == 0
                assert server.fingerprints[-1] == fingerprint(pki, "gw3")
                assert server.served[-1].startswith(
                    "/boot/ipxe?mac=52%3A54%3A00%3A12%3A34%3A56&platform=efi&buildarch=x86_64"
                ) or server.served[-1].startswith("/boot/ipxe?mac=52:54:00:12:34:56&platform=efi&buildarch=x86_64")
            else:
                served = len(server.served)
                # iPXE reports the refused connection with an error code URL, then retries: stop there.
                result = boot(
                    argv,
                    [serial],
                    [*DISK_IPXE, *fetching, r"/boot/ipxe\.\.\. .*\(https://ipxe\.org/[0-9a-f]{8}\)"],
                    timeout=60,
                    log=tmp_path / f"{image.stem}.boot.log",
                    forbidden=DISK_NOT_BOOTED,
                )
                assert "BOOT2IPXE-MTLS-OK" not in result.text()
                assert len(server.refused) > before_refused, "the server refused the handshake"
                assert len(server.served) == served, "nothing was served without a valid client certificate"
    finally:
        server.stop()


@pytest.mark.boot
def test_injected_script_runs_on_arm64_under_uboot(
    platform_images: dict[str, Built], uboot_for_virt: Path, pki: Path, tmp_path: Path
) -> None:
    """The rpi3bp base with gw1's identity: iPXE under U-Boot parses the key settings and runs the script."""
    if shutil.which("qemu-system-aarch64") is None:
        pytest.skip("qemu-system-aarch64 is not installed")
    root = tmp_path / "www"
    root.mkdir()
    server = TestServer(root).start()
    try:
        port = server.server_address[1]
        (root / "next.ipxe").write_text("#!ipxe\necho BOOT2IPXE-ARM64-CHAINED\npoweroff\n")
        script = tmp_path / "machine.ipxe"
        script.write_text(
            "#!ipxe\nisset ${privkey} && echo BOOT2IPXE-PRIVKEY-SET || echo BOOT2IPXE-PRIVKEY-MISSING\n"
            f":retry\ndhcp || goto retry\nchain http://10.0.2.2:{port}/next.ipxe || goto retry\n"
        )
        image = tmp_path / "pi-gw1.img"
        boot2ipxe(
            "inject",
            str(platform_images["rpi3bp"].image),
            "-o",
            str(image),
            "--script",
            str(script),
            "--pki",
            str(pki),
            "--name",
            "gw1",
        )
        serial = tmp_path / "serial.log"
        result = boot(
            virt_argv(image, serial, uboot_for_virt, "none"),
            [serial],
            ["Booting: virtio 0", *DISK_IPXE, "BOOT2IPXE-PRIVKEY-SET", "BOOT2IPXE-ARM64-CHAINED"],
            timeout=60,
            log=tmp_path / "boot.log",
            wait_for_exit=True,
            forbidden=["BOOT2IPXE-PRIVKEY-MISSING"],
        )
        assert result.exit_code == 0
        assert [r.path for r in server.gets()] == ["/next.ipxe"]
    finally:
        server.stop()


def test_a_waiting_user_script_is_refused_for_uboot(platform_images: dict[str, Built], pki: Path, tmp_path: Path) -> None:
    script = tmp_path / "s.ipxe"
    script.write_text("#!ipxe\ndhcp\nsleep 3\nchain http://x/y\n")
    result = boot2ipxe(
        "inject", str(platform_images["rpi4"].image), "-o", str(tmp_path / "o.img"), "--script", str(script), check=False
    )
    assert result.returncode == 2 and f"{script}:3: 'sleep'" in result.stderr
    assert not (tmp_path / "o.img").exists()
