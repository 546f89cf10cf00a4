"""Measure the shape of the package: which layer imports which, and the longest functions.

Run: python scripts/house_metrics.py [--top 10]. Used to show a refactor's before/after
(issue 22): the import graph is read from the source (no import is executed), a layer is
the first package under ``clipadapt`` (``engine``, ``data`` ...) or a top-level module.
"""
from __future__ import annotations

import argparse
import ast
from collections import defaultdict
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "clipadapt"


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside clipadapt (``clipadapt.io`` -> ``engine``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute clipadapt modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    own = module_name(path).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("clipadapt"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("clipadapt"):
                found.add(name)
    return found


def layer_graph() -> dict[str, dict[str, int]]:
    """layer -> {imported layer: number of files importing it}."""
    graph: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        source_layer = layer_of(module_name(path))
        for target in {layer_of(m) for m in imported_modules(path)} - {source_layer, "clipadapt"}:
            graph[source_layer][target] += 1
    return graph


def longest_functions(top: int) -> list[tuple[int, str]]:
    """The ``top`` longest function bodies (lines, ``path:qualname``)."""
    lengths = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        stack = [(tree, "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = f"{prefix}{child.name}"
                    if not isinstance(child, ast.ClassDef):
                        where = f"{path.relative_to(PACKAGE_ROOT)}:{name}"
                        lengths.append((child.end_lineno - child.lineno + 1, where))
                    stack.append((child, name + "."))
    return sorted(lengths, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    print("## Import graph (layer -> layers it imports, files importing)")
    for layer, targets in sorted(layer_graph().items()):
        listed = ", ".join(f"{t} ({n})" for t, n in sorted(targets.items()))
        print(f"- {layer} -> {listed}")
    print(f"\n## The {args.top} longest functions")
    for lines, where in longest_functions(args.top):
        print(f"- {lines:4d}  {where}")


if __name__ == "__main__":
    main()
