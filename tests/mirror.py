"""The local Debian test mirror: a pool-shaped directory with real packages, so tests run offline.

It holds every ``${debian}/pool/...`` file that the specs in ``platforms/*.yaml`` reference, plus the
test-only ``u-boot-qemu`` package, each verified against its pinned sha256::

    python tests/mirror.py prepare   # download what is missing or damaged; quick when complete
    python tests/mirror.py check     # list what is missing (exit 1) or say it is complete
    python tests/mirror.py path      # print the directory

Directory: ``$BOOT2IPXE_TEST_MIRROR``, default ``~/.cache/boot2ipxe-test-mirror`` (kept between runs, so
CI downloads each package once). Packages come over plain HTTP from the Debian archive named in this
machine's apt sources (``boot2ipxe.spec.mirrors.debian_from_apt``); no mirror host is written here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
import yaml  # noqa: E402

from boot2ipxe.fetch.cache import hash_file  # noqa: E402
from boot2ipxe.fetch.download import DownloadError, NetConfig, download  # noqa: E402
from boot2ipxe.spec.mirrors import APT_SOURCES, debian_from_apt  # noqa: E402

PLACEHOLDER = "${debian}/"
# Not in any shipped spec: the QEMU 'virt' U-Boot that stands in for a board's U-Boot in boot tests.
U_BOOT_QEMU = "pool/main/u/u-boot/u-boot-qemu_2025.01-3+deb13u1_all.deb"
U_BOOT_QEMU_SHA256 = "a3751b5d36a411457b2e7a2834cdce0e5d40493e6588a65d51c5603740a0c71c"
U_BOOT_QEMU_MEMBER = "usr/lib/u-boot/qemu_arm64/u-boot.bin"
U_BOOT_QEMU_MEMBER_SHA256 = "677348582906a57601d7252dbf31e3195284ce0dbf759228698f85e1625031c0"
STAMP = ".verified.json"  # relpath -> [sha256, size, mtime_ns] of files already hashed


def mirror_dir() -> Path:
    return Path(os.environ.get("BOOT2IPXE_TEST_MIRROR") or Path.home() / ".cache" / "boot2ipxe-test-mirror").expanduser()


def pool_files(platforms: Path = ROOT / "platforms") -> dict[str, str]:
    """{pool-relative path: sha256} for every ${debian} origin of the shipped specs, and u-boot-qemu."""
    files: dict[str, str] = {}
    for spec in sorted(platforms.glob("*.yaml")):
        data: Any = yaml.safe_load(spec.read_text(encoding="utf-8"))
        for source in (data.get("sources") or {}).values():
            for origin in source.get("origins", []):
                url = origin.get("url", "")
                if url.startswith(PLACEHOLDER):
                    files[url[len(PLACEHOLDER) :]] = origin.get("archive-sha256") or source["sha256"]
    files[U_BOOT_QEMU] = U_BOOT_QEMU_SHA256
    return dict(sorted(files.items()))


def check(directory: Path, files: dict[str, str] | None = None) -> list[str]:
    """What is missing or damaged (empty when complete). Hashes each file once; a stamp remembers it."""
    stamp_path = directory / STAMP
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    problems, changed = [], False
    for rel, sha in (files or pool_files()).items():
        path = directory / rel
        try:
            st = path.stat()
        except OSError:
            problems.append(f"{rel} is missing")
            continue
        if stamp.get(rel) == [sha, st.st_size, st.st_mtime_ns]:
            continue
        if hash_file(path) != sha:
            problems.append(f"{rel} does not match sha256 {sha}")
            continue
        stamp[rel], changed = [sha, st.st_size, st.st_mtime_ns], True
    if changed:
        try:
            tmp = stamp_path.with_name(STAMP + ".tmp")
            tmp.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
            tmp.replace(stamp_path)
        except OSError:
            pass  # a read-only copy of the mirror is fine; it is just hashed again next time
    return problems


def debian_base() -> str:
    found = debian_from_apt(APT_SOURCES)
    if found is None:
        sys.exit("tests/mirror.py: no Debian archive in this machine's apt sources; set BOOT2IPXE_TEST_MIRROR to a prepared copy")
    return found[0]


def prepare(directory: Path, base: str | None = None, only: str | None = None) -> int:
    files = {rel: sha for rel, sha in pool_files().items() if only is None or only in rel}
    missing = {rel: files[rel] for rel in files if check(directory, {rel: files[rel]})}
    if not missing:
        print(f"test mirror {directory}: complete ({len(files)} files)")
        return 0
    base = base or debian_base()
    session = requests.Session()
    failed = 0
    for rel, sha in missing.items():
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        url = f"{base.rstrip('/')}/{rel}"
        print(f"downloading {url}", flush=True)
        try:
            download(session, url, partial, NetConfig(read_timeout=60.0))
        except DownloadError as exc:
            print(f"  failed: {exc}", file=sys.stderr)
            failed += 1
            continue
        if hash_file(partial) != sha:
            partial.unlink()
            print(f"  failed: {url} does not match the pinned sha256 {sha}", file=sys.stderr)
            failed += 1
            continue
        partial.replace(target)
    problems = check(directory, files)
    for problem in problems:
        print(f"test mirror {directory}: {problem}", file=sys.stderr)
    if not problems:
        print(f"test mirror {directory}: complete ({len(files)} files)")
    return 1 if failed or problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tests/mirror.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["prepare", "check", "path"])
    parser.add_argument("--only", metavar="TEXT", help="prepare: only the files whose pool path contains TEXT")
    parser.add_argument("--base", metavar="URL", help="prepare: Debian archive base URL (default: from the apt sources)")
    args = parser.parse_args(argv)
    directory = mirror_dir()
    if args.action == "path":
        print(directory)
        return 0
    if args.action == "prepare":
        return prepare(directory, args.base, args.only)
    problems = check(directory)
    for problem in problems:
        print(f"test mirror {directory}: {problem}")
    print(f"test mirror {directory}: {'incomplete: run python tests/mirror.py prepare' if problems else 'complete'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
