"""No import cycle anywhere in ``humans.*``, and every module imports.

The graph is built statically with ``ast`` from the source tree: one node per module of the five
packages (``shared``, ``curation``, ``pretrain``, ``heads``, ``tools``, installed as ``humans.<folder>``),
one edge per import of another of them, wherever the import stands (module level or inside a
function: an import deferred into a function body hides a cycle, it does not remove it); imports
under ``if TYPE_CHECKING:`` are left out (they never run). ``from P import name`` counts as an import
of the module ``P.name`` when that is a module, else of ``P``. A cycle is a strongly connected
component of more than one module (or a module importing itself).

Then every module is imported in one fresh interpreter; a module that needs an optional extra that
is not installed (an ImportError naming a package outside ``humans``) is skipped and named.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("shared", "curation", "pretrain", "heads", "tools")  # setup.py's UNDER_HUMANS


def module_files() -> dict[str, Path]:
    """``humans.<folder>.<...>`` -> source file, for every .py file of the five packages."""
    out: dict[str, Path] = {}
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            parts = list(rel.parts)
            if any(not (REPO.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
                continue  # not inside a package (e.g. a data folder's helper script)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(["humans", *parts])] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Import nodes of ``tree`` outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _absolute(name: str) -> str:
    """Old top-level spellings (``shared.x``) are the same modules as ``humans.shared.x``."""
    return f"humans.{name}" if name.split(".")[0] in FOLDERS else name


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        package = mod if is_pkg else mod.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [_absolute(a.name) for a in node.names]
            else:
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = _absolute(node.module or "")
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in files else src for a in node.names]
            for t in targets:
                while t and t not in files and t.startswith("humans."):
                    t = t.rpartition(".")[0]  # import a.b.c of a name inside module a.b
                if t in files and t != "humans":
                    graph[mod].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with a cycle (Tarjan), each sorted; sorted by first member."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def _path_in(comp: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle inside component ``comp`` (for the error message)."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return comp


def test_the_cycle_finder_finds_a_cycle_and_only_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}, "f": set()}
    assert cycles(g) == [["a", "b", "c"], ["e"]]
    assert _path_in(["a", "b", "c"], g) == ["a", "b", "c", "a"]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_deferred_relative_and_from_imports(tmp_path):
    files = module_files()
    graph = import_graph(files)
    # a module-level absolute import, a relative import and a "from package import module"
    assert "humans.heads.tasks" in graph["humans.heads.data.dataset"]
    assert "humans.shared.backbone.config" in graph["humans.shared.backbone.model"]      # from .config import
    assert "humans.heads.data.transforms" in graph["humans.heads.tasks.base"]            # from P import module
    # an import inside a function body counts (heads.cli imports its commands lazily)
    assert "humans.heads.train" in graph["humans.heads.cli"]
    # TYPE_CHECKING imports do not
    assert "humans.heads.tasks.base" not in graph["humans.heads.tasks"]


def test_no_import_cycles():
    graph = import_graph(module_files())
    found = cycles(graph)
    assert not found, "import cycles (each: one path through the component):\n" + "\n".join(
        " -> ".join(_path_in(c, graph)) + f"   [component: {', '.join(c)}]" for c in found)


_IMPORT_ALL = r"""
import importlib, json, sys, traceback
mods = json.loads(sys.argv[1])
skipped, failed = {}, {}
for m in mods:
    try:
        importlib.import_module(m)
    except ImportError as exc:
        name = getattr(exc, "name", None) or ""
        if name and not name.startswith("humans") and name.split(".")[0] not in ("shared", "curation", "pretrain", "heads", "tools"):
            skipped[m] = f"{type(exc).__name__}: {exc}"
        else:
            failed[m] = traceback.format_exc(limit=3)
    except Exception:
        failed[m] = traceback.format_exc(limit=3)
print(json.dumps({"skipped": skipped, "failed": failed}))
"""


def test_every_module_imports():
    mods = sorted(m for m in module_files() if not m.endswith("__main__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "HUMANS_NO_PROGRESS": "1", "MPLBACKEND": "Agg"}
    res = subprocess.run([sys.executable, "-c", _IMPORT_ALL, json.dumps(mods)], capture_output=True, text=True,
                         env=env, cwd=str(REPO), timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert not out["failed"], "modules that do not import:\n" + "\n".join(f"{k}:\n{v}" for k, v in out["failed"].items())
    for m, why in out["skipped"].items():  # optional extras (e.g. mediapipe): named, not failed
        print(f"skipped {m}: {why}")
    assert len(out["skipped"]) < len(mods) // 4, out["skipped"]


if __name__ == "__main__":  # python tests/test_import_cycles.py: print the cycles
    g = import_graph(module_files())
    for c in cycles(g):
        print(" -> ".join(_path_in(c, g)))
    pytest.main([__file__, "-q"])
