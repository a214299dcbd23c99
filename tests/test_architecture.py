"""The package's shape (docs/architecture.md): no import cycle inside ``evobs/``, and
the call record knows no signal."""

from __future__ import annotations

import ast
from pathlib import Path

import evobs

PACKAGE = Path(evobs.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """evobs modules this one imports at run time: at module level or inside a function
    (a deferred import still runs), not under ``if TYPE_CHECKING:``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in modules else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return {m for m in found if m in modules and m != name}


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _imports(p, modules) for p in paths}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_inside_the_package() -> None:
    """Every module can be understood (and changed) without the ones that import it:
    the run-time import graph of ``evobs/`` has no cycle."""
    graph = _graph()
    assert graph.get("evobs._handlers"), "the walk found nothing"
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    """The check above can fail: a two-module cycle and a three-module cycle are found."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": set()}
    assert _cycles(graph) == [["a", "b"], ["c", "d", "e"]]


def test_the_call_record_knows_no_signal() -> None:
    """``evobs._call`` imports no signal and nothing of OpenTelemetry at run time: signals
    read the record, never the other way round."""
    graph = _graph()
    assert not {m for m in graph["evobs._call"] if m.startswith("evobs.signals")}
    source = (PACKAGE / "_call.py").read_text()
    tree = ast.parse(source)
    runtime = [
        n
        for n in tree.body
        if isinstance(n, ast.Import | ast.ImportFrom)
        and any(
            (getattr(n, "module", None) or "").startswith("opentelemetry")
            or any(a.name.startswith("opentelemetry") for a in n.names)
            for _ in [0]
        )
    ]
    assert runtime == []
