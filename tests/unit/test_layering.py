"""The library's layering, checked on its source: SQL text lives only in graphmesh/store/,
no two parts of graphmesh/ (its packages and top-level modules) import each other, even
through others, and graphmesh/ never imports the example graphs or the services."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import graphmesh

ROOT = Path(graphmesh.__file__).resolve().parent
GENERATED = {"v1"}  # protobuf modules
# Server set-up, not data access: `graphmesh up` creating its database in the embedded Postgres.
SQL_ALLOWED = {"embedded/postgres.py"}
SQL = re.compile(r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+(\s+\w+)?\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\(|"
                 r"SET\s+(LOCAL|TRANSACTION|SESSION)\s|CREATE\s+(TABLE|INDEX|DATABASE|ROLE|FUNCTION)\s|ALTER\s+TABLE\s|"
                 r"DROP\s+(TABLE|INDEX)\s|TRUNCATE\s)")


def _sources() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.split("/")[0] in GENERATED:
            continue
        out.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))
    return out


def _sql_literals(tree: ast.Module) -> list[tuple[int, str]]:
    """String literals (f-string parts too) that begin an SQL statement."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and SQL.match(node.value):
            found.append((node.lineno, node.value.strip().splitlines()[0]))
    return found


def test_sql_text_lives_only_in_the_store():
    sources = _sources()
    outside = [f"graphmesh/{rel}:{line}: {text}" for rel, tree in sources
               if not rel.startswith("store/") and rel not in SQL_ALLOWED
               for line, text in _sql_literals(tree)]
    assert not outside, "SQL outside graphmesh/store/ (move it to a store module):\n" + "\n".join(outside)
    # The detector does see SQL where it is (the one audit insert, an f-string built statement).
    in_store = {rel: _sql_literals(tree) for rel, tree in sources if rel.startswith("store/")}
    assert any("INSERT INTO gm_audit" in text for _, text in in_store["store/audit.py"])
    assert in_store["store/gauges.py"] and in_store["store/retention.py"]


def test_one_audit_insert():
    inserts = [f"graphmesh/{rel}" for rel, tree in _sources() for _, text in _sql_literals(tree)
               if re.match(r"INSERT\s+INTO\s+gm_audit\b", text)]
    assert inserts == ["graphmesh/store/audit.py"]


def _unit(rel: str) -> str:
    """The part of graphmesh a file belongs to: its package, or itself as a top-level module."""
    first = rel.split("/")[0]
    return first.removesuffix(".py")


def _imports(rel: str, tree: ast.Module) -> list[str]:
    """Absolute names of the modules a file imports (anywhere in it, lazily too)."""
    package = ["graphmesh", *rel.removesuffix(".py").split("/")][:-1]
    if rel.endswith("__init__.py"):
        package = ["graphmesh", *rel.split("/")[:-1]]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            names.append(base)
            # `from graphmesh import pollers` imports the module graphmesh.pollers
            names += [f"{base}.{a.name}" for a in node.names if base == "graphmesh"]
    return names


def _graph() -> dict[str, set[str]]:
    units = {_unit(rel) for rel, _ in _sources()} - {"__init__", "__main__"}
    graph: dict[str, set[str]] = {u: set() for u in units}
    for rel, tree in _sources():
        src = _unit(rel)
        for name in _imports(rel, tree):
            parts = name.split(".")
            if parts[0] == "graphmesh" and len(parts) > 1 and parts[1] in units and parts[1] != src \
                    and src in graph:
                graph[src].add(parts[1])
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
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


def test_cycle_finder_finds_a_loop_through_a_third_part():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_loops_between_parts_of_graphmesh():
    graph = _graph()
    # The scan sees the real imports (a scan that found none would pass vacuously).
    assert "auth" in graph["rpc"] and {"bus", "store"} <= graph["pollers"]
    loops = _cycles(graph)
    detail = "\n".join(" <-> ".join(c) + ": " + "; ".join(f"{a} imports {sorted(graph[a] & set(c))}" for a in c)
                       for c in loops)
    assert not loops, "import loops in graphmesh/:\n" + detail


def test_graphmesh_never_imports_graphs_or_services():
    bad = [f"graphmesh/{rel}: {name}" for rel, tree in _sources() for name in _imports(rel, tree)
           if name.split(".")[0] in ("graphs", "services")]
    assert not bad, "\n".join(bad)


def test_auth_is_free_of_grpc_and_the_rpc_layer():
    bad = [f"graphmesh/{rel}: {name}" for rel, tree in _sources() if rel.startswith("auth/")
           for name in _imports(rel, tree) if name.split(".")[0] == "grpc" or name.startswith("graphmesh.rpc")]
    assert not bad, "\n".join(bad)
