"""JSON Schema validation of raw spec data, with errors rewritten as one-line, key-path problems."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError

from boot2ipxe.errors import key_path


@cache
def platform_schema() -> dict[str, Any]:
    text = resources.files("boot2ipxe").joinpath("data/platform.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_problems(data: Any) -> Iterator[tuple[str, str]]:
    """(key path, message) for every schema violation, deepest and most specific first."""
    validator = jsonschema.Draft202012Validator(platform_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        yield from _explain(error)


def _explain(error: ValidationError) -> Iterator[tuple[str, str]]:
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    if "propertyNames" in error.absolute_schema_path:
        # The error is about a key, so point at the key itself.
        what = schema.get("description", f"must match {schema.get('pattern', 'the schema')}")
        yield key_path([*path, str(error.instance)]), f"'{error.instance}' is not {_article(what)}"
        return
    if kind == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(allowed), key=str):
            yield key_path([*path, str(key)]), f"unknown key '{key}'; allowed here: {', '.join(allowed)}"
        return
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        yield key_path([*path, missing]), f"required key '{missing}' is missing"
        return
    if kind == "oneOf":
        alternatives = schema.get("oneOf", [])
        exclusive = [alt["required"][0] for alt in alternatives if set(alt) == {"required"}]
        if exclusive:
            present = [k for k in exclusive if isinstance(error.instance, dict) and k in error.instance]
            has = f" (has {', '.join(present)})" if present else ""
            yield key_path(path), f"needs exactly one of {', '.join(exclusive)}{has}"
            return
        if _is_size(schema):
            rest = any(isinstance(alt, dict) and alt.get("const") == "rest" for alt in schema.get("oneOf", []))
            hint = SIZE_HINT + (', or "rest" on the last partition' if rest else "")
            yield key_path(path), f"{_show(error.instance)} is not a size: {hint}"
            return
        yield key_path(path), f"{_show(error.instance)} is not valid here: {schema.get('description', 'see docs/spec.md')}"
        return
    if kind == "enum":
        yield key_path(path), f"{_show(error.instance)} is not one of {', '.join(map(str, schema['enum']))}"
        return
    if kind == "const":
        yield key_path(path), f"must be {schema['const']}, not {_show(error.instance)}"
        return
    if kind == "type":
        yield key_path(path), f"expected {_type_words(schema.get('type'))}, got {_type_name(error.instance)}"
        return
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        yield key_path(path), f"must be {bound} {schema[kind]}, not {_show(error.instance)}"
        return
    if kind == "pattern":
        hint = schema.get("description", f"must match {schema['pattern']}")
        yield key_path(path), f"{_show(error.instance)} is not valid: {hint}"
        return
    if kind == "propertyNames":
        yield key_path(path), f"invalid key {_show(error.instance)}: {error.message}"
        return
    yield key_path(path), error.message


SIZE_HINT = "use bytes or a number with B, KiB, MiB, GiB or TiB, such as 512, 8KiB, 4MiB or 1GiB"
SIZE_REF = "#/$defs/size"


def _is_size(schema: dict[str, Any]) -> bool:
    """A size (the size definition itself, or a choice with a size among its alternatives)."""
    alternatives = schema.get("oneOf", [])
    if any(isinstance(alt, dict) and alt.get("$ref") == SIZE_REF for alt in alternatives):
        return True
    return any(isinstance(alt, dict) and "KiB" in str(alt.get("pattern", "")) for alt in alternatives)


def _article(description: str) -> str:
    return description if description.startswith(("a ", "an ", "must ")) else f"valid: {description}"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_words(types: Any) -> str:
    names = {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "boolean": "true or false",
        "number": "a number",
    }
    if isinstance(types, list):
        return " or ".join(names.get(str(t), str(t)) for t in types)
    return names.get(str(types), str(types))


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    )
