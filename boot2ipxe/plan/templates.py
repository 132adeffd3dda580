"""Rendering a spec's templates and inline content with Jinja2, in a sandbox, confined to the spec's tree.

``{% include %}`` and ``{% import %}`` look beside the template first, then beside the spec. Every file read
resolves (after symlinks) inside the spec's directory tree or a directory allowed on the command line, is a
regular file and at most :data:`MAX_TEMPLATE_BYTES` long (``files.confined``, ``files.read_bounded``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from boot2ipxe.errors import InputError
from boot2ipxe.files import confined, read_bounded
from boot2ipxe.spec.load import Collector
from boot2ipxe.spec.model import Spec
from boot2ipxe.units import SECTOR

MAX_TEMPLATE_BYTES = 1024 * 1024
RESERVED_TEMPLATE_NAMES = ("platform", "partitions", "disk")
OUTSIDE_HINT = "templates and includes must be inside it (or under a directory given with --allow-dir)"


class TemplateRefused(jinja2.TemplateError):
    """A template or include names a file outside the spec's tree, or one that is not a small text file."""


class ConfinedLoader(jinja2.BaseLoader):
    """Looks a template name up in ``search`` (in order), reading only files inside ``roots``."""

    def __init__(self, search: Sequence[Path], roots: Sequence[Path]) -> None:
        self.search = search
        self.roots = roots

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        pieces = jinja2.loaders.split_template_path(template)  # refuses '..'
        for directory in self.search:
            candidate = directory.joinpath(*pieces)
            if not candidate.exists():
                continue
            try:
                path = confined(str(candidate), directory, self.roots)
            except ValueError:
                raise jinja2.TemplateNotFound(template) from None
            if path is None:
                raise TemplateRefused(f"'{template}' is outside the spec's directory tree: {OUTSIDE_HINT}")
            try:
                text = read_bounded(path, MAX_TEMPLATE_BYTES, template).decode("utf-8")
            except InputError as exc:
                raise TemplateRefused(str(exc)) from None
            except UnicodeError as exc:
                raise TemplateRefused(f"cannot read {template}: {exc} (templates are UTF-8 text files)") from None
            return text, str(path), lambda: False
        raise jinja2.TemplateNotFound(template)


def _environment(search: Sequence[Path], roots: Sequence[Path]) -> jinja2.Environment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=ConfinedLoader(search, roots),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(
    out: Collector, where: str, spec: Spec, text: str | None, template: Path | None, context: dict[str, Any]
) -> bytes | None:
    """Inline ``text`` or the ``template`` file rendered with ``context``; None (and a problem) when it fails."""
    base = spec.path.resolve().parent
    shown = "the inline content"
    try:
        if template is not None:
            shown = template.relative_to(base).as_posix() if template.is_relative_to(base) else template.name
            compiled = _environment([template.parent, base], spec.roots).get_template(template.name)
        else:
            compiled = _environment([base], spec.roots).from_string(text or "")
        return compiled.render(context).encode("utf-8")
    except jinja2.UndefinedError as exc:
        out.error(where, f"template error: {exc.message}; define it under vars (or fix the name)")
    except jinja2.TemplateSyntaxError as exc:
        place = f"in {shown} line {exc.lineno}"
        if template is not None and exc.name not in (None, template.name):
            place = f"in {exc.name} line {exc.lineno} (included by {shown})"
        out.error(where, f"template syntax error {place}: {' '.join(exc.message.split()) if exc.message else 'invalid'}")
    except jinja2.TemplateNotFound as exc:
        out.error(where, f"template not found: {exc.name} (looked beside {shown} and beside the spec)")
    except TemplateRefused as exc:
        out.error(where, exc.message or "template refused")
    except jinja2.TemplateError as exc:
        out.error(where, f"template error in {shown}: {' '.join(str(exc).split())}")
    except Exception as exc:  # templates are user code: {{ 1 / 0 }}, {{ "a" + 1 }}, runaway recursion...
        out.error(where, f"template error in {shown}: {type(exc).__name__}: {' '.join(str(exc).split())}")
    return None


def template_context(out: Collector, spec: Spec, extents: Sequence[tuple[int, int]], total: int) -> dict[str, Any]:
    """What templates see (docs/spec.md, "Templates"): ``vars``, ``platform``, ``partitions`` and ``disk``;
    ``extents`` are each partition's (start, end) sectors, ``total`` the disk's sectors."""
    for name in RESERVED_TEMPLATE_NAMES:
        if name in spec.vars:
            out.error(f"vars.{name}", f"'{name}' is reserved for templates; choose another name")
    partitions = {
        p.name: {
            "index": p.index,
            "name": p.name,
            "label": p.label,
            "filesystem": p.filesystem,
            "start": start * SECTOR,
            "size": (end - start) * SECTOR,
        }
        for p, (start, end) in zip(spec.partitions, extents, strict=True)
    }
    return {
        **spec.vars,
        "platform": {"name": spec.name, "arch": spec.arch, "description": spec.description, "chain": list(spec.chain)},
        "partitions": partitions,
        "disk": {"table": spec.disk.table, "id": spec.disk.id, "size": total * SECTOR},
    }
