"""yamlio: the defensive YAML reader (size, encoding, duplicates, aliases, tags, documents)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from boot2ipxe.spec.yamlio import MAX_EXPANDED_NODES, MAX_SPEC_BYTES, YamlProblem, load_yaml


def load(tmp_path: Path, text: str | bytes) -> object:
    path = tmp_path / "spec.yaml"
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return load_yaml(path)


def problem(tmp_path: Path, text: str | bytes) -> YamlProblem:
    with pytest.raises(YamlProblem) as caught:
        load(tmp_path, text)
    assert "\n" not in caught.value.message
    return caught.value


def test_plain_mapping(tmp_path: Path) -> None:
    assert load(tmp_path, "spec: 1\nname: x\nsize: 4MiB\nid: 0x5eed3b01\n") == {
        "spec": 1,
        "name": "x",
        "size": "4MiB",
        "id": 0x5EED3B01,  # YAML 1.1: unquoted hex is an integer (the schema accepts both)
    }


def test_utf8_with_bom_and_non_ascii(tmp_path: Path) -> None:
    assert load(tmp_path, "\ufeffdescription: Raspberry Pi — U-Boot → iPXE\n".encode()) == {
        "description": "Raspberry Pi — U-Boot → iPXE"
    }


def test_duplicate_keys_at_any_depth(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: 1\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert (found.where, found.message) == ("5:3", "duplicate key 'c' (first at line 3)")


def test_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    text = "base: &base {type: linux, size: 1MiB}\nparts:\n  - <<: *base\n    type: efi-system\n"
    assert load(tmp_path, text) == {
        "base": {"type": "linux", "size": "1MiB"},
        "parts": [{"type": "efi-system", "size": "1MiB"}],
    }


def test_duplicate_next_to_a_merge_is_still_a_duplicate(tmp_path: Path) -> None:
    found = problem(tmp_path, "base: &base {a: 1}\nx:\n  <<: *base\n  b: 1\n  b: 2\n")
    assert found.message == "duplicate key 'b' (first at line 4)"


def test_unhashable_key(tmp_path: Path) -> None:
    assert problem(tmp_path, "? [a, b]\n: 1\n").message == "a mapping key must be a plain value"


def test_alias_bomb_is_measured_not_built(tmp_path: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for previous, letter in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{letter}: &{letter} [" + ", ".join([f"*{previous}"] * 10) + "]")
    started = time.monotonic()
    found = problem(tmp_path, "\n".join(lines) + "\n")
    assert time.monotonic() - started < 2
    assert found.where == "5:4"  # e = 10^4 copies of a's 11 nodes: the first to exceed the limit
    assert f"more than {MAX_EXPANDED_NODES} nodes" in found.message


def test_many_harmless_aliases_are_fine(tmp_path: Path) -> None:
    text = "x: &x {type: linux}\n" + "".join(f"p{i}: *x\n" for i in range(1000))
    data = load(tmp_path, text)
    assert isinstance(data, dict) and len(data) == 1001


def test_recursive_alias(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: &a\n  b: *a\n")
    assert found.where == "1:4"  # at the anchor: aliases are resolved to the anchored node itself
    assert "refers to itself" in found.message


def test_deep_nesting(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: " + "[" * 300 + "]" * 300 + "\n")
    assert "nested" in found.message


def test_python_tags_are_refused(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: !!python/object/apply:os.system ['true']\n")
    assert found.where == "1:4" and found.message.startswith("YAML syntax error: could not determine a constructor")


def test_syntax_error_keeps_its_context(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: [1, 2\nb: 3\n")
    assert found.where == "2:2"
    assert found.message == "YAML syntax error: expected ',' or ']', but got ':' (while parsing a flow sequence started at 1:4)"


def test_tabs_for_indentation(tmp_path: Path) -> None:
    found = problem(tmp_path, "a:\n\tb: 1\n")
    assert found.where == "2:1" and "YAML syntax error" in found.message


def test_second_document(tmp_path: Path) -> None:
    found = problem(tmp_path, "a: 1\n---\nb: 2\n")
    assert found.where == "2:1" and "a spec is one document" in found.message


def test_empty_and_comment_only(tmp_path: Path) -> None:
    for text in ("", "\n\n", "# nothing\n", "---\n", "--- # nothing\n...\n"):
        assert problem(tmp_path, text).message.startswith("the file is empty")


def test_explicit_null_document_is_not_empty(tmp_path: Path) -> None:
    assert load(tmp_path, "~\n") is None  # the caller reports "not a mapping"


def test_not_utf8(tmp_path: Path) -> None:
    found = problem(tmp_path, b"a: 1\nb: caf\xe9\n")
    assert found.where == "2:7"
    assert found.message == "not UTF-8 text (byte 0xe9 at offset 11); save the file as UTF-8"


def test_size_limit_is_exact(tmp_path: Path) -> None:
    head = b"a: |\n"
    body = b"  " + b"x" * (MAX_SPEC_BYTES - len(head) - 3) + b"\n"
    assert len(head + body) == MAX_SPEC_BYTES
    data = load(tmp_path, head + body)
    assert isinstance(data, dict)
    found = problem(tmp_path, head + body + b"\n")
    assert found.where == "" and found.message.startswith("file is larger than 1024 KiB")
