"""The package's floors (issue 20): imports only run downward, compare → monitor → theory → init → base, and no
two modules import each other (directly or around a longer circle). Every import counts, including those inside
functions and under ``TYPE_CHECKING``: each one is a dependency a reader has to follow."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "initlab"

# Lower floors first. A module may import its own floor's package and any floor below it.
FLOORS: list[tuple[str, ...]] = [
    ("initlab._errors", "initlab._quadrature", "initlab._tables"),  # base: belongs to no verb
    ("initlab.init",),  # INITIALIZE
    ("initlab.theory", "initlab.nn"),  # PREDICT; the torch.nn.init mirror
    ("initlab.monitor",),  # WATCH
    ("initlab.compare",),  # COMPARE
    ("initlab.integrations",),  # the Monitor as the trainers' callbacks (writes the run store)
    ("initlab.keras",),  # the Keras mirror and its fit callback (writes the run store)
    ("initlab.cli",),  # the command line over all of them
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
COMPILED = {_module_name(p) for p in PACKAGE.rglob("*.pyi")}  # extension modules: import nothing of ours


def _floor(module: str) -> tuple[int, str]:
    """(floor, the floor's package) of an initlab module."""
    for level, packages in enumerate(FLOORS):
        for package in packages:
            if module == package or module.startswith(package + "."):
                return level, package
    raise AssertionError(f"{module} is on no floor: add its package to FLOORS in {__file__}")


def _imports(module: str) -> set[str]:
    """Every initlab module that ``module`` imports, resolved to modules where a name is a submodule."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "initlab")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
            if base.split(".")[0] != "initlab":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES or candidate in COMPILED else base)
    return found - {module}


GRAPH = {m: _imports(m) for m in MODULES if m != "initlab"}


def test_the_walk_sees_the_imports() -> None:
    # A guard for the walker itself: these imports are known to exist, including one inside a function.
    assert "initlab.init.registry" in GRAPH["initlab.theory.critical"]
    assert "initlab.compare.report.plots" in GRAPH["initlab.cli.predict_cmd"]  # imported in a function body
    assert "initlab.monitor._fused" in GRAPH["initlab.monitor.probes"]  # the compiled part, by its stub
    assert set(GRAPH) >= {"initlab.init.model", "initlab.monitor.probes", "initlab.compare.train"}


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_run_downward(module: str) -> None:
    level, package = _floor(module)
    upward = []
    for target in sorted(GRAPH[module]):
        if target == "initlab":
            upward.append(f"{target} (the public façade: import the module that defines the name)")
            continue
        target_level, target_package = _floor(target)
        if target_level > level or (target_level == level and target_package != package):
            upward.append(target)
    assert not upward, f"{module} (floor {level}, {package}) imports from a higher floor: {upward}"


def _reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(GRAPH[start])
    while todo:
        node = todo.pop()
        if node in GRAPH and node not in seen:
            seen.add(node)
            todo.extend(GRAPH[node])
    return seen


def test_no_import_circles() -> None:
    on_circle = sorted(m for m in GRAPH if m in _reachable(m))
    assert not on_circle, f"modules on an import circle (each reaches itself): {on_circle}"


def test_few_modules_belong_to_no_verb() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 5, f"files directly in src/initlab/ (at most five): {top}"


# -- one structure layer (issue 30) ------------------------------------------------------------------------------
STRUCTURE_LAYER = {"initlab.init.structure", "initlab.init._walk", "initlab.init._operators", "initlab.init._examples"}
WEIGHT_TYPES = re.compile(r"\b(Linear|Bilinear|Conv\w*|_ConvNd|_ConvTransposeNd|Embedding\w*|RNNBase|LSTM|GRU|RNN)\b")
WALKERS = {"WEIGHT_LAYERS", "weight_layers", "find_activations", "residual_blocks", "trace"}


def _weight_type_checks_in_module_loops(tree: ast.AST) -> list[int]:
    """Lines where a loop or comprehension over ``.modules()`` / ``.named_modules()`` asks ``isinstance(…, a
    weight-layer type)``: a module deciding for itself which layers are weights."""
    lines = []
    for node in ast.walk(tree):
        iters = [node.iter] if isinstance(node, ast.For) else [
            g.iter for g in getattr(node, "generators", [])]  # fmt: skip
        over_modules = any(isinstance(i, ast.Call) and isinstance(i.func, ast.Attribute)
                           and i.func.attr in ("modules", "named_modules") for i in iters)  # fmt: skip
        if not over_modules:
            continue
        for inner in ast.walk(node):
            if (isinstance(inner, ast.Call) and isinstance(inner.func, ast.Name) and inner.func.id == "isinstance"
                    and len(inner.args) == 2 and WEIGHT_TYPES.search(ast.unparse(inner.args[1]))):  # fmt: skip
                lines.append(inner.lineno)
    return lines


def test_only_the_structure_layer_enumerates_weight_layers() -> None:
    # Which parameters are weights, which activation follows each, where the residual branches are: answered once
    # (initlab.init.structure; its fallback without a forward pass, initlab.init._walk). Before issue 30 five
    # modules (_tracing, monitor/_layers, monitor/snapshot, theory/audit, lsuv) enumerated weight layers by module
    # type and disagreed. This fails where any other module walks a model's modules for weight-layer types, or
    # imports the walker's helpers.
    offenders = []
    for module, path in MODULES.items():
        if module in STRUCTURE_LAYER:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").endswith("_walk"):
                offenders += [f"{module} imports {a.name}" for a in node.names if a.name in WALKERS]
        offenders += [f"{module}:{line}" for line in _weight_type_checks_in_module_loops(tree)]
    assert not offenders, offenders
