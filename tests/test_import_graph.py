"""The package's import graph: no circle between modules, and no lower floor importing a higher one.

Read from the source with ``ast`` (every import, also those inside functions), so a circle hidden behind a lazy
import counts too.
"""

import ast
import os
from typing import Dict, List, Set

import det_dcn

ROOT = os.path.dirname(det_dcn.__file__)

# Floors, bottom up. A package may import only packages of lower floors; those of floor 0 import no other det_dcn
# package (det_dcn.layers: only torch / torchvision, usable as a standalone plugin). modeling sits above data as in
# detectron2 (it may share data's transforms, e.g. the resize rule); tools-only packages are on the top floor.
FLOORS = [
    {"utils", "layers", "config"},
    {"data", "solver", "checkpoint", "testing"},
    {"modeling"},
    {"evaluation"},
    {"engine"},
    {"vis", "deploy"},
    {"analysis"},  # receptive fields, gridding, offset statistics: reads models (modeling), records and draws (vis)
]
FLOOR = {pkg: i for i, pkgs in enumerate(FLOORS) for pkg in pkgs}


def _modules() -> Dict[str, str]:
    """{dotted module name: file} for every module of det_dcn (a package is its __init__.py)."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def import_graph() -> Dict[str, Set[str]]:
    """{module: det_dcn modules it imports}; ``from P import x`` counts as importing P.x when that is a module."""
    modules = _modules()
    graph: Dict[str, Set[str]] = {}
    for name, path in modules.items():
        package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(open(path).read(), path)):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]
                targets.update(subs if len(subs) == len(node.names) else subs + [base])
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def _floor(module: str):
    parts = module.split(".")
    return FLOOR.get(parts[1]) if len(parts) > 1 else None


def test_known_packages_have_a_floor():
    packages = {m.split(".")[1] for m in import_graph() if m.count(".") >= 1}
    assert packages <= set(FLOOR), f"give these det_dcn packages a floor in FLOORS: {sorted(packages - set(FLOOR))}"


def test_no_lower_floor_imports_a_higher_one():
    bad = []
    for src, targets in import_graph().items():
        for dst in targets:
            fs, fd = _floor(src), _floor(dst)
            if fs is None or fd is None or src.split(".")[1] == dst.split(".")[1]:
                continue  # det_dcn/__init__.py (version check) and imports within a package
            if fd >= fs:
                bad.append(f"{src} (floor {fs}) imports {dst} (floor {fd})")
    assert not bad, "\n".join(bad)


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import circle as [a, b, ..., a], or [] (iterative DFS with colours)."""
    colour, parent = {}, {}
    for start in sorted(graph):
        if start in colour:
            continue
        stack = [(start, iter(sorted(graph[start])))]
        colour[start] = "grey"
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = "black"
                stack.pop()
            elif colour.get(child) == "grey":
                cycle = [child, node]
                while cycle[-1] != child:
                    cycle.append(parent[cycle[-1]])
                return cycle[::-1]
            elif child not in colour:
                colour[child], parent[child] = "grey", node
                stack.append((child, iter(sorted(graph.get(child, ())))))
    return []


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import circle: " + " -> ".join(cycle)
