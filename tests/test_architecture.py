"""The shape of the code: layers, no import cycle between our modules, small modules, short functions, and no
module deciding on another module's recipe step by name.

Read from the source with ``ast`` (nothing is imported), so the checks cost milliseconds. Imports inside functions
count too: a cycle hidden in a function is still two modules that cannot be understood one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "optim", "models", "data")
LAYERS = {"data": 0, "models": 0, "optim": 1, "bench": 2}  # a package imports its own layer or a lower one
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


def test_packages_import_only_their_layer_or_below():
    """models and data at the bottom, optim on them, bench on top: a package root (``import models``) counts."""
    modules = _modules()
    wrong = [
        f"{name} imports {target}"
        for name, path in modules.items()
        for target in sorted(_imports(path, name, set(modules)))
        if LAYERS[target.split(".")[0]] > LAYERS[name.split(".")[0]]
    ]
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_no_import_cycle_between_modules():
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}  # package roots are nodes too
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


# ---------------------------------------------------------------- step names stay in their own modules

REGISTERING = {"register_step", "register_ptq_backend", "register_ptq_alias"}  # their first argument is a name
# Files (path prefixes) that name recipes on purpose: tools that measure a fixed list of recipes.
NAMED_ON_PURPOSE = (
    "bench/tools/gpu_check",  # make gpu-check runs a fixed list of CUDA recipes
    "bench/tools/gpu_timers_check",  # times fp32 against fp32-cl on purpose
)
# A string equal to a step or backend name that means something else there.
COINCIDENCES = {
    ("bench/gate/ab.py", "prune"): "git worktree prune",
    ("bench/gate/series.py", "tensorrt"): "the TensorRT version field of a machine fingerprint",
    ("models/checkpoint.py", "torchao"): "a package whose version is recorded",
    ("models/checkpoint.py", "tensorrt"): "a package whose version is recorded",
    ("bench/export/formats.py", "tensorrt"): "a package the exported model needs",
    ("bench/export/formats.py", "torchao"): "a package the exported model needs",
    ("bench/export/model_card.py", "tensorrt"): "the runtime of a saved TensorRT engine",
    ("bench/export/triton.py", "bf16"): "the OpenVINO precision a saved variant records",
}
# Decisions on the reference recipe that are to import optim.registry.REFERENCE instead; remove each when it does.


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _registrations(trees: dict[str, ast.Module]) -> tuple[set[str], dict[str, set[str]]]:
    """(every registered step and backend name; per file, the names it registers and the words its steps' own
    ``Arg`` declarations use, such as compile's ``bf16`` flag or trt's ``fp16`` precision)."""
    assigned = {
        target.id: node.value
        for tree in trees.values()
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    registered: set[str] = set()
    owned: dict[str, set[str]] = {}
    for rel, tree in trees.items():
        owned[rel] = set()
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            called = getattr(call.func, "id", getattr(call.func, "attr", ""))
            if called in REGISTERING and call.args:
                first = call.args[0]
                value = assigned.get(first.id) if isinstance(first, ast.Name) else first
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    registered.add(value.value)
                    owned[rel].add(value.value)
            if called == "Arg":
                names = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)}
                owned[rel] |= _strings(call) | {s for n in names if n in assigned for s in _strings(assigned[n])}
    return registered, owned


def _named_in_decisions(tree: ast.Module, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) for each string equal to a name that sits in a list, set or tuple, or is compared."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Set | ast.Tuple):
            operands = node.elts
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        else:
            continue
        for operand in operands:
            if isinstance(operand, ast.Constant) and operand.value in names:
                found.append((operand.lineno, operand.value))
    return found


def test_steps_and_backends_are_named_only_in_their_own_modules():
    """``"x86" in recipe``-style decisions belong to the step's own module; everyone else asks the parsed recipe
    (``recipe.calibrates()``, ``recipe.search_candidate()``, ``recipe.needs(device)``, ...)."""
    trees = {str(p.relative_to(ROOT)): ast.parse(p.read_text()) for p in _modules().values()}
    names, owned = _registrations(trees)
    assert {"fp32", "ptq", "ort", "x86", "ov", "ort-int8", "ov-int8", "compile"} <= names, names  # the scan finds them
    wrong = [
        f"{rel}:{line}: {name!r}"
        for rel, tree in trees.items()
        if not rel.startswith(NAMED_ON_PURPOSE)
        for line, name in _named_in_decisions(tree, names - owned[rel])
        if (rel, name) not in COINCIDENCES
    ]
    assert not wrong, "step or backend names outside their own modules:\n" + "\n".join(wrong)
