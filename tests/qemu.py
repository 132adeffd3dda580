"""Boot harness: run QEMU with a wall-clock limit, timestamp serial output, wait for ordered markers.

QEMU is always killed by its PID (its whole process group) when the run ends, however it ends.
On failure the assertion names the missing marker and shows the tail of the timestamped log.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

IPXE_VERSION = "1.21.1+git20250501.dad20602+dfsg-1"
# The disk's iPXE, not the NIC ROM's: QEMU's ROM is iPXE 1.0.0 and lists no SRP among its features.
DISK_IPXE = [rf"iPXE {re.escape(IPXE_VERSION)} -- Open Source Network Boot Firmware", r"Features: .*\bSRP\b.*\bEFI\b"]
OVMF = "/usr/share/OVMF/OVMF_CODE.fd"
# OVMF tries its own network boot only after the disk gave it nothing to start.
DISK_NOT_BOOTED = [r">>Start PXE over IPv4", r"No bootable option"]


def x86_argv(image: Path, serial: Path, bootfile: str) -> list[str]:
    return [
        "qemu-system-x86_64",
        "-machine",
        "q35,accel=tcg",
        "-m",
        "512",
        "-display",
        "none",
        "-no-reboot",
        "-monitor",
        "none",
        "-serial",
        f"file:{serial}",
        "-bios",
        OVMF,
        "-snapshot",
        "-drive",
        f"file={image},format=raw,if=virtio",
        "-netdev",
        f"user,id=n0,bootfile={bootfile}",
        "-device",
        "virtio-net-pci,netdev=n0,romfile=",
    ]


def virt_argv(image: Path, serial: Path, uboot: Path, bootfile: str, *, snapshot: bool = True) -> list[str]:
    """QEMU's arm64 virt machine with U-Boot standing in for a board's. ``snapshot=False`` lets the guest write the
    image (U-Boot rewrites ubootefi.var)."""
    return [
        "qemu-system-aarch64",
        "-M",
        "virt",
        "-cpu",
        "cortex-a57",
        "-m",
        "512",
        "-bios",
        str(uboot),
        *(["-snapshot"] if snapshot else []),
        "-drive",
        f"if=none,file={image},format=raw,id=d",
        "-device",
        "virtio-blk-device,drive=d",
        "-netdev",
        f"user,id=n0,bootfile={bootfile}",
        "-device",
        "virtio-net-device,netdev=n0",
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        f"file:{serial}",
    ]


@dataclass
class BootResult:
    log: Path
    lines: list[tuple[float, str, str]]  # (seconds since start, serial port, text)
    marker_times: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    elapsed: float = 0.0

    def text(self) -> str:
        return "\n".join(line for _, _, line in self.lines)


class BootFailure(AssertionError):
    pass


def boot(
    argv: list[str],
    serial_files: list[Path],
    markers: list[str],
    *,
    timeout: float,
    log: Path,
    forbidden: list[str] | None = None,
    wait_for_exit: bool = False,
) -> BootResult:
    """Run QEMU until every marker (regex) has appeared in order, then stop it.

    ``wait_for_exit``: after the last marker, let QEMU exit by itself (e.g. a guest ``poweroff``)
    within the time left and record its exit code. ``forbidden``: patterns that fail the run at once.
    """
    for f in serial_files:
        f.unlink(missing_ok=True)
        f.touch()
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    result = BootResult(log, [])
    pending = list(markers)
    readers = {f: _Tail(f) for f in serial_files}
    failure = None
    try:
        while True:
            now = time.monotonic() - started
            for path, reader in readers.items():
                for line in reader.new_lines():
                    result.lines.append((now, path.name, line))
                    for pattern in forbidden or []:
                        if re.search(pattern, line):
                            failure = f"forbidden output /{pattern}/ at {now:.1f}s: {line.strip()}"
                    while pending and re.search(pending[0], line):
                        result.marker_times[pending.pop(0)] = now
            if failure:
                break
            exited = proc.poll() is not None
            if not pending and (not wait_for_exit or exited):
                break
            if exited and pending:
                failure = f"QEMU exited with {proc.returncode} before /{pending[0]}/"
                break
            if now > timeout:
                what = f"/{pending[0]}/" if pending else "QEMU to exit"
                failure = f"timed out after {timeout:.0f}s waiting for {what}"
                break
            time.sleep(0.05)
    finally:
        result.elapsed = time.monotonic() - started
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        result.exit_code = proc.returncode
        output = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
        proc.stdout and proc.stdout.close()
        for path, reader in readers.items():
            for line in reader.new_lines(final=True):
                result.lines.append((result.elapsed, path.name, line))
        log.write_text(
            "\n".join(f"[{t:7.2f}] {port}: {line}" for t, port, line in result.lines)
            + (f"\n--- qemu stdout/stderr ---\n{output}" if output.strip() else "")
            + "\n"
        )
    if failure:
        tail = "\n".join(f"[{t:7.2f}] {port}: {line}" for t, port, line in result.lines[-25:])
        extra = f"\nQEMU said: {output.strip()[-800:]}" if output.strip() else ""
        raise BootFailure(f"{failure}; markers seen: {list(result.marker_times)}; log {log}; last lines:\n{tail}{extra}")
    return result


class _Tail:
    """Complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def new_lines(self, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        return [re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", line.decode("utf-8", "replace")) for line in lines]
