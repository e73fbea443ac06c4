"""The package's layers, read from its imports: no cycle, no upward import, I/O only where it belongs."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "gusher"

# Lower layers never import higher ones; folders of one rank never import each other.
RANKS = {
    "errors": 0,
    "config": 1,
    "keys": 1,
    "embedded": 1,
    "pages": 1,
    "core": 2,
    "wire": 3,
    "broker": 4,
    "ops": 5,
    "edge": 6,
    "api": 6,
    "limits": 7,
    "manage": 7,
    "app": 8,
    "cli": 8,
    "worker": 8,
}
IO_LIBRARIES = {
    "flask",
    "flask_sock",
    "gevent",
    "redis",
    "requests",
    "simple_websocket",
    "socket",
    "werkzeug",
}


def modules() -> dict[str, set[str]]:
    """Every module of the package → the modules it imports (package-internal ones by name, others by top)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                # `from gusher.core import signing` imports the module gusher.core.signing
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = imported
    return {
        name: {i for i in imports if i in graph or not i.startswith("gusher")}
        for name, imports in graph.items()
    }


def component(module: str) -> str:
    """The top folder or module under `gusher` (`gusher.edge.hub` → `edge`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_there_is_no_import_cycle() -> None:
    """Depth-first search over the package's own imports finds no way back to where it started."""
    graph = {name: {i for i in imports if i.startswith("gusher.")} for name, imports in modules().items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(graph.get(name, ())):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_no_layer_imports_one_above_it() -> None:
    """errors < config, keys < core < wire < broker < ops < edge, api < limits < app, cli, worker."""
    wrong = []
    for name, imports in modules().items():
        mine = component(name)
        for imported in imports:
            theirs = component(imported)
            if not imported.startswith("gusher.") or theirs == mine or not mine:
                continue
            if RANKS[theirs] >= RANKS[mine]:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_io_stays_out_of_core_and_wire_and_redis_inside_broker() -> None:
    """The pure layers import no I/O library; redis-py is imported by broker/ alone."""
    wrong = []
    for name, imports in modules().items():
        tops = {i.split(".")[0] for i in imports}
        if component(name) in ("core", "wire") and tops & IO_LIBRARIES:
            wrong.append(f"{name} imports {sorted(tops & IO_LIBRARIES)}")
        if component(name) != "broker" and "redis" in tops:
            wrong.append(f"{name} imports redis")
    assert wrong == []


def test_the_check_sees_the_package() -> None:
    """The graph is the real one: the hub imports the broker's interface and nothing of redis."""
    graph = modules()
    assert "gusher.broker.base" in graph["gusher.edge.hub"]
    assert not any(i.startswith("gusher.broker.standalone") for i in graph["gusher.edge.hub"])
    assert len(graph) > 40
