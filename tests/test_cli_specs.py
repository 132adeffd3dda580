"""The spec commands (validate, plan, platforms) as users run them.

Each command runs in its own ``python -m boot2ipxe`` process, forked from one warm interpreter (see
clirun.py); the first test checks that this gives exactly what real interpreters give.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import MIRROR, ROOT, Run, isolated_env, run_cli, run_forked

PLATFORMS = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "platforms").glob("*.yaml"))
INVALID = "tests/specs/invalid/disk-too-small.yaml"

COMMANDS: dict[str, list[str]] = {
    "validate-platforms": ["validate", *PLATFORMS, *MIRROR],
    "validate-platforms-json": ["validate", "--json", *PLATFORMS, *MIRROR],
    "validate-strict": ["validate", "--strict", "tests/specs/invalid/../../../platforms/x86-uefi.yaml", *MIRROR],
    "validate-invalid": ["validate", INVALID, *MIRROR],
    "validate-missing": ["validate", "no/such/spec.yaml", *MIRROR],
    "validate-directory": ["validate", "platforms", *MIRROR],
    "validate-no-mirror": ["validate", "platforms/x86-uefi.yaml"],
    "validate-bad-mirror": ["validate", "--mirror", "debian", "platforms/x86-uefi.yaml"],
    "plan-json": ["plan", "--json", "platforms/rpi3bp.yaml", *MIRROR],
    "plan-text": ["plan", "platforms/x86-uefi.yaml", *MIRROR],
    "plan-invalid": ["plan", INVALID, *MIRROR],
    "plan-missing": ["plan", "no/such/spec.yaml", *MIRROR],
    "platforms": ["platforms"],
    "platforms-json": ["platforms", "--json"],
    "platforms-missing-dir": ["platforms", "--dir", "no/such/dir"],
    "unknown-option-validate": ["validate", "--frobnicate", "platforms/x86-uefi.yaml"],
    "unknown-option-plan": ["plan", "--frobnicate", "platforms/x86-uefi.yaml"],
    "unknown-option-platforms": ["platforms", "--frobnicate"],
    "unknown-option-top": ["--frobnicate", "platforms"],
    "unknown-command": ["frobnicate"],
    "no-command": [],
    "missing-argument": ["plan"],
    "help": ["--help"],
    "help-validate": ["validate", "--help"],
    "help-plan": ["plan", "--help"],
    "help-platforms": ["platforms", "--help"],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {**isolated_env(tmp_path_factory.mktemp("config")), "COLUMNS": "100"}


@pytest.fixture(scope="module")
def runs(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    results = run_forked(list(COMMANDS.values()), env, tmp_path_factory.mktemp("runs"))
    return dict(zip(COMMANDS, results, strict=True))


@pytest.mark.parametrize("name", ["validate-invalid", "plan-json", "unknown-option-plan", "help-validate"])
def test_forked_runs_behave_like_python_m(runs: dict[str, Run], env: dict[str, str], name: str) -> None:
    assert run_cli(COMMANDS[name], env) == runs[name]


def test_forked_runs_show_crashes_as_python_does(env: dict[str, str], tmp_path: Path) -> None:
    """The runner must not hide a crash: same traceback and exit status as ``python -m`` on a failing module."""
    (tmp_path / "crasher.py").write_text("import sys\nprint('before', flush=True)\nraise RuntimeError(sys.argv[1:])\n")
    crash_env = {**env, "PYTHONPATH": f"{tmp_path}:{env['PYTHONPATH']}"}
    [forked] = run_forked([["a", "b"]], crash_env, tmp_path, module="crasher")
    real = subprocess.run(
        [sys.executable, "-m", "crasher", "a", "b"], env=crash_env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert (forked.returncode, forked.stdout) == (real.returncode, real.stdout) == (1, "before\n")
    assert forked.err_lines[0] == real.stderr.splitlines()[0] == "Traceback (most recent call last):"
    assert forked.err_lines[-1] == real.stderr.splitlines()[-1] == "RuntimeError: ['a', 'b']"


def test_no_traceback_anywhere(runs: dict[str, Run]) -> None:
    for name, run in runs.items():
        assert "Traceback" not in run.stdout + run.stderr, name


def test_validate_platforms(runs: dict[str, Run]) -> None:
    run = runs["validate-platforms"]
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{p}: ok" for p in PLATFORMS]
    assert run.stderr == ""


def test_validate_platforms_json(runs: dict[str, Run]) -> None:
    run = runs["validate-platforms-json"]
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [{"file": p, "valid": True, "problems": []} for p in PLATFORMS]


def test_validate_strict_passes_a_clean_spec(runs: dict[str, Run]) -> None:
    # The spec is named by a path with '..' in it: the name must still match the stem.
    run = runs["validate-strict"]
    assert run.returncode == 0, run.stderr


def test_validate_invalid(runs: dict[str, Run]) -> None:
    run = runs["validate-invalid"]
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.err_lines == [f"{INVALID}:disk.size: 32MiB is too small: the partitions need 66MiB"]


@pytest.mark.parametrize(
    ("name", "line"),
    [
        ("validate-missing", "no/such/spec.yaml: no such file"),
        ("validate-directory", "platforms: is a directory, not a spec file"),
        ("plan-missing", "no/such/spec.yaml: no such file"),
        ("validate-bad-mirror", "boot2ipxe: --mirror debian: expected NAME=URL with an http(s):// or file:// URL"),
        ("platforms-missing-dir", "no/such/dir: no such directory (run from the repository root, or pass --dir)"),
    ],
)
def test_bad_input_is_one_line(runs: dict[str, Run], name: str, line: str) -> None:
    run = runs[name]
    assert (run.returncode, run.err_lines, run.stdout) == (2, [line], "")


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("unknown-option-validate", "boot2ipxe: error: unrecognized arguments: --frobnicate"),
        ("unknown-option-plan", "boot2ipxe: error: unrecognized arguments: --frobnicate"),
        ("unknown-option-platforms", "boot2ipxe: error: unrecognized arguments: --frobnicate"),
        ("unknown-option-top", "boot2ipxe: error: unrecognized arguments: --frobnicate"),
        ("unknown-command", "boot2ipxe: error: argument COMMAND: invalid choice: 'frobnicate'"),
        ("no-command", "boot2ipxe: error: the following arguments are required: COMMAND"),
        ("missing-argument", "boot2ipxe plan: error: the following arguments are required: SPEC"),
    ],
)
def test_usage_errors_are_one_line(runs: dict[str, Run], name: str, words: str) -> None:
    run = runs[name]
    assert run.returncode == 2
    assert len(run.err_lines) == 1, run.stderr
    assert run.err_lines[0].startswith(words)
    assert run.err_lines[0].endswith("--help')")
    assert run.stdout == ""


def test_validate_without_a_mirror_says_how_to_set_one(runs: dict[str, Run]) -> None:
    # Hermetic: no --mirror, no environment, no config file. The machine's apt sources may still name a
    # Debian mirror, so either the spec is valid or every problem is the missing ${debian}.
    run = runs["validate-no-mirror"]
    if run.returncode == 0:
        assert run.stderr == ""
        return
    assert run.returncode == 2
    assert run.err_lines
    for line in run.err_lines:
        assert line.startswith('platforms/x86-uefi.yaml:sources["ipxe.efi"].origins[0].url: no mirror configured for ${debian}')
        assert "--mirror debian=URL" in line


def test_plan_json(runs: dict[str, Run]) -> None:
    run = runs["plan-json"]
    assert run.returncode == 0, run.stderr
    plan = json.loads(run.stdout)
    assert (plan["name"], plan["table"], plan["sector_size"], plan["sectors"]) == ("rpi3bp", "mbr", 512, 2097152)
    assert plan["size"] == 1024 * 1024 * 1024
    assert (plan["first_usable_sector"], plan["last_usable_sector"]) == (1, 2097151)
    boot, variables, cache = plan["partitions"]
    assert (variables["type"], variables["label"], variables["filesystem"]) == ("ef", "EFIVARS", "vfat")
    assert (boot["start_sector"], boot["sectors"], boot["offset"], boot["type"]) == (8192, 524288, 4 * 1024 * 1024, "0c")
    assert boot["fat"] == {
        "bits": 32,
        "sectors_per_cluster": 1,
        "cluster_bytes": 512,
        "reserved_sectors": 32,
        "fat_count": 2,
        "fat_sectors": 4033,
        "root_entries": 0,
        "clusters": 516190,
        "hidden_sectors": 8192,
    }
    assert {f["dest"] for f in boot["files"]} >= {"bootcode.bin", "config.txt", "u-boot.bin", "EFI/BOOT/BOOTAA64.EFI"}
    assert (cache["start_sector"], cache["sectors"], cache["label"]) == (540672, 1556480, "B2C_CACHE")
    assert cache["ext4"]["blocks"] == 194560
    assert plan["raw"] == []


def test_plan_text(runs: dict[str, Run]) -> None:
    run = runs["plan-text"]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "x86-uefi: x86-64 PC with UEFI firmware — UEFI → iPXE"
    assert lines[1].startswith("disk: gpt, 1GiB (2097152 sectors of 512 bytes), id ")
    assert lines[1].endswith("usable sectors 34-2097118")
    rows = [line.split() for line in lines[3:6]]
    assert rows[1][:6] == ["1", "esp", "2048", "133119", "131072", "64MiB"]
    assert rows[2][:6] == ["2", "b2c-cache", "133120", "2095103", "1961984", "958MiB"]
    assert "  FAT32: 129022 clusters of 512 bytes, 32 reserved sectors, 2 FATs of 1009 sectors" in run.stdout


def test_plan_refuses_an_invalid_spec(runs: dict[str, Run]) -> None:
    run = runs["plan-invalid"]
    assert (run.returncode, run.stdout) == (2, "")
    assert run.err_lines == [f"{INVALID}:disk.size: 32MiB is too small: the partitions need 66MiB"]


def test_platforms(runs: dict[str, Run]) -> None:
    run = runs["platforms"]
    assert run.returncode == 0, run.stderr
    names = [line.split()[0] for line in run.stdout.splitlines()]
    assert names == [Path(p).stem for p in PLATFORMS]
    assert any(line.split()[:2] == ["rpi4", "arm64"] for line in run.stdout.splitlines())


def test_platforms_json(runs: dict[str, Run]) -> None:
    run = runs["platforms-json"]
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert [r["name"] for r in rows] == [Path(p).stem for p in PLATFORMS]
    assert {r["file"] for r in rows} == set(PLATFORMS)
    assert next(r for r in rows if r["name"] == "x86-uefi")["arch"] == "x86_64"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("help", ["usage: boot2ipxe", "validate", "plan", "platforms", "docs/spec.md"]),
        ("help-validate", ["usage: boot2ipxe validate", "SPEC", "--json", "--mirror NAME=URL", "--strict", "Exit 0"]),
        ("help-plan", ["usage: boot2ipxe plan", "SPEC", "--json", "--mirror NAME=URL", "without writing a byte"]),
        ("help-platforms", ["usage: boot2ipxe platforms", "--dir DIR", "--json"]),
    ],
)
def test_help(runs: dict[str, Run], name: str, words: list[str]) -> None:
    run = runs[name]
    assert (run.returncode, run.stderr) == (0, "")
    text = " ".join(run.stdout.split())
    for word in words:
        assert word in text, (word, run.stdout)
