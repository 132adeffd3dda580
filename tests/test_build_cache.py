"""The build cache: a warm build reuses the stored recipe and the image check, and anything it depends on
changing (the spec, a template, an include appearing earlier in the search path, SOURCE_DATE_EPOCH, boot2ipxe
itself, a cached blob) makes it build from scratch again, with the same result a fresh build gives."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from images import ROOT

from boot2ipxe import buildcache
from boot2ipxe.fatfs import FatReader

SPEC = """\
spec: 1
name: cached
description: build cache test
arch: x86_64
chain: [uefi, ipxe]
sources:
  ipxe.efi:
    sha256: {ipxe}
    origins: [{{path: blobs/ipxe.efi}}]
  unused:
    sha256: {unused}
    origins: [{{path: blobs/unused.bin}}]
disk:
  table: gpt
  size: 48MiB
partitions:
  - name: esp
    type: efi-system
    size: 32MiB
    filesystem: vfat
    label: CACHED
    files:
      - {{dest: EFI/BOOT/BOOTX64.EFI, source: ipxe.efi}}
      - {{dest: autoexec.ipxe, template: templates/autoexec.ipxe.j2}}
      - {{dest: notes/a.txt, content: "a {{{{ platform.name }}}}\\n"}}
      - {{dest: notes/b.txt, content: "b\\n"}}
  - name: cache
    type: linux
    size: rest
    filesystem: ext4
    label: B2C_CACHE
ipxe: {{partition: esp, binary: EFI/BOOT/BOOTX64.EFI, script: autoexec.ipxe, firmware: uefi}}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A spec whose template includes a file found beside the spec (looked up beside the template first)."""
    root = tmp_path / "project"
    (root / "blobs").mkdir(parents=True)
    (root / "templates").mkdir()
    ipxe = b"MZ iPXE ipxe,1,iPXE,ipxe.efi,1.0-test" + b"\x01" * 50000
    (root / "blobs" / "ipxe.efi").write_bytes(ipxe)
    (root / "blobs" / "unused.bin").write_bytes(b"unused")
    (root / "templates" / "autoexec.ipxe.j2").write_text("#!ipxe\n{% include 'server.j2' %}\n")
    (root / "server.j2").write_text("chain https://one.example/boot")
    digests = {"ipxe": hashlib.sha256(ipxe).hexdigest(), "unused": hashlib.sha256(b"unused").hexdigest()}
    (root / "cached.yaml").write_text(SPEC.format(**digests))
    return root


def build(run_cli: Any, project: Path, *extra: str) -> dict[str, Any]:
    args = ["build", project / "cached.yaml", "-o", project / "out" / "cached.img", "--cache-dir", project / "cache"]
    result = run_cli(*args, "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, Any] = json.loads(result.out)
    report["stderr"] = result.err
    return report


def script_in(project: Path) -> bytes:
    image = project / "out" / "cached.img"
    with image.open("rb") as f:
        return FatReader(f, 1024 * 1024).read("autoexec.ipxe")


def sidecars(project: Path) -> dict[str, bytes]:
    out = project / "out"
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.name.startswith("cached.img.")}


def test_a_warm_build_reuses_the_recipe_and_the_image_check(run_cli: Any, project: Path) -> None:
    first = build(run_cli, project)
    assert first["reused"] == {"recipe": False, "image": False}
    written = sidecars(project)
    second = build(run_cli, project)
    assert second["reused"] == {"recipe": True, "image": True}
    assert second["sha256"] == first["sha256"] == hashlib.sha256((project / "out" / "cached.img").read_bytes()).hexdigest()
    assert sidecars(project) == written  # .sha256, .manifest.json and .bmap byte for byte
    assert "not used by any file or raw write" in second["stderr"]  # validation's warnings are said again


def test_a_warm_build_does_not_validate_or_plan(run_cli: Any, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(run_cli, project)
    import boot2ipxe.validate

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("validated again")

    monkeypatch.setattr(boot2ipxe.validate, "require_valid", refuse)
    assert build(run_cli, project)["reused"]["recipe"] is True


def test_a_warm_build_imports_no_parser_validator_or_template_engine(run_cli: Any, project: Path) -> None:
    """What makes a warm build fast: YAML, JSON Schema, Jinja2, libparted and requests stay unloaded, and so do
    the standard library's argparse, pathlib, json, re, subprocess and threading (and enum, typing and dataclasses
    behind them). Run without site (python -S), which imports some of these itself."""
    args = [
        "build",
        str(project / "cached.yaml"),
        "-o",
        str(project / "out" / "cached.img"),
        "--cache-dir",
        str(project / "cache"),
    ]
    assert run_cli(*args).code == 0  # the first build does all the work, and stores its recipe
    heavy = {"yaml", "jsonschema", "jinja2", "parted", "requests", "cryptography"}
    heavy |= {"argparse", "pathlib", "json", "re", "subprocess", "threading", "enum", "typing", "dataclasses"}
    probe = (
        "import sys; before = set(sys.modules); from boot2ipxe.cli import main; code = main(sys.argv[1:]); "
        "print(' '.join(sorted({m.split('.')[0] for m in set(sys.modules) - before}))); sys.exit(code)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-S", "-c", probe, *args], capture_output=True, text=True, env=env, check=True)
    loaded = set(result.stdout.strip().splitlines()[-1].split())
    assert "boot2ipxe" in loaded and not loaded & heavy, loaded & heavy
    assert "reused" not in result.stdout  # (plain output) and the image is the first build's
    assert (project / "out" / "cached.img.sha256").read_text().split()[0] in result.stdout


def test_a_changed_include_is_rendered_again(run_cli: Any, project: Path) -> None:
    build(run_cli, project)
    (project / "server.j2").write_text("chain https://two.example/boot")
    report = build(run_cli, project)
    assert report["reused"] == {"recipe": False, "image": False}
    assert script_in(project) == b"#!ipxe\nchain https://two.example/boot\n"


def test_an_include_appearing_earlier_in_the_search_path_is_used(run_cli: Any, project: Path) -> None:
    build(run_cli, project)
    (project / "templates" / "server.j2").write_text("chain https://beside.example/boot")
    assert build(run_cli, project)["reused"]["recipe"] is False
    assert script_in(project) == b"#!ipxe\nchain https://beside.example/boot\n"


def test_a_changed_spec_or_epoch_is_planned_again(run_cli: Any, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(run_cli, project)
    spec = project / "cached.yaml"
    spec.write_text(spec.read_text().replace("label: CACHED", "label: CHANGED"))
    assert build(run_cli, project)["reused"]["recipe"] is False
    assert build(run_cli, project)["reused"]["recipe"] is True
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    report = build(run_cli, project)
    assert report["reused"]["recipe"] is False
    manifest = json.loads((project / "out" / "cached.img.manifest.json").read_text())
    assert manifest["source_date_epoch"] == 1700000000


def test_a_new_boot2ipxe_plans_again(run_cli: Any, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(run_cli, project)
    monkeypatch.setattr(buildcache, "package_digest", lambda: "0" * 64)
    assert build(run_cli, project)["reused"]["recipe"] is False


def test_fresh_ignores_the_cache_and_gives_the_same_image(run_cli: Any, project: Path) -> None:
    first = build(run_cli, project)
    written = sidecars(project)
    fresh = build(run_cli, project, "--fresh")
    assert fresh["reused"] == {"recipe": False, "image": False}
    assert fresh["sha256"] == first["sha256"] and sidecars(project) == written


def test_a_damaged_blob_is_not_reused(run_cli: Any, project: Path) -> None:
    """A warm build checks its blobs as the fetch stage does; a changed one sends it back to fetching."""
    first = build(run_cli, project)
    blob = next((project / "cache" / "blobs").rglob(hashlib.sha256((project / "blobs" / "ipxe.efi").read_bytes()).hexdigest()))
    blob.chmod(0o644)
    blob.write_bytes(b"damaged")
    report = build(run_cli, project)
    assert report["reused"]["recipe"] is False and report["sha256"] == first["sha256"]
    assert blob.read_bytes() == (project / "blobs" / "ipxe.efi").read_bytes()


def test_a_torn_cache_entry_reads_as_a_miss(run_cli: Any, project: Path) -> None:
    first = build(run_cli, project)
    for entry in (project / "cache" / "builds").rglob("*"):
        if entry.is_file():
            entry.write_bytes(entry.read_bytes()[: len(entry.read_bytes()) // 2])
    report = build(run_cli, project)
    assert report["reused"] == {"recipe": False, "image": False} and report["sha256"] == first["sha256"]


def test_recipe_keys_follow_their_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "s.yaml"
    config = tmp_path / "config.toml"

    def key(
        data: bytes = b"spec", epoch: int | None = None, mirrors: tuple[str, ...] = (), env: dict[str, str] | None = None
    ) -> str:
        return buildcache.recipe_key(spec, "s.yaml", data, epoch, list(mirrors), env or {}, str(config))

    base = key()
    assert key() == base
    assert key(b"spec!") != base
    assert key(epoch=0) != base
    assert key(mirrors=("debian=http://a",)) != base
    assert key(env={"BOOT2IPXE_MIRROR_DEBIAN": "http://a"}) != base
    assert key(env={"UNRELATED": "x"}) == base
    config.write_text('[mirrors]\ndebian = "http://a"\n')
    assert key() != base
    monkeypatch.chdir(tmp_path)  # the same spec named from elsewhere
    assert buildcache.recipe_key("s.yaml", "s.yaml", b"spec", None, [], {}, str(config)) == key()


def test_a_recipe_changed_in_the_cache_is_not_run(run_cli: Any, project: Path) -> None:
    """A recipe names commands: one edited by whoever can write the cache, but not read the key, is a miss."""
    first = build(run_cli, project)
    (stored,) = (project / "cache" / "builds" / "recipes").iterdir()
    tag, _, data = stored.read_bytes().partition(b"\n")
    assert b"mke2fs" in data
    stored.write_bytes(tag + b"\n" + data.replace(b"mke2fs", b"mkswap"))
    report = build(run_cli, project)
    assert report["reused"]["recipe"] is False and report["sha256"] == first["sha256"]


def test_entries_sealed_with_another_key_are_checked_again(
    run_cli: Any, project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A cache copied from another machine (or user): its recipes, images and blob stamps are not trusted."""
    from boot2ipxe import stamps

    first = build(run_cli, project)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setattr(stamps, "_verified", {})  # a new process
    hashed: list[str] = []
    real = stamps.hash_file
    monkeypatch.setattr(stamps, "hash_file", lambda path: hashed.append(Path(path).name) or real(path))
    report = build(run_cli, project)
    assert report["reused"] == {"recipe": False, "image": False} and report["sha256"] == first["sha256"]
    assert sorted(hashed) == sorted(
        hashlib.sha256((project / "blobs" / name).read_bytes()).hexdigest() for name in ("ipxe.efi", "unused.bin")
    )
    assert build(run_cli, project)["reused"] == {"recipe": True, "image": True}  # sealed again with this key
