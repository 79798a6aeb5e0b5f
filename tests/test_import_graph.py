"""The shape of the imports: no cycle among authstate's modules, and the pure ASGI
middleware (with the one authentication path under it) imports no web framework.

The graph is read from the source with ``ast``, every import counted: top-level,
function-local (often how a cycle hides) and ``TYPE_CHECKING``-only (a type-level cycle
is still two modules that cannot be read, or moved, apart).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import authstate

PACKAGE = Path(authstate.__file__).parent

# Cycles the lead has agreed to clear later, each a sorted tuple of module names with the
# reason it stays. Empty: keep it so.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()


def module_name(path: Path, root: Path = PACKAGE) -> tuple[str, bool]:
    """The dotted name of a source file, and whether it is a package's ``__init__``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """``module -> the authstate modules it imports``, anywhere in its source."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    modules = {name for name, _ in files}
    graph: dict[str, set[str]] = {}
    for (name, is_package), path in files.items():
        package = name if is_package else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    found.add(submodule if submodule in modules else source)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == {("a", "b", "c")}
    assert cycles({"a": {"b"}, "b": set()}) == set()


def test_the_graph_sees_local_relative_and_type_only_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "authstate"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "one.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from authstate.two import X\n"
    )
    (pkg / "two.py").write_text("def f():\n    from authstate import one\n")
    (pkg / "sub" / "three.py").write_text("from . import four\nfrom ..one import y\n")
    (pkg / "sub" / "four.py").write_text("")
    graph = import_graph(pkg)
    assert graph["authstate.one"] == {"authstate.two"}
    assert graph["authstate.two"] == {"authstate.one"}
    assert graph["authstate.sub.three"] == {"authstate.sub.four", "authstate.one"}
    assert cycles(graph) == {("authstate.one", "authstate.two")}


def test_no_import_cycle_in_authstate() -> None:
    graph = import_graph()
    assert "authstate.web.middleware" in graph and "authstate.authn" in graph
    unexpected = cycles(graph) - ALLOWED_CYCLES
    assert not unexpected, f"import cycles: {sorted(unexpected)}"


def test_the_authentication_path_imports_no_web_module() -> None:
    """``authn`` and ``csrf`` are core: they never import ``authstate.web`` or ``cli``."""
    graph = import_graph()
    for core in ("authstate.authn", "authstate.csrf"):
        reach: set[str] = set()
        todo = [core]
        while todo:
            for nxt in graph[todo.pop()] - reach:
                reach.add(nxt)
                todo.append(nxt)
        outside = {m for m in reach if m.split(".")[:2] in (["authstate", "web"], ["authstate", "cli"])}
        assert not outside, (core, outside)


def test_the_middleware_imports_no_web_framework() -> None:
    """In a fresh interpreter: importing the pure ASGI middleware (and so ``authn``)
    loads neither FastAPI nor Starlette."""
    script = (
        "import sys, authstate.web.middleware, authstate.authn\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette'))\n"
        "assert not loaded, loaded\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr


# the edges: the web layer, the CLI, the bench, and the sync adapters (WSGI, Flask, Django),
# which translate their frameworks to the core as ``web`` does for ASGI
EDGES = (
    "authstate.web", "authstate.cli", "authstate.bench",
    "authstate.wsgi", "authstate.flask", "authstate.django",
)


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_core_never_imports_web_or_cli() -> None:
    """Data flows down: no core module imports ``web``, ``cli`` or ``bench``. The package
    ``__init__`` (the public face, re-exporting ``AuthMiddleware`` lazily) is the edge."""
    graph = import_graph()
    upward = {
        (module, imported)
        for module, imports in graph.items()
        if module != "authstate" and not _under(module, EDGES)
        for imported in imports
        if _under(imported, EDGES)
    }
    assert not upward, sorted(upward)


def test_stores_import_only_clock_and_errors() -> None:
    """Stores keep records, they do not decide: outside their own package they use only
    the clock and the error tree (as the README's architecture section says)."""
    graph = import_graph()
    allowed = ("authstate.stores", "authstate.clock", "authstate.errors")
    reached = {
        (module, imported)
        for module, imports in graph.items()
        if _under(module, ("authstate.stores",))
        for imported in imports
        if not _under(imported, allowed)
    }
    assert not reached, sorted(reached)
