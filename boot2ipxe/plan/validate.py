"""Validation: the spec stage and the plan stage together, reporting every problem found."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from boot2ipxe.errors import Problem, SpecInvalid
from boot2ipxe.plan.layout import Plan, make_plan
from boot2ipxe.spec.load import load_spec
from boot2ipxe.spec.mirrors import Mirrors
from boot2ipxe.spec.model import Spec


@dataclass(frozen=True)
class Validated:
    spec: Spec | None
    plan: Plan | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def validate(
    path: Path,
    mirrors: Mirrors | None = None,
    sizes: Mapping[str, int] | None = None,
    display: str | None = None,
    allowed: Sequence[Path] = (),
) -> Validated:
    spec, problems = load_spec(path, mirrors, display, allowed)
    plan = None
    if spec is not None:
        plan, plan_problems = make_plan(spec, sizes)
        problems += _not_consequences(plan_problems, problems)
    return Validated(spec, plan if not any(p.severity == "error" for p in problems) else None, tuple(problems))


def _not_consequences(later: list[Problem], earlier: list[Problem]) -> list[Problem]:
    """``later`` without problems at or under a key path that already has an error (the planner works on
    placeholder values where the spec stage failed, so those would only repeat the first problem)."""
    failed = [p.path for p in earlier if p.severity == "error" and p.path]
    return [p for p in later if not any(p.path == f or p.path.startswith((f + ".", f + "[")) for f in failed)]


def require_valid(
    path: Path,
    mirrors: Mirrors | None = None,
    sizes: Mapping[str, int] | None = None,
    display: str | None = None,
    allowed: Sequence[Path] = (),
) -> Validated:
    result = validate(path, mirrors, sizes, display, allowed)
    if result.errors or result.plan is None:
        raise SpecInvalid(result.errors)
    return result
