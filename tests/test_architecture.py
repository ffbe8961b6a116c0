"""The shape of the code: no import cycle between our modules, small modules, short functions.

Read from the source with ``ast`` (nothing is imported), so the checks cost milliseconds. Imports inside functions
count too: a cycle hidden in a function is still two modules that cannot be understood one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "optim", "models", "data")
MAX_MODULE_LINES = 330
MAX_FUNCTION_LINES = 60
# Functions that are long because they are one flat list of options or one straight sequence, said where they stand.
LONG_ON_PURPOSE = {"build_parser", "pytest_addoption"}


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that ``name`` imports (``from a.b import c`` counts a.b.c when that is a module, else a.b)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _is_package_root(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def test_no_import_cycle_between_modules():
    modules = _modules()
    known = set(modules)
    graph = {
        name: {t for t in _imports(path, name, known) if not _is_package_root(t, modules)}
        for name, path in modules.items()
        if not _is_package_root(name, modules)
    }
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_are_small_and_functions_short():
    too_long_modules = []
    too_long_functions = []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long_modules.append(f"{name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES and node.name not in LONG_ON_PURPOSE:
                    too_long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not too_long_modules, "modules over the limit:\n" + "\n".join(too_long_modules)
    assert not too_long_functions, "functions over the limit:\n" + "\n".join(too_long_functions)
