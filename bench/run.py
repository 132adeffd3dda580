#!/usr/bin/env python3
"""Benchmark boot2ipxe against genimage and curl, side by side in one run on this machine.

    python bench/run.py [--runs N] [--quick] [--only build,inject,fetch] [--work DIR] [--keep]

What it measures (every boot2ipxe step is the CLI as a user runs it, interpreter start-up included: the
``boot2ipxe`` command of a virtual environment of its own, where this checkout is installed by pip as a user
installs it, not editable; its dependencies are the running interpreter's):

- warm builds of every platform in ``platforms/`` with ``boot2ipxe build``, and of the same layout and
  files with ``genimage`` (its config is written here from boot2ipxe's plan), runs interleaved;
- ``boot2ipxe inject`` of 100 machines (distinct certificates) from one base image, in one call;
- a cold ``boot2ipxe fetch`` (fresh cache) from the local Debian test mirror against ``curl`` of the same
  archive files from the same local server;
- each image's allocation on disk against its payload (the bytes of the files placed in it).

It prints Markdown tables and ends with one summary line per target, the first being exactly
``worst build ratio vs genimage: R``. Needs genimage, curl, mtools, dosfstools, e2fsprogs and the test
mirror (``python tests/mirror.py prepare``); makes no request beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import mirror as test_mirror  # noqa: E402  (tests/mirror.py: where the local Debian test mirror lives)

from boot2ipxe.fetch import archive  # noqa: E402
from boot2ipxe.fetch.cache import Cache  # noqa: E402
from boot2ipxe.fetch.fetcher import Fetcher  # noqa: E402
from boot2ipxe.formats.fat import SECTOR, read_boot_sector  # noqa: E402
from boot2ipxe.formats.fatfs import FatReader  # noqa: E402
from boot2ipxe.formats.sparse import hash_image  # noqa: E402
from boot2ipxe.inspect.image import read_partition_table  # noqa: E402
from boot2ipxe.plan.layout import Plan, checked_plan  # noqa: E402
from boot2ipxe.plan.validate import require_valid  # noqa: E402
from boot2ipxe.spec.mirrors import Mirrors  # noqa: E402
from boot2ipxe.spec.model import Blob, Spec  # noqa: E402

PLATFORMS = ("x86-uefi", "rpi3bp", "rpi4")
INJECT_BASE = "rpi3bp"  # the largest FAT of the three: the most work per machine
MACHINES = 100
FETCH_PLATFORMS = ("x86-uefi", "rpi3bp")
CLOSED_PROXY = "http://127.0.0.1:9"  # nothing listens there: origins on the internet fail without leaving the machine
MiB = 1024 * 1024

TARGET_BUILD_RATIO = 1.0
TARGET_INJECT_MS = 50.0
TARGET_OVER_PAYLOAD = 2 * MiB
TARGET_FETCH_PERCENT = 90.0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- timing -------------------------------------------------------------------------------------------


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # user + system of the child processes

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def spread(self) -> str:
        return f"{min(self.wall):.3f}–{max(self.wall):.3f}"

    def show(self) -> str:
        return f"{self.median:.3f} s [{self.spread()}]"


def run(argv: Sequence[str], env: Mapping[str, str], cwd: Path = ROOT, samples: Samples | None = None) -> str:
    """Run a command (timed into ``samples`` when given); exit with its stderr if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, argv))[:300]} exited {result.returncode}:\n{result.stderr[-3000:]}")
    if samples is not None:
        samples.wall.append(wall)
        samples.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return result.stdout


def child_env(work: Path) -> dict[str, str]:
    """The environment of every command: no user configuration, internet origins refused at once.

    PYTHONDONTWRITEBYTECODE is dropped so that boot2ipxe runs from cached bytecode, as it does once installed
    with pip (or after its first run from a checkout); the untimed warm-up runs write that cache.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOT2IPXE_") and k != "PYTHONDONTWRITEBYTECODE"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = CLOSED_PROXY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["XDG_CONFIG_HOME"] = str(work / "config")
    env.pop("SOURCE_DATE_EPOCH", None)
    return env


BIN: Path | None = None  # the benchmark's own virtual environment (install_boot2ipxe)


def boot2ipxe(*args: str) -> list[str]:
    assert BIN is not None, "install_boot2ipxe first"
    return [str(BIN / "boot2ipxe"), *args]


def install_boot2ipxe(work: Path) -> Path:
    """A virtual environment with boot2ipxe installed from a copy of this checkout by pip, not editable.

    The dependencies come from the running interpreter's site-packages (a path in a .pth file, whose own .pth
    files are not run), so nothing is downloaded but pip's build backend; the copy keeps build/ out of the checkout.
    """
    venv = work / "venv"
    if (venv / "bin" / "boot2ipxe").exists():
        return venv / "bin"
    log("installing boot2ipxe into a virtual environment of its own (untimed)")
    source = reset_dir(work / "source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "boot2ipxe", source / "boot2ipxe", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    (site / "bench-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps"]
    installed = subprocess.run([*pip, str(source)], capture_output=True, text=True, check=False)
    if installed.returncode != 0:
        sys.exit(f"bench: pip could not install boot2ipxe into {venv}:\n{installed.stderr[-3000:]}")
    return venv / "bin"


def reset_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def remove_image(image: Path) -> None:
    for path in image.parent.glob(image.name + "*"):
        path.unlink()


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def du_bytes(directory: Path) -> int:
    return int(subprocess.run(["du", "-sk", str(directory)], capture_output=True, text=True, check=True).stdout.split()[0]) * 1024


def mib(size: float) -> str:
    return f"{size / MiB:.2f} MiB"


# -- the local mirror -----------------------------------------------------------------------------------


class Server:
    """``python -m http.server`` on 127.0.0.1 serving the test mirror, in its own process; its log is kept."""

    def __init__(self, directory: Path, log_path: Path) -> None:
        self.log_path = log_path
        self._log: IO[str] = log_path.open("w")
        argv = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", str(directory)]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            self.stop()
            sys.exit(f"bench: the local HTTP server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def requests_since(self, offset: int) -> list[str]:
        """Paths fetched with GET since the log had ``offset`` bytes."""
        self._log.flush()
        with self.log_path.open() as f:
            f.seek(offset)
            return re.findall(r'"GET (\S+) HTTP', f.read())

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        self._log.close()


# -- genimage -----------------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def genimage_config(plan: Plan, blobs: Mapping[str, Blob], inputs: Path) -> str:
    """genimage's description of the same disk: table, offsets, sizes, FAT variant and geometry, ext4, files.

    Rendered templates are written to ``inputs``; blobs are named by their path in the warm cache.
    """
    name = plan.spec.name
    lines: list[str] = []
    partitions: list[str] = []
    for p in plan.partitions:
        image = ""  # a partition without a filesystem is left empty
        if p.fat is not None:
            image = f"{name}-p{p.index}.vfat"
            g = p.fat
            extra = f"-F {g.bits} -s {g.sectors_per_cluster} -R {g.reserved_sectors} -f {g.fat_count} -h {g.hidden_sectors}"
            extra += f" -i {p.fs_id} -S {SECTOR}" + (f" -r {g.root_entries}" if g.bits != 32 else "")
            lines += [f"image {image} {{", "  temporary = true", f"  size = {p.size}", "  vfat {"]
            if p.label:
                lines.append(f"    label = {_quote(p.label)}")
            lines.append(f"    extraargs = {_quote(extra)}")
            for n, f in enumerate(p.files):
                if f.data is not None:
                    source = inputs / f"p{p.index}-{n}-{Path(f.dest).name}"
                    source.write_bytes(f.data)
                else:
                    source = blobs[f.source or ""].path
                lines.append(f"    file {_quote(f.dest)} {{ image = {_quote(str(source))} }}")
            lines += ["  }", "}"]
        elif p.ext4 is not None:
            image = f"{name}-p{p.index}.ext4"
            e = p.ext4
            # genimage adds -O ^large_file -O ^huge_file; the -O here (after them) turns them back on, as boot2ipxe has them.
            extra = f"-b {e.block_size} -U {e.uuid} -E hash_seed={e.hash_seed},lazy_itable_init=1,lazy_journal_init=1,nodiscard"
            extra += " -O large_file,huge_file"
            lines += [f"image {image} {{", "  temporary = true", f"  size = {p.size}", "  empty = true"]
            lines.append("  ext4 {")
            lines += ["    use-mke2fs = true", f"    mke2fs-conf = {_quote(str(ROOT / 'boot2ipxe' / 'data' / 'mke2fs.conf'))}"]
            if p.label:
                lines.append(f"    label = {_quote(p.label)}")
            lines += [f"    extraargs = {_quote(extra)}", "  }", "}"]
        part = [f"  partition {p.name} {{", f"    offset = {p.offset}", f"    size = {p.size}"]
        if plan.table == "gpt":
            part += [f"    partition-type-uuid = {_quote(p.type_code)}", f"    partition-uuid = {_quote(p.uuid or '')}"]
        else:
            part.append(f"    partition-type = 0x{p.type_code}")
        part.append(f"    bootable = {'true' if p.bootable else 'false'}")
        if image:
            part.append(f"    image = {_quote(image)}")
        partitions += [*part, "  }"]
    for n, raw in enumerate(plan.raw):
        partitions += [
            f"  partition raw{n} {{",
            "    in-partition-table = false",
            f"    offset = {raw.offset}",
            f"    image = {_quote(str(blobs[raw.source].path))}",
            "  }",
        ]
    hd = ["  hdimage {", f"    partition-table-type = {_quote('gpt' if plan.table == 'gpt' else 'mbr')}"]
    if plan.table == "gpt":
        hd.append(f"    disk-uuid = {_quote(plan.disk_id)}")
    else:
        hd.append(f"    disk-signature = {plan.disk_id}")
    hd += [f"    align = {plan.spec.disk.alignment}", "  }"]
    lines += [f"image {name}.img {{", f"  size = {plan.size}", *hd, *partitions, "}"]
    return "\n".join(lines) + "\n"


@dataclass
class GenimageJob:
    name: str
    directory: Path
    image: Path

    def argv(self) -> list[str]:
        d = self.directory
        paths = {"config": "genimage.cfg", "rootpath": "root", "tmppath": "tmp", "inputpath": "input", "outputpath": "out"}
        return ["genimage", *(arg for option, path in paths.items() for arg in (f"--{option}", str(d / path)))]

    def prepare(self) -> None:
        reset_dir(self.directory / "out")
        shutil.rmtree(self.directory / "tmp", ignore_errors=True)


def make_genimage_job(work: Path, plan: Plan, blobs: Mapping[str, Blob]) -> GenimageJob:
    d = reset_dir(work / "genimage" / plan.spec.name)
    for sub in ("root", "input", "out"):
        (d / sub).mkdir()
    (d / "genimage.cfg").write_text(genimage_config(plan, blobs, d / "input"))
    return GenimageJob(plan.spec.name, d, d / "out" / f"{plan.spec.name}.img")


# -- comparing the two images -------------------------------------------------------------------------


def describe(image: Path) -> dict[str, Any]:
    """What both tools should agree on: table, partitions, FAT geometry and files, ext4 identity."""
    table = read_partition_table(image)
    parts = []
    with image.open("rb") as f:
        for p in table.partitions:
            entry: dict[str, Any] = {"start": p.start, "sectors": p.sectors, "type": p.type_code.lower(), "bootable": p.bootable}
            if table.kind == "gpt":
                entry |= {"uuid": (p.uuid or "").upper(), "name": p.name}
            f.seek(p.start * SECTOR)
            head = f.read(2048)
            if head[510:512] == b"\x55\xaa" and b"FAT" in head[54:90]:
                reader = FatReader(f, p.start * SECTOR)
                entry["fat"] = read_boot_sector(head[:SECTOR])
                entry["fat_label"], entry["fat_serial"] = reader.label, reader.serial
                entry["files"] = {
                    e.path: hashlib.sha256(reader.read(e.path)).hexdigest() for e in reader.entries() if not e.is_dir
                }
            elif head[1024 + 56 : 1024 + 58] == b"\x53\xef":
                entry["ext4"] = ext4_facts(image, p.start * SECTOR)
            parts.append(entry)
    return {"table": table.kind, "disk_id": table.disk_id.lower(), "partitions": parts, "size": image.stat().st_size}


def ext4_facts(image: Path, offset: int) -> dict[str, str]:
    """The ext4 superblock's identity and feature flags."""
    with image.open("rb") as f:
        f.seek(offset + 1024)
        sb = f.read(1024)
    blocks = int.from_bytes(sb[4:8], "little") | int.from_bytes(sb[0x150:0x154], "little") << 32
    block_size = 1024 << int.from_bytes(sb[24:28], "little")
    uuid = sb[104:120].hex()
    return {
        "blocks": str(blocks),
        "block_size": str(block_size),
        "label": sb[120:136].split(b"\0")[0].decode(),
        "uuid": f"{uuid[:8]}-{uuid[8:12]}-{uuid[12:16]}-{uuid[16:20]}-{uuid[20:]}",
        "features": f"compat {int.from_bytes(sb[92:96], 'little'):#x}, incompat {int.from_bytes(sb[96:100], 'little'):#x}, "
        f"ro_compat {int.from_bytes(sb[100:104], 'little'):#x}",
        "inodes": str(int.from_bytes(sb[0:4], "little")),
    }


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    found = []
    for key in ("table", "disk_id", "size"):
        if ours[key] != theirs[key]:
            found.append(f"{key}: {ours[key]} vs {theirs[key]}")
    for i, (a, b) in enumerate(zip(ours["partitions"], theirs["partitions"], strict=False), 1):
        for key in sorted(set(a) | set(b)):
            if key == "fat" and a.get(key) != b.get(key):
                fa, fb = a.get(key), b.get(key)
                diff = [f"{k} {getattr(fa, k)} vs {getattr(fb, k)}" for k in vars(fa) if getattr(fa, k) != getattr(fb, k)]
                found.append(f"partition {i} FAT geometry: " + ", ".join(diff))
            elif key == "files" and a.get(key) != b.get(key):
                found.append(f"partition {i} files differ: {sorted(set(a[key].items()) ^ set(b[key].items()))}")
            elif key == "ext4" and a.get(key) != b.get(key):
                diff = [f"{k} {a[key][k]} vs {b[key][k]}" for k in a[key] if a[key][k] != b[key].get(k)]
                found.append(f"partition {i} ext4: " + ", ".join(diff))
            elif a.get(key) != b.get(key):
                found.append(f"partition {i} {key}: {a.get(key)} vs {b.get(key)}")
    if len(ours["partitions"]) != len(theirs["partitions"]):
        found.append(f"{len(ours['partitions'])} vs {len(theirs['partitions'])} partitions")
    return found


# -- the benchmark ------------------------------------------------------------------------------------


@dataclass
class Platform:
    name: str
    spec: Spec
    plan: Plan
    blobs: dict[str, Blob]
    payload: int
    genimage: GenimageJob
    image: Path
    ours: Samples = field(default_factory=Samples)
    theirs: Samples = field(default_factory=Samples)
    fresh: Samples = field(default_factory=Samples)  # build --fresh: the build cache ignored
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.ours.median / self.theirs.median


def payload_of(plan: Plan, blobs: Mapping[str, Blob]) -> int:
    files = sum(len(f.data) if f.data is not None else blobs[f.source or ""].size for p in plan.partitions for f in p.files)
    return files + sum(blobs[r.source].size for r in plan.raw)


def warm_cache(cache: Path, mirror: Path, specs: Sequence[Spec], mirrors: Mirrors) -> None:
    """Fill the cache from the mirror's files without the network (import, then an offline fetch)."""
    fetcher = Fetcher(Cache(cache), mirrors, offline=True)
    fetcher.import_files(sorted(p for p in (mirror / "pool").rglob("*") if p.is_file()), specs)
    report = fetcher.fetch(specs)
    if report.failures:
        sys.exit("bench: could not fill the cache from the test mirror:\n" + "\n".join(map(str, report.failures)))


def bench_builds(platforms: list[Platform], runs: int, env: Mapping[str, str], cache: Path, url: str) -> None:
    def ours(p: Platform, samples: Samples | None, *extra: str) -> None:
        remove_image(p.image)
        spec_path = str(ROOT / "platforms" / f"{p.name}.yaml")
        argv = boot2ipxe("build", spec_path, "-o", str(p.image), "--cache-dir", str(cache), "--mirror", f"debian={url}")
        run([*argv, *extra], env, samples=samples)

    def theirs(p: Platform, samples: Samples | None) -> None:
        p.genimage.prepare()
        run(p.genimage.argv(), env, cwd=p.genimage.directory, samples=samples)

    for p in platforms:  # warm-up (untimed): bytecode and page caches, and the images compared below
        ours(p, None)
        theirs(p, None)
        found = differences(describe(p.image), describe(p.genimage.image))
        p.notes += found or [
            "same table, disk id, partition starts, sizes, types, flags and GUIDs, FAT variant and geometry, FAT label "
            "and serial, file contents, ext4 size, UUID, label and features (not the same bytes: boot-sector fields "
            "each formatter sets its own way, such as the OEM name and drive number, where files are placed, timestamps)"
        ]
        extra = sorted(x.name for x in p.genimage.image.parent.iterdir() if x != p.genimage.image)
        p.notes.append("genimage wrote " + (", ".join(extra) if extra else "the image only (no sidecar files)"))
    for n in range(runs):
        log(f"builds: run {n + 1}/{runs}")
        for p in platforms:
            steps: list[Callable[[Platform, Samples | None], None]] = [ours, theirs] if n % 2 == 0 else [theirs, ours]
            for step in steps:
                step(p, p.ours if step is ours else p.theirs)
            ours(p, p.fresh, "--fresh")
        for p in platforms:
            ours(p, None)  # leave the image of a warm build, and the build cache as a warm build leaves it


@dataclass
class InjectResult:
    samples: Samples
    cp_samples: Samples
    disk: int
    images: int
    worst_over: int
    worst_image: str


def bench_inject(base: Platform, work: Path, runs: int, env: Mapping[str, str]) -> InjectResult:
    pki = work / "pki"
    names = [f"m{i:03d}" for i in range(MACHINES)]
    if not (pki / "machines" / names[-1] / "client.crt.pem").exists():
        log(f"inject: certs init + certs issue for {MACHINES} machines (untimed)")
        shutil.rmtree(pki, ignore_errors=True)
        run(boot2ipxe("certs", "init", str(pki)), env)
        run(boot2ipxe("certs", "issue", str(pki), *names), env)
    out = work / "machines"
    argv = boot2ipxe("inject", str(base.image), "-o", str(out / "{name}.img"), "--server", "https://boot.example.com")
    argv += ["--pki", str(pki)] + [arg for name in names for arg in ("--name", name)]
    samples, cp_samples = Samples(), Samples()
    copy_loop = f'for n in {" ".join(names)}; do cp --sparse=always "$0" "$1/$n.img"; done'
    reset_dir(out)
    run(argv, env)  # warm-up
    for n in range(runs):
        log(f"inject: run {n + 1}/{runs}")
        reset_dir(out)
        run(["sh", "-c", copy_loop, str(base.image), str(out)], env, samples=cp_samples)
        reset_dir(out)
        run(argv, env, samples=samples)
    images = sorted(out.glob("*.img"))
    assert len(images) == MACHINES, len(images)
    # Payload of a machine image: the base's files with the script replaced by the injected ones.
    script = base.spec.ipxe.script if base.spec.ipxe else None
    old = next((len(f.data or b"") for p in base.plan.partitions for f in p.files if f.dest == script), 0)
    worst_over, worst_image = -(1 << 62), ""
    for image in images:
        facts = json.loads(image.with_name(image.name + ".manifest.json").read_text())
        over = allocated(image) - (base.payload - old + sum(f["size"] for f in facts["files"]))
        if over > worst_over:
            worst_over, worst_image = over, image.name
    return InjectResult(samples, cp_samples, du_bytes(out), len(images), worst_over, worst_image)


@dataclass
class FetchResult:
    platform: str
    archives: list[str]
    size: int
    ours: Samples
    curl: Samples
    requested_same: bool
    startup: Samples  # boot2ipxe fetch --help: interpreter and the command's imports
    extraction: Samples  # taking the members out of the archives, in this process
    # Transfer throughput (bytes/s) of each run, as each tool reports it: boot2ipxe fetch --json "downloads"
    # (first request to last byte written and hashed), curl -w (size_download over time_total of the slowest).
    ours_rate: list[float] = field(default_factory=list)
    curl_rate: list[float] = field(default_factory=list)

    @property
    def percent(self) -> float:
        return 100 * statistics.median(self.ours_rate) / statistics.median(self.curl_rate)

    @property
    def wall_percent(self) -> float:
        return 100 * self.curl.median / self.ours.median


def mirror_origins(spec: Spec) -> dict[str, list[str]]:
    """The files a cold fetch takes from the mirror (each source's first ${debian} origin): pool path -> members."""
    found: dict[str, list[str]] = {}
    for source in spec.sources.values():
        origin = next((o for o in source.origins if o.url and o.url.startswith("${debian}/")), None)
        if origin is not None and origin.url is not None:
            members = found.setdefault(origin.url.removeprefix("${debian}/"), [])
            if origin.extract:
                members.append(archive.member_name(origin.extract))
    return found


def time_extraction(mirror: Path, origins: Mapping[str, list[str]], scratch: Path, samples: Samples) -> None:
    """archive.extract of every wanted member, as fetch does it once the archives are in the cache."""
    reset_dir(scratch)
    start = time.perf_counter()
    for path, members in origins.items():
        if members:
            archive.extract(mirror / path, members, {m: scratch / str(i) for i, m in enumerate(members)})
    samples.wall.append(time.perf_counter() - start)


LARGE_BLOB_SPEC = """\
spec: 1
name: large-blob
description: bench/run.py's cold fetch of one large file
arch: x86_64
chain: [uefi, ipxe]
sources:
  big:
    sha256: {sha256}
    origins: [{{url: "${{debian}}/{path}"}}]
disk: {{table: gpt, size: 512MiB}}
partitions:
  - {{name: esp, type: efi-system, size: 256MiB, filesystem: vfat, files: [{{dest: EFI/BOOT/BOOTX64.EFI, source: big}}]}}
ipxe: {{partition: esp, binary: EFI/BOOT/BOOTX64.EFI, firmware: uefi}}
"""


def large_blob_spec(work: Path, mirror: Path) -> Path:
    """A spec whose one source is the test mirror's largest file, downloaded as it is (steady-state throughput)."""
    from boot2ipxe.fetch.cache import hash_file

    largest = max((p for p in (mirror / "pool").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    spec = work / "large-blob.yaml"
    spec.write_text(LARGE_BLOB_SPEC.format(sha256=hash_file(largest), path=largest.relative_to(mirror).as_posix()))
    return spec


def bench_fetch(
    name: str, spec_path: Path, spec: Spec, work: Path, runs: int, env: Mapping[str, str], server: Server
) -> FetchResult:
    origins = mirror_origins(spec)
    mirror = test_mirror.mirror_dir()
    urls = [f"{server.url}/{path}" for path in origins]
    size = sum((mirror / path).stat().st_size for path in origins)
    cold = work / "cold-cache"
    downloads = work / "curl"
    ours_argv = boot2ipxe("fetch", str(spec_path), "--json", "--cache-dir", str(cold), "--mirror", f"debian={server.url}")
    curl_argv = ["curl", "--silent", "--show-error", "--fail", "--write-out", "%{size_download} %{time_total}\\n"]
    curl_argv += ["--parallel", "--parallel-max", "4"] if len(urls) > 1 else []
    for i, u in enumerate(urls):
        curl_argv += ["-o", str(downloads / f"{i}"), u]
    ours, curl, startup, extraction = Samples(), Samples(), Samples(), Samples()
    ours_rate: list[float] = []
    curl_rate: list[float] = []
    requested: set[str] = set()
    for n in range(runs + 1):  # the first run of each is a warm-up
        log(f"fetch {name}: run {n}/{runs}" if n else f"fetch {name}: warm-up")
        for step in ("ours", "curl") if n % 2 == 0 else ("curl", "ours"):
            if step == "ours":
                reset_dir(cold)
                offset = server.log_size()
                report = json.loads(run(ours_argv, env, samples=ours if n else None))
                requested = {server.url + path for path in server.requests_since(offset)}
                if n:
                    ours_rate.append(report["downloads"]["bytes_per_second"])
            else:
                reset_dir(downloads)
                written = run(curl_argv, env, samples=curl if n else None).split()
                sizes, times = [int(x) for x in written[::2]], [float(x) for x in written[1::2]]
                if n:
                    curl_rate.append(sum(sizes) / max(times))
        if n:
            run(boot2ipxe("fetch", "--help"), env, samples=startup)
            time_extraction(mirror, origins, work / "extracted", extraction)
    return FetchResult(name, urls, size, ours, curl, requested == set(urls), startup, extraction, ours_rate, curl_rate)


# What a warm build imports (tests/test_build_cache.py keeps YAML, JSON Schema, Jinja2, libparted, argparse, pathlib,
# json, re, subprocess and threading out of it).
WARM_IMPORTS = "import boot2ipxe.cli, boot2ipxe.warm, boot2ipxe.buildcache, boot2ipxe.stamps, boot2ipxe.build.assemble"


def bench_floor(platforms: list[Platform], runs: int, env: Mapping[str, str]) -> dict[str, Samples]:
    """What a boot2ipxe build cannot avoid: the interpreter, the CLI's imports, and sha256 over the image."""
    floor = {"python": Samples(), "imports": Samples(), "cli": Samples(), "hash": Samples()}
    for _ in range(runs):
        assert BIN is not None
        run([str(BIN / "python"), "-c", "pass"], env, samples=floor["python"])
        run([str(BIN / "python"), "-P", "-c", WARM_IMPORTS], env, samples=floor["imports"])
        run(boot2ipxe("build", "--help"), env, samples=floor["cli"])
        start = time.perf_counter()
        hash_image(platforms[0].image)
        floor["hash"].wall.append(time.perf_counter() - start)
    return floor


# -- report -------------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else "?"


def report(
    platforms: list[Platform],
    builds: bool,
    floor: dict[str, Samples] | None,
    inject: InjectResult | None,
    fetches: list[FetchResult],
    runs: int,
) -> None:
    p_ = print
    genimage_version = tool_version(["dpkg-query", "-W", "-f", "${Version}", "genimage"])
    p_("## boot2ipxe benchmark")
    p_()
    p_(
        f"{platform.node()}: {os.cpu_count()} CPUs, Linux {platform.release()}, Python {platform.python_version()}, "
        f"genimage {genimage_version}, {tool_version(['curl', '--version']).split(' (')[0]}; "
        f"{runs} timed runs of each command after one warm-up, the two tools interleaved. "
        "Times are wall-clock medians [min–max]."
    )
    summary: list[str] = []
    if builds:
        summary += report_builds(platforms, floor)
    if inject is not None:
        summary += report_inject(inject)
    summary += report_allocation(platforms, inject)
    if fetches:
        summary += report_fetch(fetches)
    p_()
    p_("### Summary (one line per target)")
    p_()
    for line in summary:
        p_(line)


def report_builds(platforms: list[Platform], floor: dict[str, Samples] | None) -> list[str]:
    p_ = print
    p_()
    p_("### Warm build: `boot2ipxe build` vs `genimage` (same layout and files)")
    p_()
    p_("| platform | boot2ipxe | genimage | ratio | boot2ipxe CPU | genimage CPU | boot2ipxe `--fresh` |")
    p_("|---|---|---|---|---|---|---|")
    for p in platforms:
        p_(
            f"| {p.name} | {p.ours.show()} | {p.theirs.show()} | {p.ratio:.2f} | {p.ours.cpu_median:.3f} s | "
            f"{p.theirs.cpu_median:.3f} s | {p.fresh.show()} |"
        )
    p_()
    p_("What differs between the two images and runs:")
    p_()
    for p in platforms:
        for note in p.notes:
            p_(f"- {p.name}: {note}")
    p_(
        "- A warm boot2ipxe build finds the recipe a build of the same spec, templates, options and boot2ipxe stored in "
        "the cache (so it does not parse, validate or plan again, nor import argparse, pathlib, json, re, subprocess or "
        "threading), checks that its blobs are cached and unchanged, writes the partition table's bytes (computed "
        "from the plan as sfdisk writes them), runs mtools and mke2fs (at the same time, on disjoint parts of the "
        "image, spawned with posix_spawn), hashes the blocks that hold "
        "data, and, finding that an image with these bytes was already read back and hashed, writes IMAGE.sha256, "
        "IMAGE.manifest.json and IMAGE.bmap without reading the partition table back or hashing the 1 GiB again. "
        "`--fresh` ignores the build cache: it validates, plans, renders, reads the table back with sfdisk and "
        "libparted, checks the FAT boot sectors and hashes every byte. genimage is given the finished plan and "
        "rendered files, hashes nothing and writes no sidecar, but runs e2fsck -pvfD on the ext4 image it made and "
        "copies its partition images into the disk image."
    )
    if floor is not None:
        p_()
        p_("Parts of a boot2ipxe build, measured alone:")
        p_()
        p_("| step | median |")
        p_("|---|---|")
        p_(f"| Python start-up (the virtual environment's `python -c pass`) | {floor['python'].show()} |")
        imports = f"Python start-up and the modules a warm build imports, nothing run (`python -c '{WARM_IMPORTS}'`)"
        p_(f"| {imports} | {floor['imports'].show()} |")
        p_(f"| CLI start-up (`boot2ipxe build --help`) | {floor['cli'].show()} |")
        p_(f"| sha256 of one 1 GiB image (`sparse.hash_image`, in this process) | {floor['hash'].show()} |")
        p_()
        p_(
            "The image hash is what `--fresh` spends most of its time on, and what the build cache saves a warm "
            "build: an image with the same bytes as one already hashed is not hashed again. Start-up with a warm "
            f"build's imports alone takes {floor['imports'].median / min(p.theirs.median for p in platforms):.0%} of "
            "the fastest genimage median."
        )
    worst = max(platforms, key=lambda p: p.ratio)
    ok = worst.ratio <= TARGET_BUILD_RATIO
    p_()
    p_(f"Worst ratio {worst.ratio:.2f} ({worst.name}), target <= {TARGET_BUILD_RATIO:.2f} for every platform: {verdict(ok)}.")
    return [f"worst build ratio vs genimage: {worst.ratio:.2f}"]


def report_inject(inject: InjectResult) -> list[str]:
    p_ = print
    p_()
    p_(f"### Inject: {MACHINES} machines from one {INJECT_BASE} base image, one `boot2ipxe inject` call")
    p_()
    per = inject.samples.median / MACHINES * 1000
    p_("| what | total | per machine | CPU per machine |")
    p_("|---|---|---|---|")
    p_(
        f"| `boot2ipxe inject` ({MACHINES} × --name) | {inject.samples.show()} | {per:.1f} ms | "
        f"{inject.samples.cpu_median / MACHINES * 1000:.1f} ms |"
    )
    p_(
        f"| reference: {MACHINES} × `cp --sparse=always` of the base alone | {inject.cp_samples.show()} | "
        f"{inject.cp_samples.median / MACHINES * 1000:.1f} ms | {inject.cp_samples.cpu_median / MACHINES * 1000:.1f} ms |"
    )
    p_()
    p_(
        f"Disk used by the {inject.images} machine images (`du -sk`, with their manifests): {mib(inject.disk)} "
        f"({mib(inject.disk / inject.images)} each; apparent size {MACHINES} GiB)."
    )
    return [f"inject per machine: {per:.1f} ms (target <= {TARGET_INJECT_MS:.0f} ms) {verdict(per <= TARGET_INJECT_MS)}"]


def report_allocation(platforms: list[Platform], inject: InjectResult | None) -> list[str]:
    p_ = print
    p_()
    p_("### Allocation on disk vs payload (the bytes of the files placed)")
    p_()
    p_("| image | payload | boot2ipxe allocates | over payload | genimage allocates |")
    p_("|---|---|---|---|---|")
    for p in platforms:
        over = allocated(p.image) - p.payload
        theirs = allocated(p.genimage.image)
        p_(f"| {p.name} | {mib(p.payload)} | {mib(allocated(p.image))} | {over / MiB:+.2f} MiB | {mib(theirs)} |")
    worst = max(allocated(p.image) - p.payload for p in platforms)
    if inject is not None:
        p_(f"| machine image (worst of {MACHINES}, {inject.worst_image}) | | | {inject.worst_over / MiB:+.2f} MiB | |")
        worst = max(worst, inject.worst_over)
    ok = worst <= TARGET_OVER_PAYLOAD
    return [f"allocation over payload: worst {worst / MiB:+.2f} MiB (target <= {TARGET_OVER_PAYLOAD // MiB} MiB) {verdict(ok)}"]


def report_fetch(fetches: list[FetchResult]) -> list[str]:
    p_ = print
    p_()
    p_("### Cold fetch: `boot2ipxe fetch` (fresh cache) vs `curl` of the same archives, same local server")
    p_()
    p_(
        "Transfer throughput, as each tool reports its own downloads: boot2ipxe's `fetch --json` (`downloads`: from "
        "the first request to the last byte written and hashed) and curl's `--write-out` (`size_download`, "
        "`time_total` of the slowest transfer). Neither counts the process's start-up; boot2ipxe's includes hashing "
        "every byte as it arrives."
    )
    p_()
    p_("| platform | archives | boot2ipxe | curl | ratio |")
    p_("|---|---|---|---|---|")
    for f in fetches:
        ours, theirs = statistics.median(f.ours_rate), statistics.median(f.curl_rate)
        p_(
            f"| {f.platform} | {len(f.archives)}, {mib(f.size)} | {ours / MiB:.0f} MiB/s [{min(f.ours_rate) / MiB:.0f}–"
            f"{max(f.ours_rate) / MiB:.0f}] | {theirs / MiB:.0f} MiB/s [{min(f.curl_rate) / MiB:.0f}–"
            f"{max(f.curl_rate) / MiB:.0f}] | {f.percent:.1f} % |"
        )
    p_()
    p_("Whole commands, wall clock (start-up, verifying, extracting and storing included):")
    p_()
    p_("| platform | boot2ipxe | curl | curl / boot2ipxe | CPU boot2ipxe / curl | start-up (`fetch --help`) | extracting |")
    p_("|---|---|---|---|---|---|---|")
    for f in fetches:
        p_(
            f"| {f.platform} | {f.ours.show()} | {f.curl.show()} | {f.wall_percent:.1f} % | "
            f"{f.ours.cpu_median:.3f} s / {f.curl.cpu_median:.3f} s | {f.startup.show()} | {f.extraction.show()} |"
        )
    p_()
    for f in fetches:
        same = "the same files" if f.requested_same else "NOT the same files (see the server log)"
        p_(f"- {f.platform}: boot2ipxe requested {same} from the server as curl fetched.")
    p_(
        "- curl only writes the bytes (up to 4 transfers at once, as boot2ipxe's default -j 4). boot2ipxe also starts "
        "Python, validates the spec, verifies the sha256 of every archive and member, extracts the members from the "
        ".deb archives (`archive.extract`, timed alone above), and commits each to the cache (fsync, rename)."
    )
    p_(
        "- The Pi specs list GitHub before the Debian mirror; here GitHub is refused at once by the closed proxy and "
        "boot2ipxe goes on to the next origin without waiting (only a source's last origin is retried: docs/fetch.md)."
    )
    p_(
        "- one large blob: a spec written here whose one source is the test mirror's largest file, fetched as it is "
        "(no archive member): the steady state of one download, where neither start-up nor extraction counts."
    )
    worst = min(fetches, key=lambda f: f.percent)
    ok = worst.percent >= TARGET_FETCH_PERCENT
    return [
        f"cold fetch throughput vs curl: {worst.percent:.1f} % (target >= {TARGET_FETCH_PERCENT:.0f} %) {verdict(ok)} "
        f"({worst.platform})"
    ]


@contextmanager
def workdir(given: Path | None, keep: bool) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="boot2ipxe-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, metavar="N", help="timed runs of each command (default 5; --quick: 2)")
    parser.add_argument("--quick", action="store_true", help="2 runs of each command instead of 5")
    parser.add_argument("--work", type=Path, metavar="DIR", help="working directory (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary working directory")
    parser.add_argument(
        "--only",
        metavar="PARTS",
        default="build,inject,fetch",
        help="comma-separated parts to time: build, inject, fetch (default: all; the images are always built once)",
    )
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))
    if parts - {"build", "inject", "fetch"}:
        parser.error(f"--only: unknown parts {', '.join(sorted(parts - {'build', 'inject', 'fetch'}))}")
    runs = args.runs or (2 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    for tool in ("genimage", "curl", "mformat", "mkdosfs", "sfdisk"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            sys.exit(f"bench: {tool} is not installed (see .ci/packages.txt)")
    mirror = test_mirror.mirror_dir()
    problems = test_mirror.check(mirror)
    if problems:
        sys.exit(f"bench: the test mirror {mirror} is not ready ({problems[0]}): run python tests/mirror.py prepare")

    with workdir(args.work, args.keep) as work:
        env = child_env(work)
        server = Server(mirror, work / "server.log")
        try:
            mirrors = Mirrors(cli={"debian": server.url}, environ={})
            cache = work / "cache"
            specs = {}
            for name in PLATFORMS:
                checked = require_valid(ROOT / "platforms" / f"{name}.yaml", mirrors, display=f"platforms/{name}.yaml")
                assert checked.spec is not None
                specs[name] = checked.spec
            global BIN
            BIN = install_boot2ipxe(work)
            log("filling the blob cache from the test mirror (untimed)")
            warm_cache(cache, mirror, list(specs.values()), mirrors)
            platforms = []
            reset_dir(work / "boot2ipxe")
            for name, spec in specs.items():
                blobs = Fetcher(Cache(cache), mirrors, offline=True).ensure(spec)
                plan = checked_plan(spec, {sid: blob.size for sid, blob in blobs.items()})
                job = make_genimage_job(work, plan, blobs)
                image = work / "boot2ipxe" / f"{name}.img"
                platforms.append(Platform(name, spec, plan, blobs, payload_of(plan, blobs), job, image))
            bench_builds(platforms, runs if "build" in parts else 0, env, cache, server.url)
            floor = bench_floor(platforms, runs, env) if "build" in parts else None
            base = next(p for p in platforms if p.name == INJECT_BASE)
            inject = bench_inject(base, work, runs, env) if "inject" in parts else None
            fetches = []
            if "fetch" in parts:
                fetches = [
                    bench_fetch(name, ROOT / "platforms" / f"{name}.yaml", specs[name], work, runs, env, server)
                    for name in FETCH_PLATFORMS
                ]
                large = large_blob_spec(work, mirror)
                checked = require_valid(large, mirrors, display=large.name)
                assert checked.spec is not None
                fetches.append(bench_fetch("one large blob", large, checked.spec, work, runs, env, server))
        finally:
            server.stop()
        report(platforms, "build" in parts, floor, inject, fetches, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
