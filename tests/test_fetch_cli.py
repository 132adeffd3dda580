"""``boot2ipxe fetch``: output, exit codes, --import, --offline, --json, the cache location, and two
processes sharing one cache."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from servers import Route, TestServer

from boot2ipxe.fetch.cache import Cache, default_dir
from boot2ipxe.progress import TtyProgress

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
BLOB = random.Random(3).randbytes(200_000)
OTHER = b"other bytes\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def two_blobs(make_spec: Any, faulty_server: TestServer) -> Path:
    faulty_server.routes["/blob"] = Route(BLOB)
    faulty_server.routes["/other"] = Route(OTHER)
    return make_spec(  # type: ignore[no-any-return]
        {
            "blob": {"sha256": sha(BLOB), "size": len(BLOB), "origins": [{"url": faulty_server.url + "/blob"}]},
            "other.txt": {"sha256": sha(OTHER), "origins": [{"url": "${test}/other"}]},
        }
    )


def test_summary_lines_then_cached(run_cli: Any, two_blobs: Path, faulty_server: TestServer, tmp_path: Path) -> None:
    args = ("fetch", two_blobs, "--cache-dir", tmp_path / "c", "--mirror", f"test={faulty_server.url}")
    result = run_cli(*args)
    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        f"{two_blobs}: blob: fetched (195.3 KiB) from {faulty_server.url}/blob",
        f"{two_blobs}: other.txt: fetched (12 B) from ${{test}}/other",
    ]
    result = run_cli(*args)
    assert result.out.splitlines()[0] == f"{two_blobs}: blob: cached (195.3 KiB) from {faulty_server.url}/blob"
    assert len(faulty_server.gets()) == 2
    assert run_cli(*args, "-q").out == ""


def test_json(run_cli: Any, two_blobs: Path, faulty_server: TestServer, tmp_path: Path) -> None:
    result = run_cli("fetch", two_blobs, "--cache-dir", tmp_path / "c", "--mirror", f"test={faulty_server.url}", "--json")
    assert result.code == 0
    report = json.loads(result.out)
    assert report["ok"] is True and report["cache"] == str(tmp_path / "c")
    assert report["blobs"][1] == {
        "spec": str(two_blobs),
        "source": "other.txt",
        "sha256": sha(OTHER),
        "status": "fetched",
        "size": len(OTHER),
        "path": str(Cache(tmp_path / "c").path(sha(OTHER))),
        "origin": "${test}/other",
    }
    downloads = report["downloads"]  # what was received, and how fast: the bytes of both blobs, once
    assert downloads["bytes"] == len(BLOB) + len(OTHER)
    assert 0 < downloads["seconds"] < 10 and downloads["bytes_per_second"] == round(downloads["bytes"] / downloads["seconds"])
    again = json.loads(
        run_cli("fetch", two_blobs, "--cache-dir", tmp_path / "c", "--mirror", f"test={faulty_server.url}", "--json").out
    )
    assert again["downloads"] == {"bytes": 0, "seconds": 0.0, "bytes_per_second": None}


def test_failure_exit_1_one_line_per_blob(run_cli: Any, two_blobs: Path, faulty_server: TestServer, tmp_path: Path) -> None:
    faulty_server.routes["/blob"] = Route(BLOB, then="404")
    faulty_server.routes["/other"] = Route(OTHER, then="wrong-byte")
    result = run_cli("fetch", two_blobs, "--cache-dir", tmp_path / "c", "--mirror", f"test={faulty_server.url}", "--json")
    assert result.code == 1
    report = json.loads(result.out)
    assert report["ok"] is False and [b["status"] for b in report["blobs"]] == ["failed", "failed"]
    lines = result.err.splitlines()
    assert len(lines) == 2 and "Traceback" not in result.err
    assert lines[0].startswith(
        f"{two_blobs}:sources.blob: no origin gave sha256 {sha(BLOB)}: [1] {faulty_server.url}/blob: HTTP 404"
    )
    assert lines[1].startswith(
        f'{two_blobs}:sources["other.txt"]: no origin gave sha256 {sha(OTHER)}: [1] {faulty_server.url}/other:'
    )
    assert Cache(tmp_path / "c").leftovers() == []


def test_bad_input_exits_2(run_cli: Any, two_blobs: Path, make_spec: Any, tmp_path: Path) -> None:
    result = run_cli("fetch")
    assert result.code == 2 and "no SPEC given; name the specs before --import" in result.err
    result = run_cli("fetch", "--import", two_blobs, two_blobs)  # the spec was swallowed by --import
    assert result.code == 2 and "no SPEC given" in result.err
    result = run_cli("fetch", two_blobs, "--jobs", "0")
    assert result.code == 2 and "--jobs 0: must be at least 1" in result.err
    result = run_cli("fetch", two_blobs, "--import", tmp_path / "missing.deb")
    assert result.code == 2 and f"--import {tmp_path / 'missing.deb'}: no such file" in result.err
    bad = make_spec({"x": {"sha256": "0" * 63, "origins": [{"url": "http://127.0.0.1:1/x"}]}}, name="bad")
    result = run_cli("fetch", bad, two_blobs, "--cache-dir", tmp_path / "c")
    assert result.code == 2 and "Traceback" not in result.err
    lines = result.err.splitlines()  # every problem of every spec, then exit before fetching anything
    assert lines[0].startswith(f"{bad}:sources.x.sha256: ")
    assert lines[-1].startswith(f'{two_blobs}:sources["other.txt"].origins[0].url: no mirror configured for ${{test}}')
    assert not (tmp_path / "c").exists()


def test_import_and_offline(run_cli: Any, two_blobs: Path, tmp_path: Path) -> None:
    cache = ("--cache-dir", tmp_path / "c")
    result = run_cli("fetch", two_blobs, *cache, "--offline", "--mirror", "test=http://127.0.0.1:1")
    assert result.code == 1 and result.out == ""
    assert result.err.splitlines()[0] == (
        f"{two_blobs}:sources.blob: sha256 {sha(BLOB)} is not in the cache {tmp_path / 'c'} and --offline allows no "
        f"download: run 'boot2ipxe fetch {two_blobs}' where the network is reachable (same cache), or "
        f"'boot2ipxe fetch {two_blobs} --import FILE' with a copy of blob"
    )
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "stray").write_bytes(b"nobody pins this")
    result = run_cli("fetch", two_blobs, *cache, "--import", tmp_path / "blob", tmp_path / "stray")
    assert result.code == 1
    assert result.out == f"{tmp_path / 'blob'}: imported sha256 {sha(BLOB)} ({two_blobs}:sources.blob)\n"
    assert (
        result.err
        == f"{tmp_path / 'stray'}: sha256 {sha(b'nobody pins this')} is pinned by none of the given specs; not imported\n"
    )
    result = run_cli("fetch", two_blobs, *cache, "--offline", "--mirror", "test=http://127.0.0.1:1")
    assert result.code == 1 and result.out.startswith(f"{two_blobs}: blob: cached (195.3 KiB) from imported blob\n")
    assert result.err.startswith(f'{two_blobs}:sources["other.txt"]: sha256 {sha(OTHER)} is not in the cache')
    (tmp_path / "o").write_bytes(OTHER)
    result = run_cli("fetch", two_blobs, *cache, "--import", tmp_path / "o", tmp_path / "blob", "--json")
    assert result.code == 0
    assert [i["file"] for i in json.loads(result.out)["imported"]] == [str(tmp_path / "o"), str(tmp_path / "blob")]
    result = run_cli("fetch", two_blobs, *cache, "--offline", "--mirror", "test=http://127.0.0.1:1")
    assert result.code == 0 and result.err == ""


def test_cache_location(run_cli: Any, two_blobs: Path, faulty_server: TestServer, tmp_path: Path, monkeypatch: Any) -> None:
    assert default_dir({"HOME": "/h"}) == Path.home() / ".cache" / "boot2ipxe"
    assert default_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/boot2ipxe")
    assert default_dir({"XDG_CACHE_HOME": "/x", "BOOT2IPXE_CACHE": "/b"}) == Path("/b")
    monkeypatch.setenv("BOOT2IPXE_CACHE", str(tmp_path / "env"))
    assert run_cli("fetch", two_blobs, "--mirror", f"test={faulty_server.url}").code == 0
    assert Cache(tmp_path / "env").lookup(sha(BLOB)) is not None
    assert run_cli("fetch", two_blobs, "--mirror", f"test={faulty_server.url}", "--cache-dir", tmp_path / "cli").code == 0
    assert Cache(tmp_path / "cli").lookup(sha(BLOB)) is not None
    (tmp_path / "file").write_text("a file where the cache should be")
    result = run_cli("fetch", two_blobs, "--cache-dir", tmp_path / "file", "--mirror", f"test={faulty_server.url}")
    assert result.code == 1 and result.err.startswith(f"boot2ipxe: cannot create the cache directory {tmp_path / 'file'}/blobs/")


def test_two_processes_share_one_download(make_spec: Any, faulty_server: TestServer, tmp_path: Path) -> None:
    """Both succeed; the second waits on the blob's lock and finds it cached: one request, one copy."""
    faulty_server.routes["/slow.bin"] = Route(BLOB, then="drip", drip=0.1)  # about 0.4 s per download
    spec = make_spec({"blob": {"sha256": sha(BLOB), "origins": [{"url": "${test}/slow.bin"}]}})
    argv = [sys.executable, "-m", "boot2ipxe", "fetch", str(spec), "--cache-dir", str(tmp_path / "c")]
    argv += ["--mirror", f"test={faulty_server.url}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=30) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    statuses = sorted(out.split(": ")[2].split()[0] for out, _ in results)
    assert statuses == ["cached", "fetched"]
    assert len(faulty_server.gets("/slow.bin")) == 1
    cache = Cache(tmp_path / "c")
    assert [p.name for p in (tmp_path / "c").rglob("*") if p.is_file() and len(p.name) == 64] == [sha(BLOB)]
    assert cache.path(sha(BLOB)).read_bytes() == BLOB and cache.leftovers() == []


def test_tty_progress_draws_and_clears() -> None:
    stream, stdout = io.StringIO(), io.StringIO()
    progress = TtyProgress(stream, interval=0)
    progress.progress("a.deb", 512 * 1024, 1024 * 1024)
    assert stream.getvalue() == "\r\x1b[Kfetching a.deb 50% (512.0 KiB/1.0 MiB)"
    progress.print_line("a line", stdout)
    assert stdout.getvalue() == "a line\n" and stream.getvalue().endswith(
        "\r\x1b[K\r\x1b[Kfetching a.deb 50% (512.0 KiB/1.0 MiB)"
    )
    progress.progress("a.deb", 1024 * 1024, 1024 * 1024)
    progress.close()
    assert stream.getvalue().endswith("\r\x1b[K")
