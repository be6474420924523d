"""The layout's rules, stated so that a change cannot quietly undo them.

- The core (`consent_lifecycle`) imports nothing from Prefect, flows or tasks.
- No import cycle between packages: each top-level package, and each first-level module or subpackage of
  the core (`consent_lifecycle.ledger`, `consent_lifecycle.db`, ...), is one node.
- `consent_lifecycle.db` is infrastructure at the bottom: it imports no feature of the core.
- The Codat sandbox (`codat_sandbox`) stands in for Codat and is tested from outside: it imports nothing
  from the core, the flows or the tasks.
- No private name (`_x`) is imported from another module: what is shared is public where it lives.
- No module is longer than MAX_LINES, migrations aside.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("consent_lifecycle", "codat_sandbox", "flows", "tasks", "deployments")
#: what the core's infrastructure may import: the bottom layer, beside it
DB_MAY_IMPORT = {"consent_lifecycle.db", "consent_lifecycle.batching", "consent_lifecycle.clock",
                 "consent_lifecycle.datatypes", "consent_lifecycle.settings"}
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """Every module of the project's packages by dotted name (migrations aside)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


@cache
def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(module imported, names imported from it, line) for each import of the project's own packages in
    `path`, at any depth (a lazy import inside a function is a dependency too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names], node.lineno))
    return [(module, names, line) for module, names, line in found if module.split(".")[0] in PACKAGES]


def node(module: str) -> str:
    """The module's node in the package graph."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "consent_lifecycle" and len(parts) > 1 else parts[0]


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules().items():
        for imported, _, _ in imports(path):
            if node(imported) != node(name):
                graph[node(name)].add(node(imported))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_packages():
    assert cycles(package_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_db_imports_no_feature():
    wrong = [
        f"{name} imports {imported} (line {line})"
        for name, path in modules().items() if node(name) == "consent_lifecycle.db"
        for imported, _, line in imports(path) if node(imported) not in DB_MAY_IMPORT
    ]
    assert wrong == []


def test_the_sandbox_imports_nothing_of_ours():
    wrong = [
        f"{name} imports {imported} (line {line})"
        for name, path in modules().items() if node(name) == "codat_sandbox"
        for imported, _, line in imports(path) if node(imported) != "codat_sandbox"
    ]
    assert wrong == []


def test_no_private_name_is_imported_from_another_module():
    wrong = [
        f"{name} imports {private} from {imported} (line {line})"
        for name, path in modules().items()
        for imported, names, line in imports(path)
        for private in names if private.startswith("_") and imported != name
    ]
    assert wrong == []


def test_no_module_is_longer_than_max_lines():
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_core_package_imports_nothing_from_prefect():
    script = (
        "import importlib, pkgutil, sys, consent_lifecycle\n"
        "for m in pkgutil.walk_packages(consent_lifecycle.__path__, 'consent_lifecycle.'):\n"
        "    if not m.name.startswith('consent_lifecycle.migrations'):\n"
        "        importlib.import_module(m.name)\n"
        "loaded = sorted(n for n in sys.modules if n == 'prefect' or n.startswith(('prefect.', 'flows', 'tasks')))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prefect_yaml_entrypoints_import_and_parameters_exist():
    import importlib
    import inspect

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["deployments"], "prefect.yaml declares no deployment"
    for deployment in spec["deployments"]:
        path, _, name = deployment["entrypoint"].partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, name)
        accepted = set(inspect.signature(flow.fn).parameters)
        given = set(deployment.get("parameters") or {})
        for schedule in deployment.get("schedules") or []:
            given |= set(schedule.get("parameters") or {})
        assert given <= accepted, f"{deployment['name']}: unknown parameters {given - accepted}"
