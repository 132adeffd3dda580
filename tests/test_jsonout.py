"""jsonout.dumps writes what json.dumps writes (a warm build uses it so as not to import json)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from boot2ipxe.jsonout import dumps

SAMPLES: list[Any] = [
    {},
    [],
    {"a": []},
    {"a": {}},
    [None, True, False, 0, -1, 10**30, 1.5, -0.0, 1e100, 3.141592653589793],
    {"é": "ünïcode ✓ \U0001f600", "ctl": '\x00\x1f\t\n\r"\\/', 1: "int key"},
    {"nested": [{"x": [1, [2, [3, {}]]]}, ("tuple", 2)], "z": None, "b": {"c": {"d": "e"}}},
    [float("inf"), float("-inf")],
]


@pytest.mark.parametrize("value", SAMPLES)
@pytest.mark.parametrize("indent", [None, 2, 4])
@pytest.mark.parametrize("sort_keys", [False, True])
def test_same_text_as_json(value: Any, indent: int | None, sort_keys: bool) -> None:
    if sort_keys and isinstance(value, dict) and any(isinstance(k, int) for k in value):
        return  # json cannot sort mixed keys either
    assert dumps(value, indent=indent, sort_keys=sort_keys) == json.dumps(value, indent=indent, sort_keys=sort_keys)


def test_random_documents_match_json() -> None:
    rng = random.Random(8)

    def make(depth: int) -> Any:
        kind = rng.randrange(7 if depth < 4 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.randint(-(10**12), 10**12)
        if kind == 2:
            return rng.random() * 10 ** rng.randint(-5, 20)
        if kind == 3:
            return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFFF)])) for _ in range(rng.randint(0, 8)))
        if kind in (4, 5):
            return [make(depth + 1) for _ in range(rng.randint(0, 4))]
        return {str(make(3)): make(depth + 1) for _ in range(rng.randint(0, 4))}

    for _ in range(300):
        value = make(0)
        assert dumps(value, indent=2) == json.dumps(value, indent=2)
        assert dumps(value) == json.dumps(value)


def test_the_build_manifest_reads_back_as_written(tmp_path: Any) -> None:
    value = {"format": "boot2ipxe-manifest/1", "image": {"sha256": "ab" * 32, "size": 1 << 30}, "files": [{"dest": "EFI"}]}
    assert json.loads(dumps(value, indent=2)) == value


def test_what_json_cannot_write_is_refused() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": object()})
    with pytest.raises(TypeError, match="keys must be str or int"):
        dumps({(1, 2): "tuple key"})
