"""The one-way architecture of docs/architecture.md, checked: a module imports (at the top or inside a function)
only khnet modules listed before it, and no module imports another's private (underscore) names."""

from __future__ import annotations

import ast
from pathlib import Path

import khnet

# the order of docs/architecture.md, from the bottom of the stack up
ORDER = [
    "errors", "config", "files", "card", "space", "benchmark", "metrics", "batchnorm", "ops", "network",
    "stacked", "cost", "data", "hypernet", "supernet", "runtime", "zoo", "checkpoint", "distributed", "samplers",
    "optim", "train", "results", "evaluate", "scratch", "plots", "export", "search", "hub", "cli",
]  # fmt: skip
PACKAGE = Path(khnet.__file__).parent


def _module(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(khnet module imported, names imported from it, line) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "khnet":
            parts = node.module.split(".")
            found.append((parts[1] if len(parts) > 1 else "", [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "khnet" and len(parts) > 1:
                    found.append((parts[1], [], node.lineno))
    return found


def test_every_module_is_placed_in_the_layering():
    modules = {_module(p) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__", "_data"}
    assert modules <= set(ORDER), f"add to ORDER (and docs/architecture.md): {sorted(modules - set(ORDER))}"


def test_imports_point_one_way_and_never_at_private_names():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _module(path)
        if here in ("__init__", "__main__"):
            continue
        for target, names, line in _imports(path):
            if target in ("", here) or target == "_data":
                continue  # the package root (__version__) and the module's own package (cli.*)
            if ORDER.index(target) > ORDER.index(here):
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports khnet.{target}, which is above it")
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports private {private} from khnet.{target}")
    assert not problems, "\n".join(problems)
