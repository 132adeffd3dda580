"""Reading YAML defensively: size limit, duplicate keys, alias bombs, positions in errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_SPEC_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000


class YamlProblem(Exception):
    """Carries a location ('3:5' or a key path) and a message."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where
        self.message = message


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    # Only the mapping's own keys must be unique: keys brought in by a merge (<<: *anchor) may be overridden.
    own = [key_node for key_node, _ in node.value if key_node.tag != "tag:yaml.org,2002:merge"]
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node in own:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            raise YamlProblem(_mark(key_node), "a mapping key must be a plain value") from None
        if duplicate:
            raise YamlProblem(_mark(key_node), f"duplicate key '{key}' (first at line {seen[key].start_mark.line + 1})")
        seen[key] = key_node
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mark(node: yaml.Node) -> str:
    return f"{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int], depth: int = 0) -> int:
    """Node count with aliases expanded, memoised so a bomb is measured without being built.

    ``active`` holds the nodes being measured: meeting one again means an alias inside its own anchor.
    """
    if id(node) in active:
        raise YamlProblem(_mark(node), "an alias refers to itself (a recursive structure); a spec cannot contain one")
    if id(node) in memo:
        return memo[id(node)]
    if depth > 200:
        raise YamlProblem(_mark(node), "YAML nested more than 200 levels deep")
    active.add(id(node))
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo, active, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(
            _expanded_size(k, memo, active, depth + 1) + _expanded_size(v, memo, active, depth + 1) for k, v in node.value
        )
    active.discard(id(node))
    memo[id(node)] = total
    if total > MAX_EXPANDED_NODES:
        raise YamlProblem(
            _mark(node), f"YAML expands to more than {MAX_EXPANDED_NODES} nodes (an alias bomb?); simplify the file"
        )
    return total


def load_yaml(path: Path) -> Any:
    """Parse one YAML document. Raises YamlProblem for anything wrong, OSError for unreadable files."""
    with path.open("rb") as stream:
        data = stream.read(MAX_SPEC_BYTES + 1)
    if len(data) > MAX_SPEC_BYTES:
        raise YamlProblem("", f"file is larger than {MAX_SPEC_BYTES // 1024} KiB; a spec is a small text file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlProblem(
            f"{line}:{column}", f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save the file as UTF-8"
        ) from None
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            if node is None or (isinstance(node, yaml.ScalarNode) and node.value == "" and node.tag.endswith(":null")):
                raise YamlProblem("", "the file is empty; a spec starts with 'spec: 1'")
            _expanded_size(node, {}, set())
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        raise YamlProblem(*_syntax_error(exc)) from None
    except yaml.YAMLError as exc:
        raise YamlProblem("", f"YAML error: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise YamlProblem("", "YAML nested too deeply") from None


def _syntax_error(exc: yaml.MarkedYAMLError) -> tuple[str, str]:
    """(line:column, message) for PyYAML's error, with its context ("while parsing ... started at 4:8") kept."""
    mark = exc.problem_mark or exc.context_mark
    where = f"{mark.line + 1}:{mark.column + 1}" if mark else ""
    if exc.problem == "but found another document":
        return where, "a second YAML document starts here; a spec is one document: remove this '---' and what follows"
    what = " ".join((exc.problem or exc.context or "invalid YAML").split())
    if exc.problem and exc.context:
        context = " ".join(exc.context.split())
        started = exc.context_mark
        if started is not None and started is not mark:
            context += f" started at {started.line + 1}:{started.column + 1}"
        what += f" ({context})"
    return where, f"YAML syntax error: {what}"
