"""Boot every platform image under software emulation: firmware → (U-Boot →) iPXE → DHCP → HTTP.

QEMU cannot run the VideoCore firmware nor emulate a Pi 4; those stages are covered statically by
``inspect`` (see test_platform_images.py). Servers bind 127.0.0.1; the guest sees them as 10.0.2.2.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from images import ROOT, Built, boot2ipxe
from qemu import DISK_IPXE, DISK_NOT_BOOTED, BootFailure, boot, virt_argv, x86_argv
from servers import TestServer

from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.inspect.image import inspect_image, parse_config_txt

pytestmark = [pytest.mark.boot, pytest.mark.timeout(180)]


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/packages.txt lists it)")


@pytest.fixture
def script_server(tmp_path: Path) -> Iterator[TestServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = TestServer(root).start()
    yield server
    server.stop()


def serve(server: TestServer, name: str, text: str) -> str:
    assert server.root is not None
    (server.root / name).write_text(text)
    return f"http://10.0.2.2:{server.server_address[1]}/{name}"


def test_x86_uefi_boots_the_disks_ipxe_to_the_dhcp_boot_file(
    platform_images: dict[str, Built], script_server: TestServer, tmp_path: Path
) -> None:
    _need("qemu-system-x86_64")
    url = serve(script_server, "x.ipxe", "#!ipxe\necho BOOT2IPXE-TEST platform=${platform} arch=${buildarch}\npoweroff\n")
    serial = tmp_path / "serial.log"
    result = boot(
        x86_argv(platform_images["x86-uefi"].image, serial, url),
        [serial],
        [
            "file:/autoexec.ipxe... ok",
            *DISK_IPXE,
            "boot2ipxe: x86-uefi default script",
            rf"boot2ipxe: chaining {re.escape(url)}",
            "BOOT2IPXE-TEST platform=efi arch=x86_64",
        ],
        timeout=90,
        log=tmp_path / "boot.log",
        wait_for_exit=True,
        forbidden=DISK_NOT_BOOTED,
    )
    assert result.exit_code == 0, "poweroff should end QEMU cleanly"
    assert [r.path for r in script_server.gets()] == ["/x.ipxe"]


def test_rpi3bp_uboot_finds_the_sd_card_and_starts_ipxe(platform_images: dict[str, Built], tmp_path: Path) -> None:
    """QEMU raspi3b with the u-boot.bin and DTB that config.txt names, copied out of the built image."""
    _need("qemu-system-aarch64")
    kernel, dtb = copy_out_kernel_and_dtb(platform_images["rpi3bp"].image, tmp_path)
    uart0, uart1 = tmp_path / "uart0.log", tmp_path / "uart1.log"
    argv = [
        "qemu-system-aarch64",
        "-M",
        "raspi3b",
        "-kernel",
        str(kernel),
        "-dtb",
        str(dtb),
        "-snapshot",
        "-drive",
        f"file={platform_images['rpi3bp'].image},if=sd,format=raw",
        "-serial",
        f"file:{uart0}",
        "-serial",
        f"file:{uart1}",
        "-display",
        "none",
        "-monitor",
        "none",
    ]
    boot(
        argv,
        [uart0, uart1],
        [
            r"U-Boot 2025\.01-3\+deb13u1",
            "Booting: mmc 0",
            "file:/autoexec.ipxe... ok",
            *DISK_IPXE,
            "boot2ipxe: rpi3bp default script",
        ],
        timeout=60,
        log=tmp_path / "boot.log",
    )


def copy_out_kernel_and_dtb(image: Path, dest: Path) -> tuple[Path, Path]:
    report = inspect_image(image)
    boot_part = report.partitions[0]
    with image.open("rb") as f:
        reader = FatReader(f, boot_part.start * 512)
        config = parse_config_txt(reader.read("config.txt").decode())
        out = []
        for key in ("kernel", "device_tree"):
            name = config.get(key)
            if name is None or reader.find(name) is None:
                raise AssertionError(f"{image}: config.txt {key}={name}, which is not on the boot partition")
            (dest / name).write_bytes(reader.read(name))
            out.append(dest / name)
    return out[0], out[1]


def test_copy_out_says_what_is_missing(platform_images: dict[str, Built], tmp_path: Path) -> None:
    broken = tmp_path / "broken.img"
    shutil.copy(platform_images["rpi3bp"].image, broken)
    subprocess.run(
        ["mdel", "-i", f"{broken}@@{4 * 1024 * 1024}", "::/bcm2837-rpi-3-b-plus.dtb"],
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    with pytest.raises(AssertionError, match=r"config\.txt device_tree=bcm2837-rpi-3-b-plus\.dtb, which is not on the boot"):
        copy_out_kernel_and_dtb(broken, tmp_path)


@pytest.mark.parametrize("name", ["rpi3bp", "rpi4"])
def test_pi_image_netboots_under_uboot_on_qemu_virt(
    name: str, platform_images: dict[str, Built], uboot_for_virt: Path, script_server: TestServer, tmp_path: Path
) -> None:
    _need("qemu-system-aarch64")
    url = serve(script_server, "x.ipxe", "#!ipxe\necho BOOT2IPXE-TEST platform=${platform} arch=${buildarch}\npoweroff\n")
    serial = tmp_path / "serial.log"
    result = boot(
        virt_argv(platform_images[name].image, serial, uboot_for_virt, url),
        [serial],
        [
            "Booting: virtio 0",
            "file:/autoexec.ipxe... ok",
            *DISK_IPXE,
            f"boot2ipxe: {name} default script",
            rf"boot2ipxe: chaining {re.escape(url)}",
            "BOOT2IPXE-TEST platform=efi arch=arm64",
        ],
        timeout=60,
        log=tmp_path / "boot.log",
        wait_for_exit=True,
    )
    assert result.exit_code == 0


def test_sleep_hangs_under_uboot_and_validation_refuses_it(
    platform_images: dict[str, Built], uboot_for_virt: Path, script_server: TestServer, tmp_path: Path
) -> None:
    """Why the lint exists: iPXE's idle `wfi` never wakes under U-Boot, so a script that sleeps hangs."""
    _need("qemu-system-aarch64")
    url = serve(script_server, "s.ipxe", "#!ipxe\necho BEFORE-SLEEP\nsleep 1\necho AFTER-SLEEP\npoweroff\n")
    serial = tmp_path / "serial.log"
    # `sleep 1` would be over within a second; BEFORE-SLEEP shows at about 6 s.
    with pytest.raises(BootFailure, match=r"timed out after 16s waiting for /AFTER-SLEEP/; markers seen: \['BEFORE-SLEEP'\]"):
        boot(
            virt_argv(platform_images["rpi4"].image, serial, uboot_for_virt, url),
            [serial],
            ["BEFORE-SLEEP", "AFTER-SLEEP"],
            timeout=16,
            log=tmp_path / "boot.log",
        )
    # ... so a U-Boot platform whose script waits is refused before any image is built.
    spec_dir = tmp_path / "spec"
    shutil.copytree(ROOT / "platforms", spec_dir)
    template = spec_dir / "templates" / "autoexec.ipxe.j2"
    template.write_text(template.read_text().replace(":retry\n", ":retry\nsleep 2\n", 1))
    result = boot2ipxe("validate", str(spec_dir / "rpi4.yaml"), check=False)
    assert result.returncode == 2
    assert "rpi4.yaml:partitions[0].files[" in result.stderr and "'sleep'" in result.stderr
    assert "hang" in result.stderr


def test_ipxe_at_the_wrong_path_is_not_booted(
    platform_images: dict[str, Built], script_server: TestServer, tmp_path: Path
) -> None:
    """UEFI starts only EFI/BOOT/BOOTX64.EFI from removable media: the harness says so, quickly."""
    _need("qemu-system-x86_64")
    broken = tmp_path / "broken.img"
    shutil.copy(platform_images["x86-uefi"].image, broken)
    subprocess.run(
        ["mren", "-i", f"{broken}@@{1024 * 1024}", "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/IPXE.EFI"],
        check=True,
        env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )
    assert inspect_image(broken).ipxe == []
    serial = tmp_path / "serial.log"
    with pytest.raises(BootFailure, match=r"forbidden output />>Start PXE over IPv4/ at .*markers seen: \[\]"):
        boot(
            x86_argv(broken, serial, serve(script_server, "x.ipxe", "#!ipxe\npoweroff\n")),
            [serial],
            DISK_IPXE,
            timeout=90,
            log=tmp_path / "boot.log",
            forbidden=DISK_NOT_BOOTED,
        )
