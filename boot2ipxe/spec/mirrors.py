"""Resolving ``${name}`` placeholders in origin URLs to configured base URLs.

Order: ``--mirror name=URL`` on the command line, ``BOOT2IPXE_MIRROR_<NAME>`` in the environment,
the user's config file (``[mirrors]`` table), and for ``debian`` only, the first Debian archive in the
machine's own apt sources. No mirror host is built in.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from boot2ipxe.errors import InputError

PLACEHOLDER_RE = re.compile(r"\$\{([A-Za-z0-9_-]*)\}")
APT_SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def config_path() -> Path:
    """``${XDG_CONFIG_HOME:-~/.config}/boot2ipxe/config.toml``."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "boot2ipxe" / "config.toml"


def env_name(mirror: str) -> str:
    return "BOOT2IPXE_MIRROR_" + re.sub(r"[^A-Za-z0-9]", "_", mirror).upper()


@dataclass(frozen=True)
class Mirrors:
    """Where each placeholder came from is kept, so messages can say which setting to change."""

    cli: Mapping[str, str] = field(default_factory=dict)
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    config_file: Path | None = None
    apt_paths: tuple[Path, ...] = APT_SOURCES

    def lookup(self, name: str) -> tuple[str, str] | None:
        """(base URL, where it was configured) or None."""
        if name in self.cli:
            return self.cli[name], "--mirror"
        if value := self.environ.get(env_name(name)):
            return value, env_name(name)
        config = self.config_file if self.config_file is not None else config_path()
        configured = _config_mirrors(config).get(name)
        if configured:
            return configured, str(config)
        if name == "debian":
            found = debian_from_apt(self.apt_paths)
            if found:
                return found
        return None

    def resolve(self, url: str) -> str:
        """The URL with every placeholder replaced. Raises InputError naming how to configure it."""

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            found = self.lookup(name)
            if found is None:
                raise InputError(unresolved_message(name))
            return found[0].rstrip("/")

        return PLACEHOLDER_RE.sub(substitute, url)

    def unresolved(self, url: str) -> list[str]:
        return [m.group(1) for m in PLACEHOLDER_RE.finditer(url) if self.lookup(m.group(1)) is None]


def unresolved_message(name: str) -> str:
    hint = f'set it with --mirror {name}=URL, {env_name(name)}=URL, or [mirrors] {name} = "URL" in {config_path()}'
    if name == "debian":
        hint += " (by default it is read from the machine's apt sources, and none was found)"
    return f"no mirror configured for ${{{name}}}: {hint}"


def parse_cli_mirrors(values: Iterable[str]) -> dict[str, str]:
    mirrors: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not re.fullmatch(r"[A-Za-z0-9_-]+", name) or not re.match(r"^(https?|file)://", url):
            raise InputError(f"--mirror {value}: expected NAME=URL with an http(s):// or file:// URL")
        mirrors[name] = url
    return mirrors


def _config_mirrors(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read the config file: {exc}") from None
    table = data.get("mirrors", {})
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise InputError(f'{path}:mirrors: expected a table of name = "URL" strings')
    return dict(table)


def debian_from_apt(paths: Iterable[Path]) -> tuple[str, str] | None:
    """The first Debian archive URI in apt's sources (one-line and deb822 formats)."""
    for path in paths:
        try:
            files = sorted(path.iterdir()) if path.is_dir() else [path]
        except OSError:
            continue
        for file in files:
            if file.suffix not in (".list", ".sources") or not file.is_file():
                continue
            try:
                text = file.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            uris = _deb822_uris(text) if file.suffix == ".sources" else _one_line_uris(text)
            for uri, suites in uris:
                if _is_debian_archive(uri, suites):
                    return uri.rstrip("/"), str(file)
    return None


def _one_line_uris(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            found.append((words[1], [words[2]]))
    return found


def _deb822_uris(text: str) -> list[tuple[str, list[str]]]:
    found = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        for uri in fields.get("uris", "").split():
            found.append((uri, fields.get("suites", "").split()))
    return found


DEBIAN_SUITES = re.compile(
    r"^(stable|testing|unstable|sid|experimental|oldstable|buster|bullseye|bookworm|trixie|forky|duke)"
    r"(-updates|-backports|-proposed-updates)?$"
)


def _is_debian_archive(uri: str, suites: list[str]) -> bool:
    """The main archive, not security (its pool lacks most packages) nor a third-party repository."""
    if not re.match(r"^https?://", uri) or uri.rstrip("/").endswith("-security"):
        return False
    return any(DEBIAN_SUITES.match(suite) for suite in suites) and uri.rstrip("/").endswith("/debian")
