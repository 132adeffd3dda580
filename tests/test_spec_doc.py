"""docs/spec.md stays true: its example validates, it names every key, type and invalid-spec rule, and the
example messages in its rule tables are what `validate` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from boot2ipxe.plan.layout import make_plan
from boot2ipxe.plan.templates import template_context
from boot2ipxe.plan.validate import validate
from boot2ipxe.spec.load import Collector, load_spec
from boot2ipxe.spec.mirrors import Mirrors
from boot2ipxe.spec.model import PARTITION_TYPES

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "schema" / "platform.schema.json").read_text(encoding="utf-8"))
INVALID = ROOT / "tests" / "specs" / "invalid"
MIRRORS = Mirrors(cli={"debian": "http://127.0.0.1:9/debian"}, environ={}, config_file=Path("/nonexistent"), apt_paths=())
# | rule | `message` | `test-spec` |
RULE_ROW = re.compile(r"^\|[^|]*\| `(?P<message>.+)` \| `(?P<stem>[a-z0-9-]+)` \|$", re.MULTILINE)


def test_the_complete_example_is_valid(tmp_path: Path) -> None:
    example = re.search(r"## A complete example\n\n```yaml\n(.*?)```", DOC, re.DOTALL)
    assert example
    spec_path = tmp_path / "myboard.yaml"
    spec_path.write_text(example.group(1))
    spec, problems = load_spec(spec_path, MIRRORS)
    assert spec is not None and problems == []
    plan, problems = make_plan(spec)
    assert plan is not None and problems == []


def schema_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for name, value in node.get("properties", {}).items():
            keys.add(name)
            keys |= schema_keys(value)
        for definition in node.get("$defs", {}).values():
            keys |= schema_keys(definition)
    return keys


def test_every_key_is_documented() -> None:
    keys = schema_keys(SCHEMA)
    assert {"source-date-epoch", "size", "fs-id", "archive-sha256", "firmware"} <= keys
    missing = sorted(k for k in keys if f"| `{k}` |" not in DOC)
    assert missing == []


def test_every_partition_type_is_documented() -> None:
    for t in PARTITION_TYPES.values():
        mbr = f"`0x{t.mbr:02x}`" if t.mbr is not None else "—"
        assert f"| `{t.name}` | {mbr} | `{t.gpt}` | {t.description} |" in DOC, t.name


def test_every_enum_value_is_documented() -> None:
    for value in SCHEMA["properties"]["arch"]["enum"] + SCHEMA["properties"]["chain"]["items"]["enum"]:
        assert f"`{value}`" in DOC, value


def test_every_invalid_spec_is_in_the_rule_tables() -> None:
    documented = {m.group("stem") for m in RULE_ROW.finditer(DOC)}
    assert sorted(p.stem for p in INVALID.glob("*.yaml") if p.stem not in documented) == []
    assert sorted(documented - {p.stem for p in INVALID.glob("*.yaml")}) == []


@pytest.mark.parametrize(("stem", "message"), [(m.group("stem"), m.group("message")) for m in RULE_ROW.finditer(DOC)])
def test_documented_message_is_what_validate_prints(stem: str, message: str) -> None:
    result = validate(INVALID / f"{stem}.yaml", MIRRORS)
    printed = [f"{p.path}: {p.message}" if p.path else p.message for p in result.errors]
    # The doc shortens long messages with "…" and placeholders like (…): every piece must be there, in order.
    pieces = [piece.strip() for piece in re.split(r"\(…\)|…", message.replace("\\|", "|")) if piece.strip()]
    assert any(_in_order(pieces, line) for line in printed), (message, printed)


def _in_order(pieces: list[str], line: str) -> bool:
    position = 0
    for piece in pieces:
        found = line.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return line.startswith(pieces[0])


def test_template_context_is_documented(tmp_path: Path) -> None:
    spec_path = tmp_path / "ctx.yaml"
    spec_path.write_text(
        "spec: 1\nname: ctx\narch: x86_64\nchain: [uefi]\ndisk: {table: gpt}\n"
        "partitions: [{name: esp, type: efi-system, size: 64MiB, filesystem: vfat,"
        " files: [{dest: x, content: '{{ platform }} {{ disk }} {{ partitions }}'}]}]\n"
    )
    spec, _ = load_spec(spec_path, MIRRORS)
    assert spec is not None
    plan, _ = make_plan(spec)
    assert plan is not None
    context = template_context(Collector("x"), spec, [(2048, 133120)], plan.total_sectors)
    for name in ("platform", "disk"):
        for key in context[name]:
            assert f"`{name}.{key}`" in DOC, f"{name}.{key}"
    for key in context["partitions"]["esp"]:
        assert f"`partitions.<name>.{key}`" in DOC or f", `.{key}`" in DOC, f"partitions.<name>.{key}"
