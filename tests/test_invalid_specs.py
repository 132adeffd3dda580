"""Every spec in tests/specs/invalid/ breaks exactly one rule; `validate` must report it on one line.

Each file's first line says what to expect: ``# expect: KEY.PATH: fragment of the message``. The key
path may be empty (the problem is the whole file, e.g. an empty file); the line is then ``FILE: message``.

Each file gets its own ``python -m boot2ipxe validate FILE`` process, forked from one warm interpreter
for speed (see clirun.py); the tests after the corpus start real interpreters.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from clirun import MIRROR, ROOT, Run, isolated_env, run_cli, run_forked

INVALID = ROOT / "tests" / "specs" / "invalid"
SPECS = sorted(INVALID.glob("*.yaml"))
EXPECT_RE = re.compile(r"^# expect: (?P<path>\S*): (?P<fragment>.+)$")


def expectation(spec: Path) -> tuple[str, str]:
    first = spec.read_bytes().split(b"\n", 1)[0].decode("ascii")
    match = EXPECT_RE.match(first)
    assert match, f"{spec.name}: first line must be '# expect: KEY.PATH: fragment', not {first!r}"
    return match.group("path"), match.group("fragment")


def relative(spec: Path) -> str:
    return spec.relative_to(ROOT).as_posix()


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """validate run once per spec, each in its own process."""
    env = isolated_env(tmp_path_factory.mktemp("config"))
    runs = run_forked([["validate", relative(spec), *MIRROR] for spec in SPECS], env, tmp_path_factory.mktemp("runs"))
    return {spec.name: run for spec, run in zip(SPECS, runs, strict=True)}


def test_the_folder_covers_enough_rules() -> None:
    assert len(SPECS) >= 35
    fragments = [expectation(spec) for spec in SPECS]
    assert len(set(fragments)) == len(fragments), "two files expect the same problem"


@pytest.mark.parametrize("spec", SPECS, ids=[s.stem for s in SPECS])
def test_invalid_spec_is_reported(spec: Path, results: dict[str, Run]) -> None:
    path, fragment = expectation(spec)
    run = results[spec.name]
    lines = run.stderr.splitlines()
    assert not any("Traceback" in line for line in run.stdout.splitlines() + lines), run.stderr
    assert run.returncode == 2, f"exit {run.returncode}\n{run.stderr}"
    prefix = f"{relative(spec)}:{path}: " if path else f"{relative(spec)}: "
    located = [line for line in lines if line.startswith(prefix)]
    assert located, f"no line starts with {prefix!r}:\n{run.stderr}"
    assert any(fragment in line for line in located), f"no {prefix!r} line contains {fragment!r}:\n{run.stderr}"
    # Every problem is exactly one line naming this file: nothing else leaks to stderr.
    assert all(line.startswith(f"{relative(spec)}:") for line in lines), run.stderr
    assert run.stdout == ""


def test_names_equal_stems_unless_that_is_the_rule() -> None:
    for spec in SPECS:
        text = spec.read_bytes().decode("utf-8", "replace")
        match = re.search(r"^name: (\S+)$", text, re.MULTILINE)
        if match and match.group(1) != spec.stem:
            assert spec.stem in ("name-pattern", "name-not-stem", "yaml-duplicate-key"), spec.name


def test_no_real_mirror_host_is_named() -> None:
    for spec in SPECS:
        text = spec.read_bytes().decode("utf-8", "replace")
        for url in re.findall(r"^\s*(?:- )?url: (\S+)", text, re.MULTILINE):
            assert url.startswith(("${", "http://127.0.0.1:", "https://github.com/raspberrypi/")), (spec.name, url)


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "huge.yaml"
    with spec.open("w") as f:
        f.write("spec: 1\nname: huge\ndescription: |\n")
        line = "  " + "x" * 98 + "\n"
        f.write(line * (2 * 1024 * 1024 // len(line) + 1))
    assert spec.stat().st_size >= 2 * 1024 * 1024
    run = run_cli(["validate", str(spec), *MIRROR], isolated_env(tmp_path))
    assert run.returncode == 2
    assert run.stderr.splitlines() == [f"{spec}: file is larger than 1024 KiB; a spec is a small text file"]


def test_json_output_lists_the_problem(tmp_path: Path) -> None:
    spec = INVALID / "raw-over-gpt-entries.yaml"
    path, fragment = expectation(spec)
    run = run_cli(["validate", "--json", relative(spec), *MIRROR], isolated_env(tmp_path))
    assert run.returncode == 2
    report = json.loads(run.stdout)
    assert [entry["file"] for entry in report] == [relative(spec)]
    assert report[0]["valid"] is False
    errors = [p for p in report[0]["problems"] if p["severity"] == "error"]
    assert {"file": relative(spec), "path": path, "severity": "error"}.items() <= errors[0].items()
    assert any(p["path"] == path and fragment in p["message"] for p in errors)
    assert "Traceback" not in run.stderr


def test_json_with_valid_and_invalid_specs(tmp_path: Path) -> None:
    bad = relative(INVALID / "name-not-stem.yaml")
    run = run_cli(["validate", "--json", "platforms/x86-uefi.yaml", bad, *MIRROR], isolated_env(tmp_path))
    assert run.returncode == 2
    report = json.loads(run.stdout)
    assert [(e["file"], e["valid"]) for e in report] == [("platforms/x86-uefi.yaml", True), (bad, False)]


THREE_ERRORS = """\
spec: 1
name: three-errors
arch: x86_64
chain: [uefi, ipxe]
sources:
  ipxe.efi:
    sha256: 6095eb23f4173674a3dc124a2a6d3cdeed514172793306a10d525f57b97cdc6a
    size: 996864
    origins:
      - url: http://127.0.0.1:9/ipxe.efi
disk:
  table: gpt
partitions:
  - name: esp
    type: efi-system
    size: 64MiB
    filesystem: vfat
    label: esp                      # 1: lower case in a FAT label
    files:
      - dest: EFI/BOOT/BOOTX64.EFI
        source: ipxe.efi
      - dest: loader/entries/../x   # 2: '..' in a dest path
        content: "x"
  - name: b2c-cache
    type: linux
    size: 256MiB
    offset: 100MiB
    filesystem: ext4
    label: B2C_CACHE
raw:
  - source: ipxe.efi                # 3: over the GPT entry array
    offset: 4KiB
ipxe:
  partition: esp
  binary: EFI/BOOT/BOOTX64.EFI
  firmware: uefi
"""


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    spec = tmp_path / "three-errors.yaml"
    spec.write_text(THREE_ERRORS)
    run = run_cli(["validate", str(spec), *MIRROR], isolated_env(tmp_path))
    assert run.returncode == 2
    errors = [line for line in run.stderr.splitlines() if ": warning: " not in line]
    assert sorted(line.split(": ", 1)[0] for line in errors) == [
        f"{spec}:partitions[0].files[1].dest",
        f"{spec}:partitions[0].label",
        f"{spec}:raw[0].offset",
    ], run.stderr


def test_every_schema_problem_is_reported(tmp_path: Path) -> None:
    spec = tmp_path / "schema-errors.yaml"
    spec.write_text(
        "spec: 1\nname: schema-errors\narch: z80\nchain: [uefi]\ncolour: red\n"
        "disk: {table: gpt}\npartitions: [{name: esp, type: efi-system, size: 64MB}]\n"
    )
    run = run_cli(["validate", str(spec), *MIRROR], isolated_env(tmp_path))
    assert run.returncode == 2
    assert sorted(line.split(": ", 1)[0] for line in run.stderr.splitlines()) == [
        f"{spec}:arch",
        f"{spec}:colour",
        f"{spec}:partitions[0].size",
    ], run.stderr
