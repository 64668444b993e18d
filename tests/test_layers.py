"""The import layers: data walks one way, and no package or file imports itself back through another.

Layers, top to bottom; a module may import its own layer or a lower one, never a higher one:

    cli, deployments > flows > tasks > stages > models > problems > verifiers > reflectevo (the contract)

Every import counts, the ones inside functions too (a lazy import is still a dependency). Lazy "module:Class"
registry strings (models/engines) are not imports and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = (("cli", "deployments"), ("flows",), ("tasks",), ("stages",), ("models",), ("problems",), ("verifiers",),
          ("reflectevo",))
RANK = {package: rank for rank, layer in enumerate(LAYERS) for package in layer}  # 0 is the top


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {module_name(p): p for package in RANK for p in sorted((ROOT / package).rglob("*.py"))}


def resolve(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of our modules (None for other libraries)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in FILES:
            return ".".join(parts[:end])
    return None


def imports_of(module: str) -> set[str]:
    path = FILES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from problems import formats` imports the module problems.formats, not only the package
            found |= {resolve(f"{base}.{alias.name}") or resolve(base) for alias in node.names}
    return {m for m in found if m and m != module}


GRAPH = {module: imports_of(module) for module in FILES}


def top(module: str) -> str:
    return module.split(".")[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_every_package_of_the_project_has_a_layer():
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert on_disk - {"tests", "bench"} == set(RANK)


@pytest.mark.parametrize("module", sorted(FILES))
def test_module_imports_only_its_layer_or_below(module):
    upward = sorted(m for m in GRAPH[module] if RANK[top(m)] < RANK[top(module)])
    assert not upward, f"{module} (layer {top(module)}) imports a higher layer: {', '.join(upward)}"


def test_the_contract_imports_nothing_else_of_ours():
    outside = {m: sorted(d for d in deps if top(d) != "reflectevo") for m, deps in GRAPH.items() if top(m) == "reflectevo"}
    assert not any(outside.values()), {m: deps for m, deps in outside.items() if deps}


def test_no_cycle_between_packages():
    packages = {p: {top(d) for m, deps in GRAPH.items() if top(m) == p for d in deps} - {p} for p in RANK}
    assert find_cycle(packages) is None, " -> ".join(find_cycle(packages))


def test_no_cycle_between_files():
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_check_sees_a_cycle_and_an_import_inside_a_function():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert "flows.evolve" in GRAPH["cli.app"]  # imported inside `evolve`, not at the top of the file
