"""The build cache: recipes and image digests kept beside the blob cache, so a warm build repeats no work.

Two memos, both under ``CACHE/builds/`` and both safe to delete at any time:

``recipes/KEY.recipe``
    The recipe (``recipe.py``) a build made, under a key over everything validation and planning read:
    boot2ipxe's own code, the Python version, the spec's path, name as given and bytes, the
    SOURCE_DATE_EPOCH override, the mirrors set on the command line, in the environment and in the config
    file. The recipe also lists every other file planning read (templates, their includes, and the paths
    an include was looked up at and not found) with its sha256; a recipe is reused only if all of them are
    unchanged. A reused recipe skips YAML, JSON Schema, Jinja2 and the planner: nothing they compute can
    differ. Its blobs must still be in the blob cache, checked as :meth:`Cache.lookup` does.

``images/KEY``
    The sha256 of a whole image that passed ``verify.py``, under a key over its content key (the
    sha256s of its data ranges and its size: ``sparse.scan``) and the recipe's expectations. An image
    with the same content key has the same bytes, so it needs neither the 1 GiB hash nor the read-back.

Every entry is sealed (``seal.py``: an HMAC under a key kept outside the cache), since a recipe names the commands
a build runs and an image entry the sha256 it reports: an entry without a valid seal — written by someone else,
copied from another machine, torn — is a miss. Writes are atomic (temporary file, rename). Recipes are stored
with ``marshal`` (the recipe key includes the Python version, whose marshal format it is): loading one needs no
``json`` module, and its seal is checked before it is loaded.

This module, like everything a warm build runs, imports neither ``json``, ``re`` nor ``pathlib``.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys

from boot2ipxe import TYPE_CHECKING, seal
from boot2ipxe.errors import Boot2ipxeError
from boot2ipxe.jsonout import dumps
from boot2ipxe.outputs import write_atomic
from boot2ipxe.recipe import RECIPE_FORMAT
from boot2ipxe.stamps import is_sha256

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from boot2ipxe.paths import PathLike
    from boot2ipxe.recipe import Recipe

PACKAGE = os.path.dirname(os.path.realpath(__file__))
_package_digest: list[str] = []


def package_digest() -> str:
    """sha256 over the names, sizes and modification times of boot2ipxe's own files (code, schema, templates),
    which is how Python's bytecode cache tells a changed module: any change to the tool is a new key."""
    if _package_digest:
        return _package_digest[0]
    digest = hashlib.sha256()
    pending = [PACKAGE]
    files: list[tuple[str, int, int]] = []
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir() and entry.name != "__pycache__":
                    pending.append(entry.path)
                elif entry.is_file() and not entry.name.endswith((".pyc", ".pyo")):
                    st = entry.stat()
                    files.append((os.path.relpath(entry.path, PACKAGE), st.st_size, st.st_mtime_ns))
    for name, size, mtime in sorted(files):
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    _package_digest.append(digest.hexdigest())
    return _package_digest[0]


def file_sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def recipe_key(
    spec_path: PathLike,
    display: str,
    spec_bytes: bytes,
    epoch_override: int | None,
    cli_mirrors: Sequence[str],
    environ: Mapping[str, str],
    config_file: str,
) -> str:
    material = [
        RECIPE_FORMAT,
        package_digest(),
        sys.version,
        os.path.realpath(spec_path),
        display,
        hashlib.sha256(spec_bytes).hexdigest(),
        epoch_override,
        list(cli_mirrors),  # --mirror NAME=URL as given: the last of one name wins
        sorted((k, v) for k, v in environ.items() if k.startswith("BOOT2IPXE_MIRROR_")),
        [config_file, file_sha256(config_file)],
    ]
    return hashlib.sha256(dumps(material).encode()).hexdigest()


def _write(path: str, data: bytes) -> None:
    """Atomic, without fsync: after a crash the file is whole, empty or absent, and anything but whole is a miss."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, data, durable=False)
    except (OSError, Boot2ipxeError):
        pass  # a read-only or full cache only costs the next build its shortcut


class BuildCache:
    def __init__(self, cache_root: PathLike) -> None:
        self.root = os.path.join(cache_root, "builds")

    def recipe_path(self, key: str) -> str:
        return os.path.join(self.root, "recipes", f"{key}.recipe")

    def load_recipe(self, key: str, blob_path: Callable[[str], PathLike]) -> Recipe | None:
        """The stored recipe if every file it depends on is unchanged, its blob paths filled in by ``blob_path``."""
        try:
            with open(self.recipe_path(key), "rb") as f:
                tag, _, data = f.read().partition(b"\n")
            if not seal.verify(data, tag.decode("ascii", "replace")):
                return None
            recipe = marshal.loads(data)
        except (OSError, ValueError, EOFError, TypeError):
            return None
        if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT or recipe.get("key") != key:
            return None
        for path, digest in recipe.get("inputs", []):
            if file_sha256(path) != digest:
                return None
        for sha256, blob in recipe["blobs"].items():
            blob["path"] = os.fspath(blob_path(sha256))
        return recipe

    def store_recipe(self, key: str, recipe: Recipe, inputs: Sequence[tuple[str, str | None]]) -> None:
        stored = {**recipe, "key": key, "inputs": [list(i) for i in inputs]}
        stored["blobs"] = {sha: {k: v for k, v in blob.items() if k != "path"} for sha, blob in recipe["blobs"].items()}
        # Key order is kept: the manifest is written from the stored recipe.
        data = marshal.dumps(stored)
        tag = seal.seal(data)
        if tag is not None:
            _write(self.recipe_path(key), tag.encode() + b"\n" + data)

    def _image_path(self, content_key: str, expect: Mapping[str, Any]) -> str:
        expect_digest = hashlib.sha256(dumps(expect, sort_keys=True).encode()).hexdigest()
        return os.path.join(self.root, "images", hashlib.sha256(f"{content_key} {expect_digest}".encode()).hexdigest())

    def known_image(self, content_key: str, expect: Mapping[str, Any]) -> str | None:
        """The full sha256 of an image with this content that already passed these expectations, or None."""
        path = self._image_path(content_key, expect)
        try:
            with open(path, encoding="ascii") as f:
                digest, _, tag = f.read().strip().partition(" ")
        except (OSError, UnicodeError):
            return None
        if not is_sha256(digest) or not seal.verify(f"{os.path.basename(path)} {digest}".encode(), tag):
            return None
        return digest

    def remember_image(self, content_key: str, expect: Mapping[str, Any], sha256: str) -> None:
        path = self._image_path(content_key, expect)
        tag = seal.seal(f"{os.path.basename(path)} {sha256}".encode())
        if tag is not None:
            _write(path, f"{sha256} {tag}\n".encode())
