"""What `pip install .` (not editable) puts in place: every package and data file the code needs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_python_package_is_installed() -> None:
    """setuptools' discovery, as pyproject.toml configures it, finds every package of the source tree."""
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = sorted(".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "boot2ipxe").rglob("__init__.py"))
    assert sorted(find_packages(str(ROOT), include=config["include"])) == found


def test_package_data_covers_the_data_directory() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["boot2ipxe"]
    data = [p.relative_to(ROOT / "boot2ipxe") for p in (ROOT / "boot2ipxe" / "data").iterdir()]
    assert data and all(any(p.match(pattern) for pattern in patterns) for p in data)
