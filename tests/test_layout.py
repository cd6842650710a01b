"""The code's shape: no import circles among the packages' modules, and the folders that show the data path.

Every import counts, also those under ``TYPE_CHECKING`` and inside functions: a circle there still means two
modules that cannot be understood (or moved) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("streamer", "pipelines", "models")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The first-party modules ``name`` imports (``from a.b import c`` is ``a.b.c`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{alias.name}" for alias in node.names]
            # ``from pkg import module`` names the module; the package's own __init__ runs for any import of one
            # of its modules, which is Python's order of loading, not a dependency between the two
            targets = names if all(n in known for n in names) else [*names, origin]
        for target in targets:
            # the longest known module that the target names (a.b.c -> a.b.c, or a.b for a name inside a.b)
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_of_every_kind() -> None:
    graph = import_graph()
    assert "pipelines.stages.batcher" in graph["pipelines.analyzer"]  # a plain import
    assert "streamer.hwaccel" in graph["streamer.options"]  # a relative one (from . import hwaccel)
    assert "pipelines.analyzer" in graph["pipelines.cli.main"]  # one inside a function
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    assert circles(import_graph()) == []


def test_outputs_do_not_import_the_analyzer() -> None:
    """Outputs read the analyzer through pipelines.outputs.observers.AnalyzerView: adding one never reaches into
    the analyzer's internals."""
    graph = import_graph()
    for name, targets in graph.items():
        if name.startswith("pipelines.outputs"):
            assert "pipelines.analyzer" not in targets, name


def test_the_folders_show_the_data_path() -> None:
    pipelines = ROOT / "pipelines"
    for folder in ("stages", "outputs", "cli", "bench", "cluster", "learn"):
        assert (pipelines / folder / "__init__.py").is_file(), folder
    flat = sorted(p.name for p in pipelines.glob("*.py"))
    assert len(flat) <= 6, flat  # the assembly, the configuration and the schema: the rest lives in folders
