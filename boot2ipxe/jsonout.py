"""JSON text exactly as ``json.dumps`` writes it, for the modules a warm build runs.

``import json`` costs a warm build more than everything it writes: the package compiles regular expressions,
which imports ``re`` and ``enum``. Strings are escaped by the same C function ``json`` uses
(``_json.encode_basestring_ascii``); everything else is a few lines. Output equals ``json.dumps(value,
indent=indent, sort_keys=sort_keys)`` for what boot2ipxe writes: dicts with str or int keys, lists and tuples,
str, int, float, bool and None (tests compare the two).
"""

from __future__ import annotations

from _json import encode_basestring_ascii as _string

from boot2ipxe import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def dumps(value: Any, *, indent: int | None = None, sort_keys: bool = False) -> str:
    parts: list[str] = []
    _encode(value, parts, indent, sort_keys, 0)
    return "".join(parts)


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, int) and not isinstance(key, bool):
        return int.__repr__(key)
    raise TypeError(f"keys must be str or int, not {type(key).__name__}")


def _encode(value: Any, out: list[str], indent: int | None, sort_keys: bool, depth: int) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_float(value))
    elif isinstance(value, (list, tuple, dict)):
        if not value:
            out.append("{}" if isinstance(value, dict) else "[]")
            return
        if indent is None:
            opening, separator, closing = "", ", ", ""
        else:
            opening = "\n" + " " * (indent * (depth + 1))
            separator, closing = "," + opening, "\n" + " " * (indent * depth)
        if isinstance(value, dict):
            items = sorted(value.items()) if sort_keys else value.items()
            out.append("{" + opening)
            for n, (key, item) in enumerate(items):
                if n:
                    out.append(separator)
                out.append(_string(_key(key)) + ": ")
                _encode(item, out, indent, sort_keys, depth + 1)
            out.append(closing + "}")
        else:
            out.append("[" + opening)
            for n, item in enumerate(value):
                if n:
                    out.append(separator)
                _encode(item, out, indent, sort_keys, depth + 1)
            out.append(closing + "]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _float(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return float.__repr__(value)
