"""The fetch stage against a faulty HTTP server: every failure names each origin, retries and resumes
work, and no bad or partial blob is ever left in the cache."""

from __future__ import annotations

import hashlib
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest
from archives import Entry, deb_bytes, tar_bytes, zip_bytes
from servers import Route, TestServer

from boot2ipxe.errors import FetchError
from boot2ipxe.fetch import cache as cache_module
from boot2ipxe.fetch import fetcher as fetch_module
from boot2ipxe.fetch.cache import Cache
from boot2ipxe.fetch.download import NetConfig
from boot2ipxe.fetch.fetcher import Fetcher
from boot2ipxe.fetch.report import FetchFailed
from boot2ipxe.plan.validate import require_valid
from boot2ipxe.spec.mirrors import Mirrors

pytestmark = pytest.mark.timeout(60)

BLOB = random.Random(7).randbytes(300_000)  # several 64 KiB chunks, so a body can be cut in the middle
OTHER = random.Random(8).randbytes(5_000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mirrors(**urls: str) -> Mirrors:
    return Mirrors(cli=urls, environ={}, config_file=Path("/nonexistent"), apt_paths=())


def load(path: Path, m: Mirrors | None = None) -> Any:
    spec = require_valid(path, m or mirrors()).spec
    assert spec is not None
    return spec


def cache_files(cache: Cache) -> list[str]:
    """Every blob file (not locks, partials or origin notes) in the cache."""
    return sorted(p.name for p in (cache.root / "blobs").rglob("*") if p.is_file() and len(p.name) == 64)


def assert_clean(cache: Cache, blobs: list[bytes]) -> None:
    assert cache_files(cache) == sorted(sha(b) for b in blobs)
    assert cache.leftovers() == []
    for b in blobs:
        assert cache.path(sha(b)).read_bytes() == b


@pytest.fixture
def cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


def one_url_spec(make_spec: Any, server: TestServer, *paths: str, data: bytes = BLOB, **extra: Any) -> Any:
    origins = [{"url": server.url + p} for p in paths]
    return load(make_spec({"blob": {"sha256": sha(data), "origins": origins, **extra}}))


def test_fetched_then_cached_without_any_request(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    blob = Fetcher(cache, mirrors()).ensure(spec)["blob"]
    assert (blob.sha256, blob.size, blob.origin) == (sha(BLOB), len(BLOB), faulty_server.url + "/blob")
    assert blob.path == cache.path(sha(BLOB)) and blob.path.read_bytes() == BLOB
    assert not blob.path.stat().st_mode & 0o222  # read-only
    faulty_server.reset()
    again = Fetcher(Cache(cache.root), mirrors()).ensure(spec)["blob"]
    assert again == blob  # the origin is remembered for manifests
    assert faulty_server.gets() == []
    assert_clean(cache, [BLOB])


def test_wrong_bytes_fall_through_to_the_next_origin(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/bad"] = Route(BLOB, then="wrong-byte")
    faulty_server.routes["/good"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/bad", "/good")
    blob = Fetcher(cache, mirrors()).ensure(spec)["blob"]
    assert blob.origin == faulty_server.url + "/good"
    assert len(faulty_server.gets("/bad")) == 1  # a hash mismatch is not retried
    assert_clean(cache, [BLOB])


def test_every_origin_failing_is_listed_in_one_line(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/bad"] = Route(BLOB, then="wrong-byte")
    faulty_server.routes["/gone"] = Route(BLOB, then="404")
    faulty_server.routes["/short"] = Route(BLOB, then="short")
    spec = one_url_spec(make_spec, faulty_server, "/bad", "/gone", "/short")
    with pytest.raises(FetchFailed) as exc:
        Fetcher(cache, mirrors()).ensure(spec)
    [line] = exc.value.lines()
    url = faulty_server.url
    bad = sha(BLOB[:150_000] + bytes([BLOB[150_000] ^ 0xFF]) + BLOB[150_001:])
    assert line == (
        f"{spec.display_path}:sources.blob: no origin gave sha256 {sha(BLOB)}: "
        f"[1] {url}/bad: served bytes with sha256 {bad}, not the pinned {sha(BLOB)}; "
        f"[2] {url}/gone: HTTP 404 Not Found; "
        f"[3] {url}/short: served bytes with sha256 {sha(BLOB[:150_000])}, not the pinned {sha(BLOB)}; "
        f"fix the origins or the mirror (--mirror NAME=URL), or put a copy in the cache with "
        f"'boot2ipxe fetch {spec.display_path} --import FILE'"
    )
    assert len(faulty_server.gets("/gone")) == 1  # a 404 is not retried
    assert_clean(cache, [])


def test_5xx_is_retried(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB, actions=["500", "500"])
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    assert Fetcher(cache, mirrors()).ensure(spec)["blob"].path.read_bytes() == BLOB
    assert len(faulty_server.gets("/blob")) == 3
    assert_clean(cache, [BLOB])


def test_5xx_until_the_attempts_run_out(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB, then="500")
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    with pytest.raises(FetchFailed, match=r"/blob: HTTP 500 Internal Server Error \(after 3 attempts\)"):
        Fetcher(cache, mirrors()).ensure(spec)
    assert len(faulty_server.gets("/blob")) == 3
    assert_clean(cache, [])


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_broken_download_resumes_with_range(make_spec: Any, faulty_server: TestServer, cache: Cache, fault: str) -> None:
    faulty_server.routes["/blob"] = Route(BLOB, actions=[fault])
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    assert Fetcher(cache, mirrors()).ensure(spec)["blob"].path.read_bytes() == BLOB
    first, second = faulty_server.gets("/blob")
    assert first.range is None
    # Resumed where the client's bytes end (a reset may drop what was still in flight).
    assert second.range is not None and 0 < int(second.range.removeprefix("bytes=").removesuffix("-")) <= len(BLOB) // 2
    assert_clean(cache, [BLOB])


def test_server_without_range_support_restarts(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB, actions=["reset"], range=False)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    assert Fetcher(cache, mirrors()).ensure(spec)["blob"].path.read_bytes() == BLOB
    assert [r.range is not None for r in faulty_server.gets("/blob")] == [False, True]  # asked, got the whole body
    assert_clean(cache, [BLOB])


def test_partial_download_from_an_earlier_run_is_resumed(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    cache.partial(sha(BLOB)).write_bytes(BLOB[:100_000])
    Fetcher(cache, mirrors()).ensure(spec)
    assert [r.range for r in faulty_server.gets("/blob")] == ["bytes=100000-"]
    assert_clean(cache, [BLOB])


def test_stale_partial_with_wrong_bytes_is_downloaded_again(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    cache.partial(sha(BLOB)).write_bytes(b"\0" * 100_000)
    Fetcher(cache, mirrors()).ensure(spec)
    assert [r.range for r in faulty_server.gets("/blob")] == ["bytes=100000-", None]
    assert_clean(cache, [BLOB])


def test_slow_server_times_out_quickly(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/slow"] = Route(BLOB, then="slow", delay=3.0)
    spec = one_url_spec(make_spec, faulty_server, "/slow")
    net = NetConfig(connect_timeout=1.0, read_timeout=0.3, attempts=2, backoff=0.05)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match=r"/slow: no data for 0\.3 s \(after 2 attempts\)"):
        Fetcher(cache, mirrors(), net=net).ensure(spec)
    assert time.monotonic() - started < 2.5
    assert_clean(cache, [])


def test_unreachable_host_is_tried_once_per_run(make_spec: Any, cache: Cache) -> None:
    # Nothing listens on port 1: connection refused, retried, then the host is skipped for the run.
    sources = {
        f"b{i}": {"sha256": sha(bytes([i])), "origins": [{"url": f"http://127.0.0.1:1/b{i}"}, {"path": f"b{i}"}]}
        for i in range(3)
    }
    spec_path = make_spec(sources)
    for i in range(3):
        (spec_path.parent / f"b{i}").write_bytes(bytes([i]))
    report = Fetcher(cache, mirrors(), jobs=1).fetch([load(spec_path)])
    assert report.failures == []
    assert [o.blob.origin if o.blob else None for o in report.outcomes] == [str(spec_path.parent / f"b{i}") for i in range(3)]
    with pytest.raises(FetchFailed) as exc:
        Fetcher(Cache(cache.root / "other"), mirrors(), offline=False, jobs=1).ensure(
            load(make_spec({k: {**v, "origins": v["origins"][:1]} for k, v in sources.items()}, name="u"))
        )
    lines = exc.value.lines()
    assert "http://127.0.0.1:1/b0: cannot connect: Connection refused (after 3 attempts)" in lines[0]
    assert (
        "http://127.0.0.1:1/b1: cannot connect: Connection refused (after 3 attempts) (host failed earlier in this run)"
        in lines[1]
    )


def test_only_the_last_origin_is_retried(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    """An origin that fails is left at once for the next one (no back-off); the last one left gets the retries."""
    faulty_server.routes["/first"] = Route(BLOB, then="500")
    faulty_server.routes["/second"] = Route(BLOB, actions=["500"])
    spec = one_url_spec(make_spec, faulty_server, "/first", "/second")
    assert Fetcher(cache, mirrors()).ensure(spec)["blob"].path.read_bytes() == BLOB
    assert [r.path for r in faulty_server.gets()] == ["/first", "/second", "/second"]
    assert_clean(cache, [BLOB])


def test_size_pin_is_checked_before_downloading(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob", size=1000)
    with pytest.raises(FetchFailed, match=r"/blob: server sends 300000 bytes, the spec pins size 1000"):
        Fetcher(cache, mirrors()).ensure(spec)
    assert_clean(cache, [])


def test_damaged_cached_blob_is_replaced(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    path = Fetcher(cache, mirrors()).ensure(spec)["blob"].path
    path.chmod(0o644)
    path.write_bytes(b"bit rot" + BLOB[7:])
    assert Fetcher(cache, mirrors()).ensure(spec)["blob"].path.read_bytes() == BLOB
    assert len(faulty_server.gets("/blob")) == 2
    assert_clean(cache, [BLOB])


def test_cached_blobs_are_hashed_each_time_they_are_used(
    make_spec: Any, faulty_server: TestServer, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing in the cache is trusted unchecked: a shared or restored cache cannot put other bytes in an image."""
    hashed: list[str] = []
    real = cache_module.hash_file

    def counting(path: Path) -> str:
        hashed.append(path.name.lstrip(".").removesuffix(".part"))
        return real(path)

    for module in (cache_module, fetch_module):
        monkeypatch.setattr(module, "hash_file", counting)
    deb = deb_bytes([Entry("./a", OTHER)])
    faulty_server.routes["/blob"] = Route(BLOB)
    faulty_server.routes["/a.deb"] = Route(deb)
    spec = load(
        make_spec(
            {
                "blob": {"sha256": sha(BLOB), "origins": [{"url": faulty_server.url + "/blob"}]},
                "a": {
                    "sha256": sha(OTHER),
                    "origins": [{"url": faulty_server.url + "/a.deb", "archive-sha256": sha(deb), "extract": "a"}],
                },
            }
        )
    )
    Fetcher(cache, mirrors()).ensure(spec)  # downloads are hashed as they arrive; members as they are extracted
    assert hashed == []
    for _ in range(2):  # each use hashes each blob once; the archive is not needed again
        Fetcher(Cache(cache.root), mirrors()).ensure(spec)
    assert sorted(hashed) == sorted([sha(BLOB), sha(OTHER)] * 2)
    assert len(faulty_server.gets()) == 2
    # Bytes changed in the cache (a chmod, a write): found damaged, and extracted again from the cached archive.
    hashed.clear()
    path = cache.path(sha(OTHER))
    path.chmod(0o644)
    path.write_bytes(OTHER[::-1])
    Fetcher(Cache(cache.root), mirrors()).ensure(spec)
    assert path.read_bytes() == OTHER and sha(OTHER) in hashed
    assert len(faulty_server.gets()) == 2
    assert_clean(cache, [BLOB, OTHER, deb])


def test_path_origin_and_file_mirror(make_spec: Any, tmp_path: Path, cache: Cache) -> None:
    pool = tmp_path / "specs" / "pool"
    pool.mkdir(parents=True)
    (pool / "blob.bin").write_bytes(BLOB)
    deb = deb_bytes([Entry("./usr/lib/other.bin", OTHER)])
    (pool / "x.deb").write_bytes(deb)
    spec_path = make_spec(
        {
            "blob": {"sha256": sha(BLOB), "origins": [{"path": "pool/blob.bin"}]},
            "other": {
                "sha256": sha(OTHER),
                "origins": [{"url": "${local}/x.deb", "archive-sha256": sha(deb), "extract": "usr/lib/other.bin"}],
            },
        },
        directory=tmp_path / "specs",
    )
    m = mirrors(local=pool.as_uri())
    blobs = Fetcher(cache, m, offline=True).ensure(load(spec_path, m))  # local files need no network
    assert blobs["blob"].origin == str(pool / "blob.bin")
    assert blobs["other"].origin == "${local}/x.deb (member usr/lib/other.bin)"
    assert_clean(cache, [BLOB, OTHER, deb])  # the archive is cached too, by its archive-sha256


def test_offline_names_the_missing_blob_and_the_command(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/dir/firmware.deb"] = Route(BLOB)
    spec = load(
        make_spec(
            {
                "fw.bin": {
                    "sha256": sha(OTHER),
                    "origins": [
                        {"url": faulty_server.url + "/dir/fw.bin"},
                        {"url": faulty_server.url + "/dir/firmware.deb", "archive-sha256": sha(BLOB), "extract": "fw.bin"},
                    ],
                }
            }
        )
    )
    with pytest.raises(FetchFailed) as exc:
        Fetcher(cache, mirrors(), offline=True).ensure(spec)
    assert exc.value.lines() == [
        f'{spec.display_path}:sources["fw.bin"]: sha256 {sha(OTHER)} is not in the cache {cache.root} and --offline '
        f"allows no download: run 'boot2ipxe fetch {spec.display_path}' where the network is reachable (same cache), "
        f"or 'boot2ipxe fetch {spec.display_path} --import FILE' with a copy of firmware.deb or fw.bin"
    ]
    assert faulty_server.gets() == []


# -- archives through the fetcher ------------------------------------------------------------------------


def archive_spec(make_spec: Any, server: TestServer, data: bytes, members: dict[str, bytes], name: str = "x.deb") -> Any:
    server.routes["/" + name] = Route(data)
    return load(
        make_spec(
            {
                f"m{i}": {
                    "sha256": sha(content),
                    "origins": [{"url": f"{server.url}/{name}", "archive-sha256": sha(data), "extract": member}],
                }
                for i, (member, content) in enumerate(members.items())
            }
        )
    )


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("x.deb", deb_bytes([Entry("./usr/a", BLOB), Entry("./usr/b", OTHER), Entry("./usr/c", b"c")])),
        ("x.tar.gz", tar_bytes([Entry("usr/a", BLOB), Entry("usr/b", OTHER), Entry("usr/c", b"c")], "gz")),
        ("x.zip", zip_bytes([("usr/a", BLOB, 0o100644), ("usr/b", OTHER, 0o100644), ("usr/c", b"c", 0o100644)])),
    ],
)
def test_several_members_one_download(make_spec: Any, faulty_server: TestServer, cache: Cache, name: str, data: bytes) -> None:
    spec = archive_spec(make_spec, faulty_server, data, {"usr/a": BLOB, "./usr/b": OTHER, "usr/c": b"c"}, name)
    blobs = Fetcher(cache, mirrors()).ensure(spec)
    assert [blobs[f"m{i}"].path.read_bytes() for i in range(3)] == [BLOB, OTHER, b"c"]
    assert blobs["m1"].origin == f"{faulty_server.url}/{name} (member ./usr/b)"
    assert len(faulty_server.gets()) == 1
    assert_clean(cache, [BLOB, OTHER, b"c", data])


def test_archive_with_the_wrong_hash_is_never_opened(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    data = deb_bytes([Entry("./a", BLOB)])
    spec = archive_spec(make_spec, faulty_server, data, {"a": BLOB})
    faulty_server.routes["/x.deb"] = Route(deb_bytes([Entry("./a", BLOB), Entry("./b", b"")]))
    with pytest.raises(
        FetchFailed, match=r"x\.deb \(member a\): served bytes with sha256 [0-9a-f]{64}, not the pinned " + sha(data)
    ):
        Fetcher(cache, mirrors()).ensure(spec)
    assert_clean(cache, [])


@pytest.mark.parametrize(
    ("entries", "member", "reason"),
    [
        ([Entry("./usr/a", BLOB)], "usr/b", "no member usr/b in the archive (did you mean usr/a?)"),
        (
            [Entry("../evil", b"x"), Entry("./usr/a", BLOB)],
            "usr/a",
            "member '../evil' has an absolute path or '..': refusing the archive",
        ),
        (
            [Entry("/etc/evil", b"x"), Entry("./usr/a", BLOB)],
            "usr/a",
            "member '/etc/evil' has an absolute path or '..': refusing the archive",
        ),
        (
            [Entry("./usr/a", BLOB), Entry("./usr/link", type=b"2", linkname="a")],
            "usr/link",
            "usr/link is a symbolic link to a (usr/a in the archive): extract that member instead",
        ),
        ([Entry("./usr/a", BLOB)], "usr/a", "usr/a is 293.0 KiB, over the 97.7 KiB bound for archive members"),
        ([Entry("./usr/a", OTHER)], "usr/a", f"member usr/a has sha256 {sha(OTHER)}, not the pinned {sha(BLOB)}"),
        ([Entry("./usr/a", BLOB)], "../usr/a", "extract: '../usr/a' must be a relative path without '..'"),
    ],
)
def test_archive_refusals(
    make_spec: Any, faulty_server: TestServer, cache: Cache, entries: list[Entry], member: str, reason: str
) -> None:
    data = deb_bytes(entries)
    spec = archive_spec(make_spec, faulty_server, data, {member: BLOB})
    with pytest.raises(FetchFailed) as exc:
        Fetcher(cache, mirrors(), max_member_size=100_000).ensure(spec)
    [line] = exc.value.lines()
    where = f"{faulty_server.url}/x.deb (member {member})"
    if reason.startswith("member '"):
        reason = f"archive {sha(data)[:12]}…: {reason}"
    assert f"[1] {where}: {reason}; fix the origins" in line
    assert_clean(cache, [data] if not reason.startswith("extract:") else [])


def test_local_file_with_wrong_bytes_is_skipped(make_spec: Any, tmp_path: Path, cache: Cache) -> None:
    (tmp_path / "old.bin").write_bytes(b"an older build")
    (tmp_path / "new.bin").write_bytes(BLOB)
    spec = load(
        make_spec({"blob": {"sha256": sha(BLOB), "origins": [{"path": "old.bin"}, {"path": "missing.bin"}, {"path": "new.bin"}]}})
    )
    report = Fetcher(cache, mirrors()).fetch([spec])
    assert report.failures == [] and report.outcomes[0].blob is not None
    assert report.outcomes[0].blob.origin == str(tmp_path / "new.bin")
    cache2 = Cache(tmp_path / "c2")
    (tmp_path / "new.bin").unlink()
    with pytest.raises(FetchFailed) as exc:
        Fetcher(cache2, mirrors()).ensure(spec)
    assert (
        f"[1] {tmp_path / 'old.bin'}: has sha256 {sha(b'an older build')}, not the pinned {sha(BLOB)}; "
        f"[2] {tmp_path / 'missing.bin'}: no such file {tmp_path / 'missing.bin'}; "
        f"[3] {tmp_path / 'new.bin'}: no such file {tmp_path / 'new.bin'};" in exc.value.lines()[0]
    )
    assert_clean(cache2, [])


def test_interrupt_stops_running_downloads(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    """Ctrl-C (here: raised by the reporter) does not wait for slow downloads; their partial file is kept."""
    faulty_server.routes["/quick"] = Route(OTHER)
    faulty_server.routes["/slow"] = Route(BLOB, then="drip", drip=0.3)  # 5 chunks: 1.5 s
    spec = load(
        make_spec(
            {
                "quick": {"sha256": sha(OTHER), "origins": [{"url": faulty_server.url + "/quick"}]},
                "slow": {"sha256": sha(BLOB), "origins": [{"url": faulty_server.url + "/slow"}]},
            }
        )
    )

    class Interrupting:
        def progress(self, label: str, done: int, total: int | None) -> None:
            pass

        def outcome(self, outcome: Any) -> None:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        Fetcher(cache, mirrors(), reporter=Interrupting()).fetch([spec])
    assert time.monotonic() - started < 1.2
    assert cache.lookup(sha(BLOB)) is None and cache.partial(sha(BLOB)).exists()


def test_complete_partial_file_needs_no_body(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    cache.partial(sha(BLOB)).write_bytes(BLOB)  # an earlier run died between the last byte and the rename
    Fetcher(cache, mirrors()).ensure(spec)
    assert [r.range for r in faulty_server.gets("/blob")] == [f"bytes={len(BLOB)}-"]  # answered 416 */300000
    assert_clean(cache, [BLOB])


def test_unpinned_download_is_bounded(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    with pytest.raises(FetchFailed, match=r"/blob: more than 97\.7 KiB sent; refusing the rest"):
        Fetcher(cache, mirrors(), net=NetConfig(max_bytes=100_000)).ensure(spec)
    assert_clean(cache, [])


def test_wrong_size_pin_with_the_right_bytes(make_spec: Any, faulty_server: TestServer, cache: Cache) -> None:
    data = deb_bytes([Entry("./a", OTHER)], "gz")
    faulty_server.routes["/a.deb"] = Route(data)
    origin = {"url": faulty_server.url + "/a.deb", "archive-sha256": sha(data), "extract": "a"}
    spec = load(make_spec({"a": {"sha256": sha(OTHER), "size": 4999, "origins": [origin]}}))
    with pytest.raises(FetchFailed) as exc:
        Fetcher(cache, mirrors()).ensure(spec)
    assert exc.value.lines() == [
        f"{spec.display_path}:sources.a: the bytes match sha256 but are 5000 bytes, not size: 4999; fix the size in the spec"
    ]


@pytest.mark.parametrize(
    ("base", "reason"),
    [("ftp://mirror.example/debian", "unsupported URL scheme 'ftp'"), ("file://host/srv", "file:// URL with a host (host)")],
)
def test_unusable_mirror_urls(make_spec: Any, cache: Cache, base: str, reason: str) -> None:
    m = mirrors(odd=base)  # a config file can hold any string; --mirror itself accepts only http(s) and file
    spec = load(make_spec({"blob": {"sha256": sha(BLOB), "origins": [{"url": "${odd}/blob"}]}}), m)
    with pytest.raises(FetchFailed, match=f"\\[1\\] {base}/blob: {re.escape(reason)}"):
        Fetcher(cache, m).ensure(spec)


def test_cache_directory_that_cannot_be_created(make_spec: Any, faulty_server: TestServer, tmp_path: Path) -> None:
    faulty_server.routes["/blob"] = Route(BLOB)
    spec = one_url_spec(make_spec, faulty_server, "/blob")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(
        FetchError, match=r"cannot create the cache directory .*file/blobs/sha256/\w\w: Not a directory; set --cache-dir"
    ):
        Fetcher(Cache(tmp_path / "file"), mirrors()).ensure(spec)


def test_downloads_start_together_when_many_blobs_share_an_archive() -> None:
    """Blobs from one archive wait for its download: the first needs handed to the workers come from different
    archives, so every download starts at once (rpi3bp: 4 archives, 10 blobs)."""
    from boot2ipxe.fetch.fetcher import _Need, spread
    from boot2ipxe.spec.model import Origin

    def need(name: str, archive: str | None) -> _Need:
        direct = Origin(url=f"https://github.example/{name}")
        if archive is None:
            return _Need(sha(name.encode()), None, [direct], [])
        member = Origin(url=f"http://127.0.0.1:9/{archive}.deb", extract=name, archive_sha256=sha(archive.encode()))
        return _Need(sha(name.encode()), None, [direct, member], [])

    needs = [need("a1", "A"), need("a2", "A"), need("a3", "A"), need("b1", "B"), need("b2", "B"), need("c", None)]
    order = [n.origins[0].url.rsplit("/", 1)[-1] for n in spread(needs) if n.origins[0].url]
    assert order == ["a1", "b1", "c", "a2", "b2", "a3"]
    assert sorted(map(id, spread(needs))) == sorted(map(id, needs))
