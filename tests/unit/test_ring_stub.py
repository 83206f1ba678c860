"""The hand-written stub of alphapulse._ring names exactly what the compiled module offers."""
from __future__ import annotations

import ast
from pathlib import Path

import alphapulse._ring as core

STUB = Path(core.__file__).with_name("_ring.pyi")


def _public(names) -> set[str]:
    return {n for n in names if not n.startswith("_") or n in {"__iter__", "__next__", "__enter__", "__exit__"}}


def test_stub_matches_module() -> None:
    tree = ast.parse(STUB.read_text())
    module_names: set[str] = set()
    classes: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = set()
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members.add(item.name)
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    members.add(item.target.id)
            classes[node.name] = _public(members) - {"__init__"}
            module_names.add(node.name)
        elif isinstance(node, ast.FunctionDef):
            module_names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            module_names.add(node.target.id)
    runtime = {n for n, v in vars(core).items() if not n.startswith("_")
               and getattr(v, "__module__", core.__name__) == core.__name__}
    assert module_names == runtime
    for name, members in classes.items():
        cls = getattr(core, name)
        actual = _public(n for n in dir(cls) if n not in dir(object)) - {"__pyx_vtable__"}
        assert members == actual, name
