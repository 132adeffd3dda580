"""The package's layout is its pipeline: a stage imports only earlier stages and the shared modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "boot2ipxe"
# docs/ARCHITECTURE.md draws this order; the shared modules come before every stage.
ORDER = ["spec", "plan", "fetch", "inspect", "build", "pki", "inject", "server", "cli"]
SHARED = {"errors", "units", "files", "tools", "progress", "formats", "__main__", "__init__"}


def rank(module: str) -> int:
    """-1 for the shared modules, else the stage's place in ORDER."""
    part = module.split(".")[1] if module.count(".") else "__init__"
    return -1 if part in SHARED else ORDER.index(part)


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("boot2ipxe"):
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names if node.module == "boot2ipxe"}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("boot2ipxe")}
    return {name for name in found if name != "boot2ipxe.__version__"}


def test_every_module_belongs_to_a_stage_or_is_shared() -> None:
    for path in PACKAGE.rglob("*.py"):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert top in SHARED or top in ORDER, f"{path}: add it to a stage (docs/ARCHITECTURE.md)"


def test_no_stage_imports_a_later_one() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("boot2ipxe", *path.relative_to(PACKAGE).with_suffix("").parts))
        for imported in imports(path):
            if rank(imported) > rank(module) and not (rank(module) == -1 and module == "boot2ipxe.__main__"):
                wrong.append(f"{module} imports {imported}")
    assert wrong == []
