"""GitLab CI: .gitlab-ci.yml and the generated child pipeline against GitLab's own schema, the job scripts of ci/
run directly (build, netboot, release), and the real pipeline run locally with gitlab-ci-local.

The local run is the real thing: gitlab-ci-local reads .gitlab-ci.yml, runs check, generate and the triggered
child pipeline (build jobs, the manual netboot job) with the same scripts GitLab runs, handling artifacts, dotenv
reports and the cache: key as GitLab does. Only CI_LOCAL differs, which makes ci/setup.sh install nothing (the
machine has the packages) and use the interpreter running these tests; Debian blobs come from the local test mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from images import ROOT, Built, offline_env
from prepare import GITLAB_CI_LOCAL, gitlab_ci_local_binary
from servers import TestServer

from boot2ipxe.formats.fatfs import FatReader
from boot2ipxe.formats.ipxe_script import read_hex_setting
from boot2ipxe.inject.image import locate
from boot2ipxe.pki import certs
from boot2ipxe.plan.validate import require_valid

PLATFORM_NAMES = sorted(p.stem for p in (ROOT / "platforms").glob("*.yaml"))
BUILD_ARTIFACTS = (".img.zst", ".img.bmap", ".img.sha256", ".img.manifest.json")
NETBOOT_ARTIFACTS = (".img.zst", ".img.bmap", ".img.sha256", ".img.manifest.json", ".crt.pem", ".fingerprint")
SERVER = "https://boot.example.test"


# --- helpers -----------------------------------------------------------------------------------------------------


def check_gitlab_schema(*files: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with its vendored copy of GitLab's CI schema (offline)."""
    argv = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.gitlab-ci", *map(str, files)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def load_ci(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def generate(repo: Path = ROOT, output: Path | None = None, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PLATFORMS", "CI_COMMIT_TAG")} | environ
    argv = [sys.executable, "ci/pipeline.py", *(["-o", str(output)] if output else [])]
    return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60)


def child_pipeline(tmp_path: Path, repo: Path = ROOT, **environ: str) -> tuple[Path, dict[str, Any]]:
    output = tmp_path / "platforms.gitlab-ci.yml"
    result = generate(repo, output, **environ)
    assert result.returncode == 0, result.stderr
    return output, load_ci(output)


def jobs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    reserved = {"stages", "default", "variables", "workflow", "include"}
    return {k: v for k, v in config.items() if k not in reserved and not k.startswith(".")}


def copy_repo(target: Path) -> Path:
    """The project's files as git sees them (tracked and new, not ignored), committed in a fresh repository."""
    listed = subprocess.run(
        ["git", "-c", "safe.directory=*", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    target.mkdir(parents=True)
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.test", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=target, check=True)
    subprocess.run([*git, "add", "-A"], cwd=target, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], cwd=target, check=True)
    return target


def add_platform(repo: Path, name: str, like: str = "x86-uefi") -> Path:
    """A new spec: a copy of ``like`` under another name (nothing else changes)."""
    text = (repo / "platforms" / f"{like}.yaml").read_text(encoding="utf-8")
    text, count = re.subn(rf"(?m)^name: {re.escape(like)}$", f"name: {name}", text)
    assert count == 1
    path = repo / "platforms" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def zstd_decompress(source: Path, target: Path) -> Path:
    subprocess.run(["zstd", "-q", "-d", "-f", str(source), "-o", str(target)], check=True, capture_output=True)
    return target


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def job_env(mirror_url: str | None = None, **extra: str) -> dict[str, str]:
    """What a job script sees locally: offline, CI_LOCAL with this interpreter, no user configuration."""
    env = offline_env(CI_LOCAL="1", CI_LOCAL_PYTHON=sys.executable)
    for name in ("MACHINE_NAME", "PLATFORMS", "SCHEDULED_REBUILD", "CI_JOB_ID", "ZSTD_LEVEL", "PYTHONPATH"):
        env.pop(name, None)
    if mirror_url:
        env["BOOT2IPXE_MIRROR_DEBIAN"] = mirror_url
    return env | extra


def run_script(repo: Path, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=300)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def machine_image_facts(image: Path, spec: Path) -> tuple[bytes, bytes]:
    """(client certificate DER, private key DER) from the iPXE script inside a machine image."""
    target = locate(image, require_valid(spec).spec)
    with image.open("rb") as f:
        script = FatReader(f, target.offset).read(target.script).decode()
    cert, key = read_hex_setting(script, "cert"), read_hex_setting(script, "privkey")
    assert cert and key, "the script carries no certificate or key"
    return cert, key


def assert_signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    public = ca_cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert cert.signature_hash_algorithm is not None
    public.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    assert cert.issuer == ca_cert.subject


# --- .gitlab-ci.yml ------------------------------------------------------------------------------------------------


def test_gitlab_ci_yml_is_valid_for_gitlab() -> None:
    result = check_gitlab_schema(ROOT / ".gitlab-ci.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_config(tmp_path: Path) -> None:
    """The validation above is real: the same tool refuses a config GitLab would refuse."""
    broken = tmp_path / ".gitlab-ci.yml"
    config = load_ci(ROOT / ".gitlab-ci.yml")
    config["check"]["when"] = "sometimes"
    config["platforms"]["trigger"]["strategy"] = "wait"
    broken.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = check_gitlab_schema(broken)
    assert result.returncode == 1
    assert "sometimes" in result.stdout and "wait" in result.stdout


def test_stages_and_jobs() -> None:
    config = load_ci(ROOT / ".gitlab-ci.yml")
    assert config["stages"] == ["check", "test", "build"]
    assert set(jobs(config)) == {"check", "test", "generate", "platforms"}
    assert config["default"]["image"].startswith("debian:")
    for name, job in jobs(config).items():
        assert "image" not in job or job["image"].startswith("debian:"), name
        assert "services" not in job, name  # no docker-in-docker, nothing privileged
    text = (ROOT / ".gitlab-ci.yml").read_text(encoding="utf-8")
    assert "privileged" not in text and "/dev/loop" not in text


def test_check_job_runs_every_check() -> None:
    script = "\n".join(load_ci(ROOT / ".gitlab-ci.yml")["check"]["script"])
    assert script.startswith(". ci/setup.sh dev")
    for command in (
        '"$PY" -m ruff check . && "$PY" -m ruff format --check .',
        '"$PY" -m mypy',
        '"$PY" -m boot2ipxe validate platforms/*.yaml',
        '"$PY" -m check_jsonschema --check-metaschema schema/platform.schema.json',
        '"$PY" -m check_jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml',
    ):
        assert command in script


def test_test_job_runs_the_readme_test_command_after_the_ci_run_setup() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"```sh\n(\.venv/bin/python tests/prepare\.py[^\n]*)\n```", readme)
    assert command, "the README's test command is gone"
    job = load_ci(ROOT / ".gitlab-ci.yml")["test"]
    assert job["script"][-1] == command.group(1)
    # The same setup as .ci/run: .ci/packages.txt (QEMU, OVMF...), a venv with the dev extra.
    assert job["script"][0] == ". ci/setup.sh dev $(grep -v '^#' .ci/packages.txt)"
    assert "pip install -q -e '.[dev]'" in (ROOT / "ci" / "setup.sh").read_text(encoding="utf-8")
    assert command.group(1) in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_build_stage_triggers_the_generated_pipeline() -> None:
    config = load_ci(ROOT / ".gitlab-ci.yml")
    generated = config["generate"]["artifacts"]["paths"]
    trigger = config["platforms"]["trigger"]
    assert trigger["include"] == [{"artifact": generated[0], "job": "generate"}]
    assert config["platforms"]["needs"] == ["generate"]
    assert trigger["strategy"] == "depend"  # the parent pipeline fails when a build fails
    assert trigger["forward"]["pipeline_variables"] is True  # MACHINE_NAME, SCHEDULED_REBUILD reach the jobs
    assert generated[0] in " ".join(config["generate"]["script"])


def test_docs_name_every_variable_the_jobs_read() -> None:
    docs = (ROOT / "docs" / "gitlab-ci.md").read_text(encoding="utf-8")
    scripts = "".join((ROOT / "ci" / name).read_text(encoding="utf-8") for name in ("build.sh", "netboot.sh", "setup.sh"))
    read = set(re.findall(r"\b((?:BOOT2IPXE_|MACHINE_|ZSTD_|SCHEDULED_|CI_LOCAL)[A-Z_]*)\b", scripts))
    read |= {"PLATFORMS"}
    assert {"BOOT2IPXE_CA_CERT", "BOOT2IPXE_CA_KEY", "BOOT2IPXE_SERVER", "MACHINE_NAME", "SCHEDULED_REBUILD"} <= read
    for name in sorted(read):
        assert re.search(rf"`{name}[`=]", docs), f"docs/gitlab-ci.md does not explain {name}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## GitLab CI" in readme and "docs/gitlab-ci.md" in readme


# --- the generated child pipeline -----------------------------------------------------------------------------------


def test_child_pipeline_has_a_build_and_a_netboot_job_per_platform(tmp_path: Path) -> None:
    path, config = child_pipeline(tmp_path)
    result = check_gitlab_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set(jobs(config)) == {f"{kind}:{p}" for p in PLATFORM_NAMES for kind in ("build", "netboot")}
    assert path.read_text().startswith("# Generated by ci/pipeline.py")
    for name in PLATFORM_NAMES:
        build = config[f"build:{name}"]
        assert build["script"] == [f"ci/build.sh {name}"]
        assert build["artifacts"]["paths"] == [f"out/{name}{suffix}" for suffix in BUILD_ARTIFACTS]
        blobs = build["cache"][0]
        assert blobs["key"] == {"files": [f"platforms/{name}.yaml"], "prefix": f"blobs-{name}"}
        assert blobs["paths"] == [f"{config['variables']['BOOT2IPXE_CACHE']}/"]
        assert not Path(config["variables"]["BOOT2IPXE_CACHE"]).is_absolute()  # inside the project: cacheable
        netboot = config[f"netboot:{name}"]
        assert netboot["needs"] == [{"job": f"build:{name}", "artifacts": True}]
        assert netboot["rules"] == [{"if": '$CI_COMMIT_REF_PROTECTED == "true"', "when": "manual", "allow_failure": True}]
        assert netboot["script"] == [f"ci/netboot.sh {name}"]
        assert netboot["interruptible"] is False
        assert netboot["artifacts"]["paths"] == ["out/netboot/"]
        assert netboot["artifacts"]["expire_in"] == "1 day"
        assert netboot["artifacts"]["access"] == "developer"
    assert "release" not in config


def test_child_pipeline_on_a_tag_releases_and_keeps_the_images(tmp_path: Path) -> None:
    path, config = child_pipeline(tmp_path, CI_COMMIT_TAG="v1.0")
    result = check_gitlab_schema(path)
    assert result.returncode == 0, result.stdout + result.stderr
    release = config["release"]
    assert release["needs"] == [{"job": f"build:{p}", "artifacts": True} for p in PLATFORM_NAMES]
    assert release["script"][-1] == f'"$PY" ci/release.py {" ".join(PLATFORM_NAMES)}'
    for name in PLATFORM_NAMES:
        assert config[f"build:{name}"]["artifacts"]["expire_in"] == "never"


def test_platforms_variable_selects_and_names_unknown_ones(tmp_path: Path) -> None:
    _, config = child_pipeline(tmp_path, PLATFORMS="x86-uefi")
    assert set(jobs(config)) == {"build:x86-uefi", "netboot:x86-uefi"}
    result = generate(PLATFORMS="x86-uefi nope")
    assert result.returncode == 2
    assert (
        one_line(result.stderr) == f"ci/pipeline.py: PLATFORMS: no platforms/nope.yaml (there are: {', '.join(PLATFORM_NAMES)})"
    )


def test_a_new_spec_adds_its_jobs_without_touching_gitlab_ci_yml(tmp_path: Path) -> None:
    repo = copy_repo(tmp_path / "repo")
    spec = add_platform(repo, "lab-pc")
    before = (repo / ".gitlab-ci.yml").read_bytes()
    assert subprocess.run([sys.executable, "-m", "boot2ipxe", "validate", str(spec)], cwd=repo, env=offline_env()).returncode == 0
    path, config = child_pipeline(tmp_path, repo)
    assert check_gitlab_schema(path).returncode == 0
    assert config["build:lab-pc"]["script"] == ["ci/build.sh lab-pc"]
    assert config["build:lab-pc"]["cache"][0]["key"]["files"] == ["platforms/lab-pc.yaml"]
    assert config["netboot:lab-pc"]["needs"] == [{"job": "build:lab-pc", "artifacts": True}]
    assert set(jobs(config)) == {f"{kind}:{p}" for p in [*PLATFORM_NAMES, "lab-pc"] for kind in ("build", "netboot")}
    assert (repo / ".gitlab-ci.yml").read_bytes() == before == (ROOT / ".gitlab-ci.yml").read_bytes()


def test_spec_file_names_that_cannot_be_job_names_are_refused(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "ci", repo / "ci")
    (repo / "platforms").mkdir()
    for name in ("a-b", "a.b"):
        (repo / "platforms" / f"{name}.yaml").write_text("spec: 1\n")
    result = generate(repo)
    assert result.returncode == 2
    assert "a-b.yaml and a.b.yaml differ only in '.' and '-'" in one_line(result.stderr)
    shutil.rmtree(repo / "platforms")
    (repo / "platforms").mkdir()
    result = generate(repo)
    assert result.returncode == 2 and "no *.yaml platform specs" in one_line(result.stderr)


# --- the job scripts, run directly ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project for the job scripts to write out/ in (never the checkout itself)."""
    return copy_repo(tmp_path_factory.mktemp("ci-jobs") / "repo")


@pytest.fixture(scope="module")
def gateway_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("ca") / "pki"
    certs.init_ca(directory)
    return directory


@pytest.mark.mirror
def test_build_script_publishes_the_compressed_image_with_its_sidecars(
    repo: Path, http_mirror: TestServer, tmp_path: Path, platform_images: dict[str, Built]
) -> None:
    cache = tmp_path / "cache"
    env = job_env(http_mirror.url, BOOT2IPXE_CACHE=str(cache), CI_JOB_ID="4242")
    result = run_script(repo, ["ci/build.sh", "x86-uefi"], env)
    assert result.returncode == 0, result.stderr
    out = repo / "out"
    assert not (out / "x86-uefi.img").exists()  # only the compressed image is published
    for suffix in BUILD_ARTIFACTS:
        assert (out / f"x86-uefi{suffix}").is_file(), suffix
    assert (out / "x86-uefi.env").read_text() == "BUILD_JOB_ID_X86_UEFI=4242\n"
    assert any(cache.rglob("*")), "the blob cache is where BOOT2IPXE_CACHE says"
    image = zstd_decompress(out / "x86-uefi.img.zst", tmp_path / "x86-uefi.img")
    recorded = (out / "x86-uefi.img.sha256").read_text().split()
    assert recorded == [sha256_of(image), "x86-uefi.img"]
    assert recorded[0] == platform_images["x86-uefi"].sha256  # the same bytes as a plain `boot2ipxe build`
    assert json.loads((out / "x86-uefi.img.manifest.json").read_text())["image"]["sha256"] == recorded[0]
    assert result.stdout.strip().endswith(f"image sha256 {recorded[0]}")
    # The published pair flashes as the docs say: bmaptool reads the .zst with the .bmap.
    flashed = tmp_path / "flashed.img"
    subprocess.run(
        ["bmaptool", "copy", "--bmap", str(out / "x86-uefi.img.bmap"), str(out / "x86-uefi.img.zst"), str(flashed)],
        check=True,
        capture_output=True,
    )
    assert sha256_of(flashed) == recorded[0]

    # The daily rebuild starts from an empty cache: every blob comes from its origin again, same image.
    assert http_mirror.requests
    http_mirror.reset()
    rebuild = run_script(repo, ["ci/build.sh", "x86-uefi"], env | {"SCHEDULED_REBUILD": "1"})
    assert rebuild.returncode == 0, rebuild.stderr
    assert "SCHEDULED_REBUILD: starting from an empty blob cache" in rebuild.stderr
    origins = {
        "/" + origin["url"].removeprefix("${debian}/")
        for source in yaml.safe_load((repo / "platforms" / "x86-uefi.yaml").read_text())["sources"].values()
        for origin in source["origins"][:1]
        if origin["url"].startswith("${debian}/")
    }
    assert origins and {r.path for r in http_mirror.requests} >= origins
    assert (out / "x86-uefi.img.sha256").read_text().split() == recorded


def test_build_script_refuses_an_unknown_platform(repo: Path) -> None:
    result = run_script(repo, ["ci/build.sh", "nope"], job_env())
    assert result.returncode == 2
    assert one_line(result.stderr) == "ci/build.sh: platforms/nope.yaml: no such platform spec"


@pytest.fixture
def netboot_repo(repo: Path, platform_images: dict[str, Built]) -> Path:
    """The repo copy with build:x86-uefi's artifacts in out/, as the netboot job receives them."""
    out = repo / "out"
    out.mkdir(exist_ok=True)
    built = platform_images["x86-uefi"]
    subprocess.run(["zstd", "-q", "-f", str(built.image), "-o", str(out / "x86-uefi.img.zst")], check=True)
    shutil.copy(built.image.with_name("x86-uefi.img.sha256"), out / "x86-uefi.img.sha256")
    shutil.rmtree(out / "netboot", ignore_errors=True)
    return repo


@pytest.mark.mirror
@pytest.mark.parametrize("ca_as", ["file", "text"])
def test_netboot_script_makes_the_machine_image(netboot_repo: Path, gateway_ca: Path, tmp_path: Path, ca_as: str) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    if ca_as == "file":  # GitLab File variables: the value is the path of a file holding the PEM
        ca = {"BOOT2IPXE_CA_CERT": str(gateway_ca / "ca.crt.pem"), "BOOT2IPXE_CA_KEY": str(gateway_ca / "ca.key.pem")}
    else:
        ca = {
            "BOOT2IPXE_CA_CERT": (gateway_ca / "ca.crt.pem").read_text(),
            "BOOT2IPXE_CA_KEY": (gateway_ca / "ca.key.pem").read_text(),
        }
    env = job_env(MACHINE_NAME="gw-01", BOOT2IPXE_SERVER=SERVER, TMPDIR=str(tmpdir), **ca)
    result = run_script(netboot_repo, ["ci/netboot.sh", "x86-uefi"], env)
    assert result.returncode == 0, result.stderr
    out = netboot_repo / "out" / "netboot"
    assert sorted(p.name for p in out.iterdir()) == sorted(f"gw-01{s}" for s in NETBOOT_ARTIFACTS)
    assert not any(tmpdir.iterdir()), "the temporary PKI (CA key, machine key) is left behind"

    fingerprint = re.search(r"^gw-01: client certificate fingerprint ([0-9a-f]{40}) \(nginx", result.stdout, re.M)
    assert fingerprint, result.stdout
    cert_pem = x509.load_pem_x509_certificate((out / "gw-01.crt.pem").read_bytes())
    cert_der = cert_pem.public_bytes(serialization.Encoding.DER)
    assert certs.fingerprint_sha1(cert_der) == fingerprint.group(1)
    assert (
        out / "gw-01.fingerprint"
    ).read_text() == f"sha1 {fingerprint.group(1)}\nsha256 {certs.fingerprint_sha256(cert_der)}\n"
    assert_signed_by(cert_pem, x509.load_pem_x509_certificate((gateway_ca / "ca.crt.pem").read_bytes()))

    # The image: its script carries that very certificate, and the key that goes with it.
    image = zstd_decompress(out / "gw-01.img.zst", tmp_path / "gw-01.img")
    assert (out / "gw-01.img.sha256").read_text().split() == [sha256_of(image), "gw-01.img"]
    script_cert, script_key = machine_image_facts(image, netboot_repo / "platforms" / "x86-uefi.yaml")
    assert script_cert == cert_der
    key = serialization.load_der_private_key(script_key, None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.public_key().public_numbers() == cert_pem.public_key().public_numbers()  # type: ignore[union-attr]
    manifest = json.loads((out / "gw-01.img.manifest.json").read_text())
    assert manifest["machine"] == "gw-01" and manifest["server"] == SERVER
    assert manifest["client_certificate"]["fingerprint_sha1"] == fingerprint.group(1)
    assert manifest["image"] == "gw-01.img"  # no temporary path leaks into the published manifest

    # The key is only inside the (secret) image: no artifact but the image carries it, in any form.
    key_forms = [
        script_key,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        script_key.hex(":").encode(),
    ]
    for path in out.iterdir():
        data = path.read_bytes()
        assert b"PRIVATE KEY" not in data, path
        if path.suffix != ".zst":
            assert not any(form in data for form in key_forms), path
    assert "PRIVATE" not in result.stdout + result.stderr
    # Flashing the published image with its .bmap gives the same bytes.
    flashed = tmp_path / "flashed.img"
    subprocess.run(
        ["bmaptool", "copy", "--bmap", str(out / "gw-01.img.bmap"), str(out / "gw-01.img.zst"), str(flashed)],
        check=True,
        capture_output=True,
    )
    assert sha256_of(flashed) == sha256_of(image)


@pytest.mark.mirror
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"MACHINE_NAME": None}, "ci/netboot.sh: MACHINE_NAME is not set: run this job with the variable MACHINE_NAME"),
        ({"BOOT2IPXE_SERVER": None}, "ci/netboot.sh: BOOT2IPXE_SERVER is not set: add it as a CI/CD variable"),
        ({"BOOT2IPXE_CA_KEY": None}, "ci/netboot.sh: BOOT2IPXE_CA_KEY is not set: add the CA as a protected File variable"),
        ({"BOOT2IPXE_CA_KEY": "/nonexistent/ca.key"}, "ci/netboot.sh: BOOT2IPXE_CA_KEY: neither a file nor PEM text"),
        ({"MACHINE_NAME": "../x"}, "'../x': not a machine name"),
    ],
    ids=["no-machine", "no-server", "no-ca-key", "ca-key-not-a-file", "bad-name"],
)
def test_netboot_script_refusals_are_one_line(
    netboot_repo: Path, gateway_ca: Path, tmp_path: Path, change: dict[str, str | None], message: str
) -> None:
    env = job_env(
        MACHINE_NAME="gw-02",
        BOOT2IPXE_SERVER=SERVER,
        BOOT2IPXE_CA_CERT=str(gateway_ca / "ca.crt.pem"),
        BOOT2IPXE_CA_KEY=str(gateway_ca / "ca.key.pem"),
        TMPDIR=str(tmp_path),
    )
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    result = run_script(netboot_repo, ["ci/netboot.sh", "x86-uefi"], env)
    assert result.returncode == 2
    assert message in one_line(result.stderr)
    assert not (netboot_repo / "out" / "netboot").exists()
    assert not any(tmp_path.iterdir())


class ReleaseAPI(BaseHTTPRequestHandler):
    """GitLab's POST /projects/:id/releases, recording what it is sent."""

    received: list[tuple[str, dict[str, str], dict[str, Any]]]
    status = 201

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = {"tag_name": body["tag_name"], "_links": {"self": "http://gitlab.test/p/-/releases/v1.0"}}
        if self.status != 201:
            answer = {"message": "Release already exists"}
        data = json.dumps(answer).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def release_api() -> Iterator[tuple[str, type[ReleaseAPI]]]:
    handler = type("Handler", (ReleaseAPI,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v4", handler
    server.shutdown()
    server.server_close()


def test_release_script_links_every_build_artifact(tmp_path: Path, release_api: tuple[str, type[ReleaseAPI]]) -> None:
    api, handler = release_api
    (tmp_path / "out").mkdir()
    names = ["rpi4", "x86-uefi"]
    for number, name in enumerate(names):
        (tmp_path / "out" / f"{name}.img.sha256").write_text(f"{number:064x}  {name}.img\n")
    env = offline_env(
        CI_API_V4_URL=api,
        CI_PROJECT_ID="42",
        CI_PROJECT_URL="http://gitlab.test/group/boot2ipxe",
        CI_COMMIT_TAG="v1.0",
        CI_COMMIT_SHA="abc123",
        CI_JOB_TOKEN="job-token-secret",
        BUILD_JOB_ID_RPI4="101",
        BUILD_JOB_ID_X86_UEFI="102",
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "release.py"), *names], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert one_line(result.stdout) == "release v1.0: http://gitlab.test/p/-/releases/v1.0, 8 links"
    [(path, headers, body)] = handler.received
    assert path == "/api/v4/projects/42/releases"
    assert headers["job-token"] == "job-token-secret"  # the header the Releases API takes a job token in
    assert body["tag_name"] == "v1.0"
    links = {link["name"]: link for link in body["assets"]["links"]}
    assert sorted(links) == sorted(f"{n}{s}" for n in names for s in BUILD_ARTIFACTS)
    assert links["x86-uefi.img.zst"] == {
        "name": "x86-uefi.img.zst",
        "url": "http://gitlab.test/group/boot2ipxe/-/jobs/102/artifacts/raw/out/x86-uefi.img.zst",
        "direct_asset_path": "/x86-uefi.img.zst",
        "link_type": "image",
    }
    assert links["rpi4.img.bmap"]["url"].endswith("/-/jobs/101/artifacts/raw/out/rpi4.img.bmap")
    assert f"| x86-uefi | `{1:064x}` |" in body["description"]
    assert "bmaptool copy" in body["description"]

    handler.status = 409
    again = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "release.py"), *names], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 1
    assert one_line(again.stderr).endswith('HTTP 409: {"message": "Release already exists"}; delete the release to make it again')
    del env["BUILD_JOB_ID_RPI4"]
    missing = subprocess.run(
        [sys.executable, str(ROOT / "ci" / "release.py"), *names], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert one_line(missing.stderr) == (
        "ci/release.py: BUILD_JOB_ID_RPI4 not set: the release job needs build:rpi4 (its dotenv report)"
    )


def test_release_job_variable_matches_build_script() -> None:
    """build.sh (tr) and pipeline.py/release.py name the dotenv variable the same way."""
    sys.path.insert(0, str(ROOT / "ci"))
    try:
        from pipeline import job_variable
    finally:
        sys.path.remove(str(ROOT / "ci"))
    assert job_variable("x86-uefi") == "BUILD_JOB_ID_X86_UEFI"
    assert job_variable("a.b-c_d") == "BUILD_JOB_ID_A_B_C_D"
    assert "tr 'a-z.-' 'A-Z__'" in (ROOT / "ci" / "build.sh").read_text()


# --- the real pipeline, locally, with gitlab-ci-local ---------------------------------------------------------------


def gitlab_ci_local() -> Path:
    """gitlab-ci-local GITLAB_CI_LOCAL; skips only when Node or npm is absent (tests/prepare.py installs it)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: the gitlab-ci-local runs need Node.js and npm")
    binary = Path(os.environ.get("BOOT2IPXE_GITLAB_CI_LOCAL") or gitlab_ci_local_binary())
    install = "python tests/prepare.py"
    if not binary.exists():
        pytest.fail(f"{binary}: gitlab-ci-local is not installed: run {install}")
    version = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    if version != GITLAB_CI_LOCAL:
        pytest.fail(f"{binary}: gitlab-ci-local {version}, the tests need {GITLAB_CI_LOCAL}: run {install}")
    return binary


def run_pipeline(binary: Path, repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(binary), "--home", str(home), "--force-shell-executor", "--shell-isolation", "--no-color", *args]
    env = offline_env(XDG_CONFIG_HOME=str(home / "config"))
    for name in [n for n in env if n.startswith(("GCL_", "CI_"))] + ["CI", "GITLAB_CI", "PYTHONPATH"]:
        env.pop(name, None)
    before = set(Path("/tmp").glob("gitlab-ci-local-file-variables-*"))
    try:
        return subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    finally:  # gitlab-ci-local leaves File variables (here the test CA's key) in /tmp
        for leftover in set(Path("/tmp").glob("gitlab-ci-local-file-variables-*")) - before:
            shutil.rmtree(leftover, ignore_errors=True)


def artifacts(repo: Path, job: str) -> dict[str, Path]:
    """The files gitlab-ci-local kept as a job's artifacts, by path relative to the project."""
    root = repo / ".gitlab-ci-local" / "artifacts"
    directories = [d for d in root.iterdir() if d.name.replace("Og", ":") == job]  # it writes ':' as 'Og'
    assert len(directories) == 1, f"no artifacts of {job} in {sorted(d.name for d in root.iterdir())}"
    return {
        str(p.relative_to(directories[0])): p
        for p in directories[0].rglob("*")
        if p.is_file() and ".gitlab-ci-reports" not in p.parts
    }


@pytest.mark.gitlab
@pytest.mark.mirror
def test_gitlab_ci_local_runs_the_pipeline(
    tmp_path: Path, http_mirror: TestServer, platform_images: dict[str, Built], gateway_ca: Path
) -> None:
    binary = gitlab_ci_local()
    repo = copy_repo(tmp_path / "repo")
    # A spec added the way a board owner would: its build job must appear and succeed, .gitlab-ci.yml untouched.
    add_platform(repo, "lab-pc")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "-q", "-m", "lab-pc"], cwd=repo, check=True
    )
    # Project CI/CD variables, as a GitLab project would set them (the CA as File variables).
    variables = {
        "CI_LOCAL": "1",
        "CI_LOCAL_PYTHON": {"type": "variable", "values": {"*": sys.executable}},
        "BOOT2IPXE_MIRROR_DEBIAN": http_mirror.url,
        "PLATFORMS": "lab-pc x86-uefi",
        "BOOT2IPXE_SERVER": SERVER,
        "MACHINE_NAME": "gw-01",
        "CI_COMMIT_REF_PROTECTED": "true",  # the CA variables are protected: the netboot job runs on protected refs
        "BOOT2IPXE_CA_CERT": {"type": "file", "values": {"*": (gateway_ca / "ca.crt.pem").read_text()}},
        "BOOT2IPXE_CA_KEY": {"type": "file", "values": {"*": (gateway_ca / "ca.key.pem").read_text()}},
    }
    (repo / ".gitlab-ci-local-variables.yml").write_text(yaml.safe_dump(variables), encoding="utf-8")
    home = tmp_path / "home"
    home.mkdir()

    started = time.monotonic()
    result = run_pipeline(binary, repo, home, "--manual", "netboot:x86-uefi")
    first = time.monotonic() - started
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    for job in ("check", "generate", "platforms", "[platforms] -> build:x86-uefi", "[platforms] -> build:lab-pc"):
        assert re.search(rf"PASS\s+{re.escape(job)}\s*$", log, re.M), f"{job} did not pass:\n{log[-4000:]}"
    assert re.search(r"PASS\s+\[platforms\] -> netboot:x86-uefi\s*$", log, re.M), log[-4000:]
    assert not re.search(r"^\s*test\s+starting", log, re.M)  # the test job is manual under CI_LOCAL
    assert "pip install" not in log and "apt-get" not in log
    fetched = [r.path for r in http_mirror.requests]
    assert fetched, "the build jobs fetched nothing from the mirror (is the cache empty at first?)"

    # The child pipeline as generated in the pipeline, with the new spec's jobs.
    child = load_ci(artifacts(repo, "generate")["out/platforms.gitlab-ci.yml"])
    assert set(jobs(child)) == {"build:lab-pc", "build:x86-uefi", "netboot:lab-pc", "netboot:x86-uefi"}

    for name in ("x86-uefi", "lab-pc"):
        published = artifacts(repo, f"build:{name}")
        assert sorted(published) == sorted(f"out/{name}{suffix}" for suffix in BUILD_ARTIFACTS)
        image = zstd_decompress(published[f"out/{name}.img.zst"], tmp_path / f"{name}.img")
        digest = sha256_of(image)
        assert published[f"out/{name}.img.sha256"].read_text().split() == [digest, f"{name}.img"]
        manifest = json.loads(published[f"out/{name}.img.manifest.json"].read_text())
        assert manifest["image"]["sha256"] == digest
        inspect = subprocess.run(
            [sys.executable, "-m", "boot2ipxe", "inspect", "--check", str(image)],
            capture_output=True,
            text=True,
            env=offline_env(),
        )
        assert inspect.returncode == 0, inspect.stdout + inspect.stderr
        assert "iPXE" in inspect.stdout
    # x86-uefi's image is the very image `boot2ipxe build` makes from the same spec.
    assert sha256_of(tmp_path / "x86-uefi.img") == platform_images["x86-uefi"].sha256

    netboot = artifacts(repo, "netboot:x86-uefi")
    assert sorted(netboot) == sorted(f"out/netboot/gw-01{s}" for s in NETBOOT_ARTIFACTS)
    assert not any("key" in name for name in netboot)
    fingerprint = re.search(r"gw-01: client certificate fingerprint ([0-9a-f]{40})", log)
    assert fingerprint, log[-4000:]
    cert = x509.load_pem_x509_certificate(netboot["out/netboot/gw-01.crt.pem"].read_bytes())
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    assert certs.fingerprint_sha1(cert_der) == fingerprint.group(1)
    machine = zstd_decompress(netboot["out/netboot/gw-01.img.zst"], tmp_path / "gw-01.img")
    script_cert, _ = machine_image_facts(machine, repo / "platforms" / "x86-uefi.yaml")
    assert script_cert == cert_der
    assert_signed_by(cert, x509.load_pem_x509_certificate((gateway_ca / "ca.crt.pem").read_bytes()))

    # A second pipeline: the blob cache (cache: key from each spec) comes back, so nothing is downloaded.
    http_mirror.reset()
    started = time.monotonic()
    again = run_pipeline(binary, repo, home)
    second = time.monotonic() - started
    log = again.stdout + again.stderr
    assert again.returncode == 0, log[-6000:]
    assert re.search(r"build:x86-uefi\s+imported cache '\d+_blobs-x86-uefi-", log), log[-4000:]
    assert http_mirror.requests == [], "the second pipeline downloaded blobs again: the cache was not kept"
    print(f"gitlab-ci-local: first pipeline {first:.1f} s, second (warm cache) {second:.1f} s")
