"""CLI: certs, script, b2c. Exit 0 on success, 1 on a failure doing the work, 2 on bad input; errors are one line;
private keys never reach stdout or stderr."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from boot2ipxe.cli import main
from boot2ipxe.formats.ipxe_script import read_hex_setting
from boot2ipxe.pki import certs


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("cli") / "pki"
    assert main(["certs", "init", str(directory)]) == 0
    assert main(["certs", "issue", str(directory), "rpi-01", "x86-01"]) == 0
    return directory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_key_material(pki: Path, *texts: str) -> None:
    for name in ("rpi-01", "x86-01"):
        key_der = certs.MachineFiles.of(pki, name).key_der.read_bytes()
        for text in texts:
            assert "PRIVATE KEY" not in text
            assert key_der.hex() not in text.replace(":", "")
            assert key_der[-48:].hex() not in text.replace(":", "").replace("\\\n", "")


def test_init_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "certs", "init", str(tmp_path / "ca"), "--bits", "3072")
    assert code == 0 and "ca.crt.pem" in out and "0600" in out and err == ""
    code, out, err = run(capsys, "certs", "init", str(tmp_path / "ca"))
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "another DIR" in err


def test_issue_prints_nginx_fingerprints(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "certs", "issue", "--force", str(pki), "rpi-01")
    assert code == 0 and err == ""
    cert = certs.MachineFiles.of(pki, "rpi-01").cert_pem
    argv = ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha1"]
    line = subprocess.run(argv, check=True, capture_output=True, text=True).stdout  # SHA1 Fingerprint=AB:CD:...
    sha1 = line.split("=", 1)[1].strip().replace(":", "").lower()
    assert out.startswith(f"rpi-01: {sha1} (nginx $ssl_client_fingerprint), sha256 ")
    assert_no_key_material(pki, out, err)


def test_issue_json(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "certs", "issue", "--json", "--force", str(pki), "x86-01")
    assert code == 0
    (row,) = json.loads(out)
    identity = certs.load_machine_identity(pki, "x86-01")
    assert row["name"] == "x86-01"
    assert row["fingerprint_sha1"] == identity.fingerprint_sha1
    assert row["fingerprint_sha256"] == identity.fingerprint_sha256
    assert set(row["files"]) == {"key_pem", "key_der", "cert_pem", "cert_der"}
    assert_no_key_material(pki, out, err)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["rpi-01"], "already issued"),
        (["../evil"], "not a machine name"),
        (["-dash"], ""),  # argparse: an unknown option
    ],
)
def test_issue_refusals(pki: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "certs", "issue", str(pki), *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and message in err


def test_issue_without_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "certs", "issue", str(tmp_path), "m")
    assert code == 2 and "certs init" in err and len(err.splitlines()) == 1


def test_issue_warns_about_a_readable_ca_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "certs", "init", str(tmp_path / "ca"))[0] == 0
    (tmp_path / "ca" / certs.CA_KEY).chmod(0o640)
    code, _, err = run(capsys, "certs", "issue", str(tmp_path / "ca"), "m")
    assert code == 0 and "warning: mode 0640" in err


def test_esl(pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "certs", "esl", str(pki))
    assert code == 0 and "etc/edk2/https/cacerts" in out
    assert (pki / "ca.esl").read_bytes() == certs.ca_signature_list(pki)
    code, _, _ = run(capsys, "certs", "esl", str(pki), "-o", str(tmp_path / "x.esl"))
    assert code == 0 and (tmp_path / "x.esl").read_bytes() == certs.ca_signature_list(pki)
    (tmp_path / "adir").mkdir()
    code, out, err = run(capsys, "certs", "esl", str(pki), "-o", str(tmp_path / "adir"))
    assert code == 1 and out == "" and len(err.splitlines()) == 1 and "cannot write" in err  # a failure, not bad input


def test_script_to_stdout_without_key(pki: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "script", "--server", "gw.lab", "--firmware", "u-boot", "--no-ntp")
    assert code == 0 and out.startswith("#!ipxe\n") and err == ""
    assert "\nsleep" not in out and "\nntp " not in out and "\ndhcp || goto failed\n" in out


def test_script_with_key_is_never_printed(pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "script", "--server", "gw.lab", "--pki", str(pki), "--name", "rpi-01")
    assert code == 2 and out == "" and "-o FILE" in err and len(err.splitlines()) == 1
    target = tmp_path / "autoexec.ipxe"
    code, out, err = run(capsys, "script", "--server", "gw.lab", "--pki", str(pki), "--name", "rpi-01", "-o", str(target))
    assert code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    identity = certs.load_machine_identity(pki, "rpi-01")
    assert read_hex_setting(target.read_text(), "privkey") == identity.key_der
    assert identity.fingerprint_sha1 in out
    assert_no_key_material(pki, out, err)


def test_script_with_encrypted_key(pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = certs.MachineFiles.of(pki, "x86-01")
    key = serialization.load_pem_private_key(files.key_pem.read_bytes(), None)
    protect = serialization.BestAvailableEncryption(b"pw")
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, protect))
    base = ["script", "--server", "gw.lab", "--cert", str(files.cert_der), "--key", str(encrypted), "-o", str(tmp_path / "s")]
    code, _, err = run(capsys, *base)
    assert code == 2 and "--key-passphrase-file" in err and len(err.splitlines()) == 1
    (tmp_path / "pw").write_text("pw\n")
    code, _, err = run(capsys, *base, "--key-passphrase-file", str(tmp_path / "pw"))
    assert code == 0, err
    assert read_hex_setting((tmp_path / "s").read_text(), "privkey") == files.key_der.read_bytes()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--server"),
        (["--server", "http://gw.lab"], "https"),
        (["--server", "gw.lab", "--cert", "x.pem"], "go together"),
        (["--server", "gw.lab", "--pki", "p"], "go together"),
        (["--server", "gw.lab", "--firmware", "bios"], "invalid choice"),
    ],
)
def test_script_refusals(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, out, err = run(capsys, "script", *argv)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err


def test_script_lint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.ipxe"
    bad.write_text("#!ipxe\ndhcp\nsleep 3\nchain http://x/ || prompt\n")
    code, out, err = run(capsys, "script", "--lint", str(bad), "--firmware", "u-boot")
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert [line.split(":")[1] for line in lines] == ["3", "4"]
    assert lines[0].startswith(f"{bad}:3: 'sleep'") and "'prompt'" in lines[1]
    assert run(capsys, "script", "--lint", str(bad), "--firmware", "uefi")[0] == 0
    code, _, err = run(capsys, "script", "--lint", str(bad))
    assert code == 2 and "--firmware" in err
    code, _, err = run(capsys, "script", "--lint", str(tmp_path / "missing"), "--firmware", "u-boot")
    assert code == 2 and "no such file" in err
    good = tmp_path / "good.ipxe"
    assert run(capsys, "script", "--server", "gw.lab", "--firmware", "u-boot", "-o", str(good))[0] == 0
    code, out, _ = run(capsys, "script", "--lint", str(good), "--firmware", "u-boot")
    assert code == 0 and "ok for u-boot" in out


def test_b2c(pki: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = tmp_path / "srv"
    argv = ["b2c", "-o", str(srv), "--kernel", "/files/k", "--initrd", "/files/i", "--run", "docker://alpine"]
    code, out, err = run(capsys, *argv, "--pki", str(pki), "--name", "rpi-01", "--console", "ttyS0,115200")
    assert code == 0, err
    fp = certs.load_machine_identity(pki, "rpi-01").fingerprint_sha1
    assert (srv / "files" / fp / "boot.ipxe").exists() and (srv / "files" / fp / "secrets").exists()
    assert "console=ttyS0,115200" in (srv / "files" / fp / "boot.ipxe").read_text()
    code, _, err = run(capsys, *argv, "--pki", str(pki), "--name", "rpi-01")
    assert code == 2 and "--force" in err
    code, out, err = run(capsys, *argv, "--fingerprint", fp.upper(), "--force", "--json", "--secret", "b2c.x=1")
    assert code == 0 and json.loads(out)["secrets_kept"] is True
    assert "was kept" in err
    code, _, err = run(capsys, *argv, "--fingerprint", "nothex")
    assert code == 2 and "fingerprint" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--pki DIR --name NAME" in err
    code, _, err = run(capsys, "b2c", "-o", str(srv), "--kernel", "k", "--initrd", "i", "--fingerprint", fp)
    assert code == 2 and "--run" in err and len(err.splitlines()) == 1
    code, _, err = run(capsys, *argv, "--fingerprint", fp, "--pki", str(pki), "--name", "rpi-01")
    assert code == 2 and "not both" in err


def test_b2c_plain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fp = "ab" * 20
    argv = ["b2c", "-o", str(tmp_path), "--kernel", "/k", "--initrd", "/i", "--run", "docker://a", "--fingerprint", fp]
    code, _, err = run(capsys, *argv, "--plain")
    assert code == 0, err
    assert "extra_args_url" not in (tmp_path / "files" / fp / "boot.ipxe").read_text()
    assert not (tmp_path / "files" / fp / "secrets").exists()
    code, _, err = run(capsys, *argv, "--plain", "--force", "--secret", "b2c.x=1")
    assert code == 2 and "plain server" in err
