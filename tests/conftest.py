"""Shared fixtures: the local Debian test mirror, HTTP servers on 127.0.0.1, synthetic specs, the CLI.

Every test runs without the internet: ``hermetic`` (autouse) points HTTP(S) proxies at a closed local
port (so an origin like github.com fails at once, without a DNS query) while 127.0.0.1 stays direct,
shortens the fetch stage's timeouts and back-off, and hides the user's mirror configuration.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mirror as test_mirror
import pytest
import yaml
from images import PLATFORMS, ROOT, Built, build_platform, offline_env
from servers import TestServer

from boot2ipxe import cli
from boot2ipxe.fetch import fetcher as fetch
from boot2ipxe.fetch.download import NetConfig

FAST_NET = NetConfig(connect_timeout=2.0, read_timeout=2.0, attempts=3, backoff=0.05)


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens there
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, closed)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    for name in list(os.environ):
        if name.startswith("BOOT2IPXE_MIRROR_") or name == "BOOT2IPXE_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setattr(fetch, "DEFAULT_NET", FAST_NET)


@pytest.fixture(scope="session")
def test_mirror_dir() -> Path:
    """The prepared Debian test mirror; skipped (failed under CI=...) when it is not complete."""
    directory = test_mirror.mirror_dir()
    problems = test_mirror.check(directory)
    if problems:
        reason = (
            f"the Debian test mirror {directory} is not prepared ({problems[0]}; {len(problems)} problems): "
            "run 'python tests/prepare.py' (or set BOOT2IPXE_TEST_MIRROR to a prepared copy)"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return directory


@pytest.fixture(scope="session")
def _mirror_server(test_mirror_dir: Path) -> Iterator[TestServer]:
    server = TestServer(test_mirror_dir).start()
    yield server
    server.stop()


@pytest.fixture
def http_mirror(_mirror_server: TestServer) -> TestServer:
    """The test mirror over HTTP (Range supported), its request log emptied for this test."""
    _mirror_server.reset()
    return _mirror_server


@pytest.fixture
def faulty_server() -> Iterator[TestServer]:
    """A server whose behaviour per path is programmed with ``server.routes[path] = Route(...)``."""
    server = TestServer().start()
    yield server
    server.stop()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``boot2ipxe ARGS...`` in this process; returns exit code, stdout and stderr."""

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def spec_yaml(name: str, sources: dict[str, dict[str, Any]]) -> str:
    """A minimal valid x86-uefi spec with each source as a file on the ESP (the first is the iPXE binary)."""
    files = [{"dest": "EFI/BOOT/BOOTX64.EFI" if i == 0 else f"blobs/{sid}", "source": sid} for i, sid in enumerate(sources)]
    data = {
        "spec": 1,
        "name": name,
        "description": "test spec",
        "arch": "x86_64",
        "chain": ["uefi", "ipxe"],
        "sources": sources,
        "disk": {"table": "gpt", "size": "64MiB"},
        "partitions": [{"name": "esp", "type": "efi-system", "size": "32MiB", "filesystem": "vfat", "files": files}],
        "ipxe": {"partition": "esp", "binary": "EFI/BOOT/BOOTX64.EFI", "firmware": "uefi"},
    }
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def make_spec(tmp_path: Path) -> Any:
    """Write a synthetic spec: make_spec({"id": {"sha256": ..., "origins": [...]}}, name="t") -> its path."""

    def make(sources: dict[str, dict[str, Any]], name: str = "t", directory: Path | None = None) -> Path:
        path = (directory or tmp_path) / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec_yaml(name, sources), encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def warm_cache(test_mirror_dir: Path, _mirror_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A blob cache holding every platform's sources, filled once per session (tests copy it, never write it)."""
    from boot2ipxe.fetch.cache import Cache
    from boot2ipxe.plan.validate import require_valid
    from boot2ipxe.spec.mirrors import Mirrors

    directory = tmp_path_factory.mktemp("warm-cache")
    specs = [require_valid(ROOT / "platforms" / f"{name}.yaml").spec for name in PLATFORMS]
    mirrors = Mirrors(cli={"debian": _mirror_server.url}, environ={})
    with pytest.MonkeyPatch.context() as patch:  # session fixtures run before the autouse `hermetic` one
        for name, value in offline_env().items():
            if "proxy" in name.lower():
                patch.setenv(name, value)
        report = fetch.Fetcher(Cache(directory), mirrors, net=FAST_NET).fetch([s for s in specs if s is not None])
    assert not report.failures, report.failures
    return directory


@pytest.fixture(scope="session")
def platform_images(warm_cache: Path, _mirror_server: TestServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Each platform's image, built once per session with the real CLI from the local test mirror."""
    out = tmp_path_factory.mktemp("images")
    return {name: build_platform(name, out, _mirror_server.url, warm_cache) for name in PLATFORMS}


@pytest.fixture(scope="session")
def uboot_for_virt(warm_cache: Path, _mirror_server: TestServer) -> Path:
    """U-Boot's QEMU build (test-only, tests/boot/qemu-firmware.yaml), fetched through boot2ipxe's fetch stage."""
    from boot2ipxe.fetch.cache import Cache
    from boot2ipxe.fetch.fetcher import Fetcher
    from boot2ipxe.plan.validate import require_valid
    from boot2ipxe.spec.mirrors import Mirrors

    spec = require_valid(ROOT / "tests/boot/qemu-firmware.yaml").spec
    assert spec is not None
    blobs = Fetcher(Cache(warm_cache), Mirrors(cli={"debian": _mirror_server.url}, environ={})).ensure(spec)
    return blobs["u-boot-qemu.bin"].path
