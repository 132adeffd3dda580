"""The build cache: recipes and image digests kept beside the blob cache, so a warm build repeats no work.

Two memos, both under ``CACHE/builds/`` and both safe to delete at any time:

``recipes/KEY.json``
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
copied from another machine, torn — is a miss. Writes are atomic (temporary file, rename).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from boot2ipxe import TYPE_CHECKING, seal
from boot2ipxe.errors import Boot2ipxeError
from boot2ipxe.outputs import write_atomic
from boot2ipxe.recipe import RECIPE_FORMAT

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from boot2ipxe.recipe import Recipe

PACKAGE = Path(__file__).resolve().parent
DIGEST_RE = re.compile(r"[0-9a-f]{64}")


@functools.cache
def package_digest() -> str:
    """sha256 over the names, sizes and modification times of boot2ipxe's own files (code, schema, templates),
    which is how Python's bytecode cache tells a changed module: any change to the tool is a new key."""
    digest = hashlib.sha256()
    pending = [PACKAGE]
    files: list[tuple[str, int, int]] = []
    while pending:
        directory = pending.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_dir() and entry.name != "__pycache__":
                    pending.append(Path(entry.path))
                elif entry.is_file() and not entry.name.endswith((".pyc", ".pyo")):
                    st = entry.stat()
                    files.append((os.path.relpath(entry.path, PACKAGE), st.st_size, st.st_mtime_ns))
    for name, size, mtime in sorted(files):
        digest.update(f"{name}\0{size}\0{mtime}\n".encode())
    return digest.hexdigest()


def file_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def recipe_key(
    spec_path: Path,
    display: str,
    spec_bytes: bytes,
    epoch_override: int | None,
    cli_mirrors: Sequence[str],
    environ: Mapping[str, str],
    config_file: Path,
) -> str:
    material = [
        RECIPE_FORMAT,
        package_digest(),
        sys.version,
        str(spec_path.resolve()),
        display,
        hashlib.sha256(spec_bytes).hexdigest(),
        epoch_override,
        list(cli_mirrors),  # --mirror NAME=URL as given: the last of one name wins
        sorted((k, v) for k, v in environ.items() if k.startswith("BOOT2IPXE_MIRROR_")),
        [str(config_file), file_sha256(str(config_file))],
    ]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Atomic, without fsync: after a crash the file is whole, empty or absent, and anything but whole is a miss."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data, durable=False)
    except (OSError, Boot2ipxeError):
        pass  # a read-only or full cache only costs the next build its shortcut


class BuildCache:
    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root / "builds"

    def load_recipe(self, key: str, blob_path: Callable[[str], Path]) -> Recipe | None:
        """The stored recipe if every file it depends on is unchanged, its blob paths filled in by ``blob_path``."""
        try:
            tag, _, data = (self.root / "recipes" / f"{key}.json").read_bytes().partition(b"\n")
            if not seal.verify(data, tag.decode("ascii", "replace")):
                return None
            recipe = json.loads(data)
        except (OSError, ValueError):
            return None
        if not isinstance(recipe, dict) or recipe.get("format") != RECIPE_FORMAT or recipe.get("key") != key:
            return None
        for path, digest in recipe.get("inputs", []):
            if file_sha256(path) != digest:
                return None
        for sha256, blob in recipe["blobs"].items():
            blob["path"] = str(blob_path(sha256))
        return recipe

    def store_recipe(self, key: str, recipe: Recipe, inputs: Sequence[tuple[str, str | None]]) -> None:
        stored = {**recipe, "key": key, "inputs": [list(i) for i in inputs]}
        stored["blobs"] = {sha: {k: v for k, v in blob.items() if k != "path"} for sha, blob in recipe["blobs"].items()}
        # Key order is kept (no sort_keys): the manifest is written from the stored recipe.
        data = json.dumps(stored).encode()
        tag = seal.seal(data)
        if tag is not None:
            _write(self.root / "recipes" / f"{key}.json", tag.encode() + b"\n" + data)

    def _image_path(self, content_key: str, expect: Mapping[str, Any]) -> Path:
        expect_digest = hashlib.sha256(json.dumps(expect, sort_keys=True).encode()).hexdigest()
        return self.root / "images" / hashlib.sha256(f"{content_key} {expect_digest}".encode()).hexdigest()

    def known_image(self, content_key: str, expect: Mapping[str, Any]) -> str | None:
        """The full sha256 of an image with this content that already passed these expectations, or None."""
        path = self._image_path(content_key, expect)
        try:
            digest, _, tag = path.read_text(encoding="ascii").strip().partition(" ")
        except (OSError, UnicodeError):
            return None
        if not DIGEST_RE.fullmatch(digest) or not seal.verify(f"{path.name} {digest}".encode(), tag):
            return None
        return digest

    def remember_image(self, content_key: str, expect: Mapping[str, Any], sha256: str) -> None:
        path = self._image_path(content_key, expect)
        tag = seal.seal(f"{path.name} {sha256}".encode())
        if tag is not None:
            _write(path, f"{sha256} {tag}\n".encode())
