"""The machine chain script, iPXE hex settings, and the U-Boot wait lint."""

from __future__ import annotations

from pathlib import Path

import pytest

from boot2ipxe.errors import InputError
from boot2ipxe.formats.ipxe_script import (
    WAITING_COMMANDS,
    commands,
    hex_setting,
    lint_script,
    logical_lines,
    read_hex_setting,
)
from boot2ipxe.inject.script import render_machine_script
from boot2ipxe.pki import certs

URL = "https://boot.example.com/boot/ipxe?mac=${netX/mac}&platform=${platform}&buildarch=${buildarch}"


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> certs.ClientIdentity:
    directory = tmp_path_factory.mktemp("pki")
    certs.init_ca(directory)
    (identity,) = certs.issue_machines(directory, ["rpi-01"])
    return identity


def code_lines(script: str) -> list[str]:
    return [line for _, line in logical_lines(script) if line.strip() and not line.lstrip().startswith("#")]


# --- rendering ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("firmware", ["uefi", "u-boot"])
def test_chain_script_passes_its_own_lint_for_both_firmwares(firmware: str, identity: certs.ClientIdentity) -> None:
    for ident in (None, identity):
        script = render_machine_script("boot.example.com", firmware, ident)  # type: ignore[arg-type]
        assert script.startswith("#!ipxe\n")
        assert lint_script(script, "u-boot" if firmware == "u-boot" else "uefi") == []
        assert f"chain --autofree {URL} || goto failed" in script
        assert "dhcp || goto failed" in script
        # Debian's iPXE has no ntp command: a failed ntp must not send the machine round the loop forever.
        assert "ntp pool.ntp.org || echo boot2ipxe: no clock from NTP; keeping the firmware's" in code_lines(script)
        assert code_lines(script)[-1] == "goto retry"


def test_uboot_form_never_waits_and_uefi_form_sleeps_between_retries() -> None:
    uboot = render_machine_script("boot.example.com", "u-boot", None)
    uefi = render_machine_script("boot.example.com", "uefi", None)
    assert not any(argv[0] in WAITING_COMMANDS for line in code_lines(uboot) for argv in commands(line))
    assert "sleep 5" in code_lines(uefi)
    sleep_line = next(n for n, line in logical_lines(uefi) if line == "sleep 5")
    assert [n for n, _ in lint_script(uefi, "u-boot")] == [sleep_line]  # the UEFI form is not for U-Boot


def test_order_is_dhcp_then_ntp_then_chain() -> None:
    lines = code_lines(render_machine_script("boot.example.com", "u-boot", None))
    steps = [next(i for i, line in enumerate(lines) if line.startswith(cmd)) for cmd in (":retry", "dhcp", "ntp", "chain")]
    assert steps == sorted(steps)


def test_server_port_path_and_ntp_are_configurable() -> None:
    script = render_machine_script("https://gw.lab:8443/", "uefi", None, ntp="10.0.0.1", path="/ipxe/boot")
    assert "chain --autofree https://gw.lab:8443/ipxe/boot?mac=${netX/mac}&platform=${platform}&buildarch=${buildarch}" in script
    assert "ntp 10.0.0.1 || echo boot2ipxe: no clock from NTP; keeping the firmware's" in script
    no_ntp = render_machine_script("gw.lab", "u-boot", None, ntp=None)
    assert not any(line.startswith("ntp") for line in code_lines(no_ntp))


@pytest.mark.parametrize(
    ("server", "path", "ntp", "message"),
    [
        ("http://gw.lab", "/boot/ipxe", "pool.ntp.org", "over https"),
        ("gw lab", "/boot/ipxe", "pool.ntp.org", "not a server"),
        ("gw.lab/boot", "/boot/ipxe", "pool.ntp.org", "not a server"),
        ("gw.lab:99999", "/boot/ipxe", "pool.ntp.org", "port out of range"),
        ("gw.lab", "boot/ipxe", "pool.ntp.org", "not a URL path"),
        ("gw.lab", "/boot/${x}", "pool.ntp.org", "not a URL path"),
        ("gw.lab", "/boot?x=1", "pool.ntp.org", "not a URL path"),
        ("gw.lab", "/boot/ipxe", "pool ntp", "not an NTP server"),
    ],
)
def test_bad_inputs_are_refused(server: str, path: str, ntp: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        render_machine_script(server, "uefi", None, ntp=ntp, path=path)


def test_unknown_firmware_is_refused() -> None:
    with pytest.raises(InputError, match="uefi or u-boot"):
        render_machine_script("gw.lab", "bios", None)  # type: ignore[arg-type]


def test_identity_is_embedded_as_settings_that_round_trip(identity: certs.ClientIdentity) -> None:
    script = render_machine_script("boot.example.com", "u-boot", identity)
    assert read_hex_setting(script, "cert") == identity.cert_der
    assert read_hex_setting(script, "privkey") == identity.key_der
    assert identity.fingerprint_sha1 in script and "PRIVATE KEY" in script
    assert max(len(line) for line in script.splitlines()) <= 130
    # the key and certificate are set before the first network command
    lines = code_lines(script)
    assert lines[0].startswith("set cert:hex ") and lines[1].startswith("set privkey:hex ")


def test_no_identity_means_no_settings() -> None:
    script = render_machine_script("boot.example.com", "uefi", None)
    assert read_hex_setting(script, "privkey") is None and "set " not in script


# --- hex settings ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 31, 32, 33, 64, 1191])
def test_hex_setting_round_trips(size: int) -> None:
    data = bytes((i * 37 + 11) % 256 for i in range(size))
    text = hex_setting("privkey", data, per_line=32)
    physical = text.split("\n")
    assert len(physical) == (size + 31) // 32
    assert all(line.endswith(":\\") for line in physical[:-1])
    assert all(not line[:1].isspace() for line in physical)  # a leading space would split iPXE's value
    (line,) = [joined for _, joined in logical_lines(text)]
    assert line == "set privkey:hex " + ":".join(f"{b:02x}" for b in data)  # ipxe.org/cfg/privkey's format
    assert read_hex_setting(text, "privkey") == data


def test_hex_setting_handles_crlf_and_hexraw() -> None:
    text = hex_setting("cert", b"\x30\x82\x01\x00" * 20, per_line=8).replace("\n", "\r\n")
    assert read_hex_setting(text, "cert") == b"\x30\x82\x01\x00" * 20
    assert read_hex_setting("set cert:hexraw 3082ff\n", "cert") == b"\x30\x82\xff"
    with pytest.raises(ValueError, match="malformed"):
        read_hex_setting("set cert:hex 30:8\n", "cert")
    with pytest.raises(ValueError):
        hex_setting("cert", b"")


# --- lint -----------------------------------------------------------------------------------------------------


def test_lint_flags_each_waiting_command_with_its_line_number() -> None:
    script = "\n".join(["#!ipxe", "dhcp", *(f"{cmd} x" for cmd in WAITING_COMMANDS), "boot"])
    findings = lint_script(script, "u-boot")
    assert [line for line, _ in findings] == list(range(3, 3 + len(WAITING_COMMANDS)))
    for (_, message), cmd in zip(findings, WAITING_COMMANDS, strict=True):
        assert message.startswith(f"'{cmd}' ") and "U-Boot" in message


@pytest.mark.parametrize(
    ("script", "lines"),
    [
        ("#!ipxe\n:wait sleep 3\n", [2]),  # label then command on one line
        ("#!ipxe\ndhcp || sleep 1\n", [2]),
        ("#!ipxe\nisset ${x} && prompt --timeout 3000 go ; shell\n", [2, 2]),
        ("#!ipxe\n\n  time sleep 2\n", [3]),
        ("#!ipxe\nmenu Boot\nitem a A\nchoose --timeout 5000 --default a target && goto ${target}\n", [4]),
        ("#!ipxe\necho one \\\n; sleep 1\nsleep 2\n", [2, 4]),  # continuation: reported at the line it starts
        ("#!ipxe\r\nsleep 1\r\n", [2]),
    ],
)
def test_lint_follows_ipxe_parsing(script: str, lines: list[int]) -> None:
    assert [line for line, _ in lint_script(script, "u-boot")] == lines


@pytest.mark.parametrize(
    "script",
    [
        "#!ipxe\n# sleep 5 in a comment\n",
        "#!ipxe\necho sleep is not run here\n",
        "#!ipxe\ndhcp # then sleep\n",
        "#!ipxe\necho a \\\nsleep b\n",  # joined: `echo a sleep b`
        "#!ipxe\nset sleeper 1\nifconf --timeout 5000\nntp pool.ntp.org\nchain --timeout 10000 https://x/y\n",
        "#!ipxe\nsleep\\\ning\n",  # `sleeping`: no such command, but not sleep
    ],
)
def test_lint_does_not_flag_what_does_not_wait(script: str) -> None:
    assert lint_script(script, "u-boot") == []


def test_lint_is_silent_for_uefi() -> None:
    assert lint_script("#!ipxe\nsleep 5\nprompt\n", "uefi") == []


def test_logical_lines_join_continuations_like_ipxe() -> None:
    assert logical_lines("a \\\nb\\\nc\nd") == [(1, "a bc"), (4, "d")]
    assert commands(":lbl  cmd1 arg || cmd2 && cmd3 ; cmd4 #c || cmd5") == [["cmd1", "arg"], ["cmd2"], ["cmd3"], ["cmd4"]]


def test_lint_example_file(tmp_path: Path) -> None:
    # what the CLI reads: a real file, UTF-8
    path = tmp_path / "a.ipxe"
    path.write_text("#!ipxe\ndhcp\nprompt Press any key\n", encoding="utf-8")
    assert lint_script(path.read_text(encoding="utf-8"), "u-boot")[0][0] == 3


def test_with_identity_sets_certificate_and_key_first(identity: certs.ClientIdentity) -> None:
    from boot2ipxe.formats.ipxe_script import read_hex_setting
    from boot2ipxe.inject.script import with_identity

    script = with_identity("#!ipxe\ndhcp\nchain http://x/y\n", identity)
    assert script.startswith("#!ipxe\nset cert:hex ")
    assert read_hex_setting(script, "cert") == identity.cert_der
    assert read_hex_setting(script, "privkey") == identity.key_der
    assert code_lines(script)[-2:] == ["dhcp", "chain http://x/y"]
    assert with_identity("dhcp\n", identity).startswith("#!ipxe\nset cert:hex ")
