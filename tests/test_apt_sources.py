"""mirrors.py: finding ${debian} in apt sources (one-line and deb822), and the lookup order.

Every host here is fake (mirror.example and friends); nothing is fetched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from boot2ipxe.errors import InputError
from boot2ipxe.spec.mirrors import Mirrors, debian_from_apt, env_name, parse_cli_mirrors, unresolved_message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_one_line_format(tmp_path: Path) -> None:
    sources = write(
        tmp_path / "sources.list",
        """\
        # deb http://commented.example/debian bookworm main
        deb-src http://source-only.example/debian bookworm main
        deb http://security.example/debian-security bookworm-security main
        deb https://thirdparty.example/apt stable main
        deb http://ubuntu.example/ubuntu jammy main
        deb [arch=amd64 signed-by=/usr/share/keyrings/debian.gpg] http://mirror.example/debian/ bookworm main contrib
        deb http://later.example/debian bookworm main
        """.replace("        ", ""),
    )
    # Comments, deb-src, the security archive, third-party repositories and other distributions are skipped;
    # [options] are dropped and the trailing slash removed.
    assert debian_from_apt([sources]) == ("http://mirror.example/debian", str(sources))


def test_one_line_suites(tmp_path: Path) -> None:
    for suite in ("stable", "testing", "sid", "trixie", "trixie-updates", "bookworm-backports", "forky"):
        sources = write(tmp_path / f"{suite}.list", f"deb http://mirror.example/debian {suite} main\n")
        assert debian_from_apt([sources]) == ("http://mirror.example/debian", str(sources)), suite
    for suite in ("jammy", "noble", "trixie-security", "mystable"):
        sources = write(tmp_path / f"{suite}.list", f"deb http://mirror.example/debian {suite} main\n")
        assert debian_from_apt([sources]) is None, suite


def test_deb822_format(tmp_path: Path) -> None:
    sources = write(
        tmp_path / "debian.sources",
        """\
        Types: deb
        URIs: http://disabled.example/debian
        Suites: trixie
        Components: main
        Enabled: no

        # the security archive is never a ${debian} mirror
        Types: deb
        URIs: http://security.example/debian-security
        Suites: trixie-security
        Components: main

        Types: deb-src
        URIs: http://source-only.example/debian
        Suites: trixie
        Components: main

        Types: deb deb-src
        URIs: https://mirror.example/debian/ http://second.example/debian
        Suites: trixie trixie-updates
        Components: main non-free-firmware
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        """.replace("        ", ""),
    )
    assert debian_from_apt([sources]) == ("https://mirror.example/debian", str(sources))


def test_deb822_field_names_are_case_insensitive(tmp_path: Path) -> None:
    sources = write(tmp_path / "x.sources", "types: deb\nuris: http://mirror.example/debian\nsuites: bookworm\n")
    assert debian_from_apt([sources]) == ("http://mirror.example/debian", str(sources))


def test_sources_list_first_then_the_directory_in_order(tmp_path: Path) -> None:
    main = write(tmp_path / "sources.list", "# nothing enabled here\n")
    directory = tmp_path / "sources.list.d"
    write(directory / "b-debian.sources", "Types: deb\nURIs: http://b.example/debian\nSuites: trixie\n")
    write(directory / "a-debian.list", "deb http://a.example/debian trixie main\n")
    write(directory / "0-debian.list.save", "deb http://saved.example/debian trixie main\n")  # not a sources file
    write(directory / "0-debian.disabled", "deb http://disabled.example/debian trixie main\n")
    assert debian_from_apt([main, directory]) == ("http://a.example/debian", str(directory / "a-debian.list"))
    write(main, "deb http://main.example/debian trixie main\n")
    assert debian_from_apt([main, directory]) == ("http://main.example/debian", str(main))


def test_nothing_found(tmp_path: Path) -> None:
    assert debian_from_apt([]) is None
    assert debian_from_apt([tmp_path / "missing.list"]) is None
    write(tmp_path / "empty.sources", "")
    assert debian_from_apt([tmp_path / "empty.sources"]) is None


def mirrors(
    tmp_path: Path,
    cli: dict[str, str] | None = None,
    environ: dict[str, str] | None = None,
    config_file: Path | None = None,
    apt_paths: tuple[Path, ...] = (),
) -> Mirrors:
    """Mirrors that see only what the test gives them (not this machine's environment, config or apt)."""
    return Mirrors(cli or {}, environ or {}, config_file or tmp_path / "absent.toml", apt_paths)


def test_lookup_order(tmp_path: Path) -> None:
    apt = write(tmp_path / "sources.list", "deb http://apt.example/debian trixie main\n")
    config = write(tmp_path / "config.toml", '[mirrors]\ndebian = "http://config.example/debian"\n')
    env = {"BOOT2IPXE_MIRROR_DEBIAN": "http://env.example/debian"}
    cli = {"debian": "http://cli.example/debian"}
    assert mirrors(tmp_path, cli=cli, environ=env, config_file=config, apt_paths=(apt,)).lookup("debian") == (
        "http://cli.example/debian",
        "--mirror",
    )
    assert mirrors(tmp_path, environ=env, config_file=config, apt_paths=(apt,)).lookup("debian") == (
        "http://env.example/debian",
        "BOOT2IPXE_MIRROR_DEBIAN",
    )
    assert mirrors(tmp_path, config_file=config, apt_paths=(apt,)).lookup("debian") == (
        "http://config.example/debian",
        str(config),
    )
    assert mirrors(tmp_path, apt_paths=(apt,)).lookup("debian") == ("http://apt.example/debian", str(apt))
    assert mirrors(tmp_path).lookup("debian") is None
    # Only ${debian} falls back to apt.
    assert mirrors(tmp_path, apt_paths=(apt,)).lookup("ubuntu") is None


def test_resolve(tmp_path: Path) -> None:
    m = mirrors(tmp_path, cli={"debian": "http://mirror.example/debian/"})
    assert m.resolve("${debian}/pool/main/i/ipxe/x.deb") == "http://mirror.example/debian/pool/main/i/ipxe/x.deb"
    assert m.unresolved("${debian}/a ${other}/b") == ["other"]
    with pytest.raises(InputError, match=r"no mirror configured for \$\{other\}"):
        m.resolve("${other}/pool/x.deb")


def test_unresolved_message_says_how_to_set_it() -> None:
    message = unresolved_message("my-mirror")
    assert "--mirror my-mirror=URL" in message and "BOOT2IPXE_MIRROR_MY_MIRROR=URL" in message
    assert "apt sources" in unresolved_message("debian")
    assert env_name("my.mirror") == "BOOT2IPXE_MIRROR_MY_MIRROR"


@pytest.mark.parametrize("value", ["debian", "=http://x.example", "debian=ftp://x.example/debian", "bad name=http://x"])
def test_bad_cli_mirror(value: str) -> None:
    with pytest.raises(InputError, match="expected NAME=URL"):
        parse_cli_mirrors([value])


def test_bad_config_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config.toml", "[mirrors\n")
    with pytest.raises(InputError, match="cannot read the config file"):
        mirrors(tmp_path, config_file=config).lookup("debian")
    write(config, "[mirrors]\ndebian = 3\n")
    with pytest.raises(InputError, match='expected a table of name = "URL" strings'):
        mirrors(tmp_path, config_file=config).lookup("debian")
