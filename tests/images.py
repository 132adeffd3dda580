"""Platform images built once per test session through the real CLI, from the local Debian test mirror."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = ("x86-uefi", "rpi3bp", "rpi4")
CLOSED_PROXY = "http://127.0.0.1:9"  # nothing listens there: an origin on the internet fails at once


def offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOT2IPXE_")}
    env.update(
        {
            "HTTP_PROXY": CLOSED_PROXY,
            "HTTPS_PROXY": CLOSED_PROXY,
            "http_proxy": CLOSED_PROXY,
            "https_proxy": CLOSED_PROXY,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    env.update(extra)
    return env


def boot2ipxe(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "boot2ipxe", *args], capture_output=True, text=True, env=env or offline_env(), cwd=cwd, timeout=600
    )
    if check and result.returncode != 0:
        raise AssertionError(f"boot2ipxe {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class Built:
    name: str
    image: Path
    sha256: str
    manifest: dict[str, Any]


def build_platform(
    name: str, out_dir: Path, mirror_url: str, cache_dir: Path, spec: Path | None = None, env: dict[str, str] | None = None
) -> Built:
    image = out_dir / f"{name}.img"
    boot2ipxe(
        "build",
        str(spec or ROOT / "platforms" / f"{name}.yaml"),
        "-o",
        str(image),
        "--mirror",
        f"debian={mirror_url}",
        "--cache-dir",
        str(cache_dir),
        env=env,
    )
    manifest = json.loads((out_dir / f"{name}.img.manifest.json").read_text())
    return Built(name, image, manifest["image"]["sha256"], manifest)
