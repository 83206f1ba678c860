"""The ``_book.pyi`` stub and the compiled module agree on every public name.

A small stand-in for mypy's stubtest: parse the stub, compare module-level names and each
class's public members with what ``alphapulse._book`` really exposes, and check that every
public callable has a docstring.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import alphapulse._book as core

STUB = Path(core.__file__).with_name("_book.pyi")


def _stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def _public(names: set[str]) -> set[str]:
    return {n for n in names if not n.startswith("_")}


def test_module_names_match() -> None:
    tree = _stub_tree()
    stub_names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            stub_names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub_names.add(node.target.id)
    aliases = {"Text", "SideLike", "Change", "Level", "I64", "F64"}
    runtime = _public({n for n in dir(core) if not inspect.ismodule(getattr(core, n))})
    runtime -= {"BookError", "SequenceError"}            # imported from errors
    assert _public(stub_names) - aliases == runtime


def test_class_members_match() -> None:
    for node in _stub_tree().body:
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(core, node.name)
        stub_members = set()
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                stub_members.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                stub_members.add(item.target.id)
        runtime = _public(set(dir(cls)))
        assert _public(stub_members) == runtime, node.name


def _prose(doc: str | None) -> str:
    """The docstring without the signature line Cython's embedsignature puts first."""
    lines = (doc or "").strip().splitlines()
    if lines and "(" in lines[0] and lines[0].rstrip().endswith(")") and ". " not in lines[0]:
        lines = lines[1:]
    return "\n".join(lines).strip()


def test_public_api_has_docstrings() -> None:
    for name in ("OrderBook", "Delta", "diff", "parse_decimal", "format_decimal"):
        obj = getattr(core, name)
        assert _prose(obj.__doc__), name
        if inspect.isclass(obj):
            for member in _public(set(vars(obj))):
                attr = getattr(obj, member)
                if callable(attr) or isinstance(attr, property):
                    assert _prose(attr.__doc__), f"{name}.{member}"
