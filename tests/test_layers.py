"""The import rules of STYLE.md §3.2: each module imports only from its own layer or below."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

# The rules are about the sources (the installed package has no .pyx files).
PACKAGE = Path(__file__).resolve().parents[1] / "src" / "alphapulse"

LAYERS: dict[str, int] = {
    "errors": 0,
    "_ring": 1, "_book": 1, "_wire": 1,
    "ring": 2, "book": 2, "events": 2, "wire": 2, "symbols": 2, "eventloop": 2,
    "exchanges": 3, "capture": 3, "replay": 3, "verify": 3,
    "consolidated": 3, "_venue_quote": 3, "arbitrage": 3, "feed": 3,
    "server": 4, "cli": 4, "client": 4, "__init__": 3,
}
SERVER_ONLY = ("starlette", "uvicorn", "prometheus_client", "redis")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py*")):
        if path.suffix not in (".py", ".pyx") or "_data" in path.parts:
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found.append((".".join(parts), path))
    return found


def _top(dotted: str) -> str:
    return dotted.split(".")[0]


def _package_imports(name: str, path: Path) -> set[str]:
    """Top-level alphapulse submodules (``errors``, ``server``...) that ``path`` imports."""
    if path.suffix == ".pyx":
        text = "\n".join(line for line in path.read_text().splitlines()
                         if line.lstrip().startswith(("import ", "from ")) and " cimport " not in line)
        tree = ast.parse(text)
    else:
        tree = ast.parse(path.read_text())
    package_parts = name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - (node.level - 1)]
                full = base + (node.module.split(".") if node.module else [])
                if full:
                    targets.add(full[0])
                else:
                    targets.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("alphapulse."):
                targets.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("alphapulse."):
                    targets.add(alias.name.split(".")[1])
    return targets


def test_every_module_has_a_layer() -> None:
    missing = {_top(name) for name, _ in _modules()} - set(LAYERS)
    assert not missing, f"add these modules to LAYERS in tests/test_layers.py: {sorted(missing)}"


def test_imports_go_down_the_layers() -> None:
    violations = []
    for name, path in _modules():
        own = _top(name)
        for target in _package_imports(name, path):
            if target == own:
                continue
            if LAYERS.get(target, 99) > LAYERS[own]:
                violations.append(f"{name} (layer {LAYERS[own]}) imports {target} "
                                  f"(layer {LAYERS.get(target)})")
            if target in ("server", "cli") and own not in ("server", "cli"):
                violations.append(f"{name} imports {target}: nothing depends on the server or CLI")
    assert not violations, "\n".join(violations)


def test_replay_and_exchanges_are_independent() -> None:
    for name, path in _modules():
        own = _top(name)
        if own in ("replay", "exchanges"):
            other = "exchanges" if own == "replay" else "replay"
            assert other not in _package_imports(name, path), f"{name} imports {other}"


def _fresh_modules(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_alphapulse_loads_no_server_dependency() -> None:
    loaded = _fresh_modules("import alphapulse, alphapulse.feed, alphapulse.exchanges")
    assert not {m for m in loaded if _top(m) in SERVER_ONLY}


def test_cores_do_not_import_asyncio() -> None:
    # Loading the compiled module runs alphapulse/__init__ first, so check the sources.
    for core in ("_ring.pyx", "_book.pyx", "_wire.pyx"):
        for line in (PACKAGE / core).read_text().splitlines():
            words = line.split()
            assert not (words[:1] in (["import"], ["from"]) and "asyncio" in line), f"{core}: {line}"
