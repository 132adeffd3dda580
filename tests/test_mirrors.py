"""mirrors.py: ${name} resolved from the CLI, the environment, the config file and the apt sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from boot2ipxe.errors import InputError
from boot2ipxe.spec.mirrors import Mirrors, debian_from_apt, parse_cli_mirrors

URL = "${debian}/pool/main/i/ipxe/ipxe.deb"

ONE_LINE = """\
# a comment
deb-src http://src.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/x.gpg] http://security.example.org/debian-security bookworm-security main
deb http://apt.example.com/vendor stable main
deb\t[trusted=yes]  http://one-line.example.org/debian/  bookworm main contrib
"""

DEB822 = """\
Types: deb
URIs: http://deb822.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm

Types: deb
URIs: http://disabled.example.org/debian
Suites: trixie
Enabled: no

Types: deb
# a comment inside the stanza
URIs: http://deb822.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def apt_dir(tmp_path: Path, files: dict[str, str]) -> tuple[Path, Path]:
    main, parts = tmp_path / "sources.list", tmp_path / "sources.list.d"
    parts.mkdir()
    for name, text in files.items():
        (main if name == "sources.list" else parts / name).write_text(text)
    return main, parts


def test_one_line_format(tmp_path: Path) -> None:
    paths = apt_dir(tmp_path, {"sources.list": ONE_LINE})
    assert debian_from_apt(paths) == ("http://one-line.example.org/debian", str(tmp_path / "sources.list"))


def test_deb822_format(tmp_path: Path) -> None:
    paths = apt_dir(tmp_path, {"debian.sources": DEB822})
    assert debian_from_apt(paths) == ("http://deb822.example.org/debian", str(tmp_path / "sources.list.d/debian.sources"))


def test_apt_order_and_ignored_files(tmp_path: Path) -> None:
    # sources.list first, then sources.list.d in name order; other suffixes and disabled entries are ignored.
    paths = apt_dir(
        tmp_path,
        {"b.sources": DEB822, "a.list": ONE_LINE, "0.list.disabled": "deb http://no.example.org/debian bookworm main"},
    )
    assert debian_from_apt(paths) == ("http://one-line.example.org/debian", str(tmp_path / "sources.list.d/a.list"))
    assert debian_from_apt([tmp_path / "missing"]) is None
    (tmp_path / "empty").mkdir()
    assert debian_from_apt(apt_dir(tmp_path / "empty", {})) is None


def test_resolution_order(tmp_path: Path) -> None:
    apt = apt_dir(tmp_path, {"debian.sources": DEB822})
    config = tmp_path / "config.toml"
    config.write_text('[mirrors]\ndebian = "http://config.example.org/debian/"\nlocal = "file:///srv/pool"\n')
    env = {"BOOT2IPXE_MIRROR_DEBIAN": "http://env.example.org/debian"}

    def resolve(cli: dict[str, str], environ: dict[str, str], config_file: Path) -> str:
        return Mirrors(cli=cli, environ=environ, config_file=config_file, apt_paths=apt).resolve(URL)

    cli = parse_cli_mirrors(["debian=http://cli.example.org/debian"])
    assert resolve(cli, env, config) == "http://cli.example.org/debian/pool/main/i/ipxe/ipxe.deb"
    assert resolve({}, env, config) == "http://env.example.org/debian/pool/main/i/ipxe/ipxe.deb"
    assert resolve({}, {}, config) == "http://config.example.org/debian/pool/main/i/ipxe/ipxe.deb"
    assert resolve({}, {}, tmp_path / "none.toml") == "http://deb822.example.org/debian/pool/main/i/ipxe/ipxe.deb"

    mirrors = Mirrors(environ={"BOOT2IPXE_MIRROR_MY_MIRROR": "http://x.example"}, config_file=config, apt_paths=apt)
    assert mirrors.lookup("my-mirror") == ("http://x.example", "BOOT2IPXE_MIRROR_MY_MIRROR")
    assert mirrors.lookup("local") == ("file:///srv/pool", str(config))
    assert mirrors.lookup("debian") == ("http://config.example.org/debian/", str(config))


def test_unresolved_placeholder_says_how_to_set_it(tmp_path: Path) -> None:
    mirrors = Mirrors(environ={}, config_file=tmp_path / "none.toml", apt_paths=(tmp_path / "none",))
    with pytest.raises(InputError) as exc:
        mirrors.resolve("${vendor}/x.bin")
    assert str(exc.value).startswith(
        "no mirror configured for ${vendor}: set it with --mirror vendor=URL, BOOT2IPXE_MIRROR_VENDOR=URL"
    )
    with pytest.raises(InputError, match=r"read from the machine's apt sources, and none was found"):
        mirrors.resolve(URL)
    assert mirrors.unresolved("${a}/${debian}/x") == ["a", "debian"]


def test_bad_cli_and_config_values(tmp_path: Path) -> None:
    for bad in ("debian", "=http://x", "debian=ftp://x", "deb ian=http://x"):
        with pytest.raises(InputError, match="expected NAME=URL"):
            parse_cli_mirrors([bad])
    config = tmp_path / "config.toml"
    config.write_text("[mirrors]\ndebian = 3\n")
    with pytest.raises(InputError, match=r"config.toml:mirrors: expected a table"):
        Mirrors(environ={}, config_file=config).lookup("debian")
    config.write_text("not toml [")
    with pytest.raises(InputError, match="cannot read the config file"):
        Mirrors(environ={}, config_file=config).lookup("debian")


def test_this_machine_has_a_debian_mirror() -> None:
    """The default ``debian`` mirror comes from the machine's own apt sources (tests/mirror.py relies on it)."""
    found = debian_from_apt((Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d")))
    if found is None:
        pytest.skip("no Debian archive in this machine's apt sources")
    assert found[0].startswith(("http://", "https://")) and found[0].endswith("/debian")
