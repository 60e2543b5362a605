"""The import graph of ``src/frugalvision`` and ``tools/``, built from the source with :mod:`ast`: no cycle between
files, and no lower layer importing a higher one (the developers' guide: "imports flow one way").

Every ``import`` / ``from ... import`` counts, at module level or inside a function (a lazy import is still a
dependency, only a hidden one). Relative imports are resolved against the importing file's package. Importing
``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` first, so an edge to a module is also an edge to every
package ``__init__`` above it, except the importer's own enclosing packages: Python has already started those, so
``from . import sibling`` needs nothing of them. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg/__init__.py`` itself, even when ``pkg`` encloses the importer: ``from .. import __version__``
needs the parent's ``__init__`` to have run that far, a real (and circular) dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SRC = REPO_ROOT / "src"
PACKAGE = "frugalvision"

# Layers of frugalvision, lowest first. A module may import its own layer or any lower one, never a higher one.
# The kernels (ops) know nothing else; data (datasets, preprocessing) is a leaf beside them; layers are built from
# ops; models from layers (and carry a DataConfig); optim (adaptive learning rates of adder layers) knows layers.
# Above them sit the engines that use models: train, quant (post-training quantisation), export; then analysis
# (counting, reports) and the inference helper; the benchmark package (frugalvision.bench, which runs everything
# below); and the thin command line on top.
# ``errors``, ``version``, ``run_dir`` (the run folder's file names, read by models and above), ``names`` (the
# vocabulary the command line offers without importing torch), ``extensions`` (checkpoint loaders declared by
# module name) and ``omp_env`` (OpenMP's wait policy) sit below everything; the package ``__init__`` (the public
# facade) above everything.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version", "run_dir", "names", "extensions", "omp_env"),
    ("ops",),
    ("data",),
    ("layers",),
    ("models", "optim"),
    ("train", "quant", "export"),
    ("analysis", "inference"),
    ("bench",),
    ("cli", "__main__"),
    ("__init__",),  # frugalvision/__init__.py, the public facade
    ("tools",),  # scripts in tools/, may use anything
]
LOWER_LAYERS = ("ops", "data", "layers", "models", "optim")  # the "lower layers": never import upward


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for frugalvision and tools/ (a package is named by its ``__init__``)."""
    files = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    for path in sorted((REPO_ROOT / "tools").glob("*.py")):
        files[f"tools.{path.stem}"] = path
    return files


MODULES = _module_files()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _with_parents(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: the modules Python runs to import it."""
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _resolve(importer: str, node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, bool]]:
    """``(module, explicit)`` for the frugalvision modules an import statement needs: the deepest existing module of
    each target; ``explicit`` when the statement reads names from that module itself (``from pkg import name`` with
    ``name`` not a submodule), not only imports something below it."""
    if isinstance(node, ast.Import):
        targets = [alias.name for alias in node.names]
    else:
        if node.level:
            package = importer if _is_package(importer) else importer.rpartition(".")[0]
            base = package.split(".")
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        targets = [f"{module}.{alias.name}" for alias in node.names]
    for target in targets:
        explicit = isinstance(node, ast.ImportFrom) and target not in MODULES
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target:
            yield target, explicit


def _edges(importer: str) -> set[str]:
    tree = ast.parse(MODULES[importer].read_text(encoding="utf-8"), filename=str(MODULES[importer]))
    own_packages = set(_with_parents(importer))  # already being imported when this file runs
    edges = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target, explicit in _resolve(importer, node):
                edges.update(name for name in _with_parents(target) if name in MODULES and name not in own_packages)
                if explicit and target != importer:
                    edges.add(target)
    return edges


GRAPH = {name: _edges(name) for name in MODULES}


def _layer_name(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "tools":
        return "tools"
    return parts[1] if len(parts) > 1 else "__init__"


LAYER_INDEX = {name: i for i, names in enumerate(LAYERS) for name in names}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            child = next(stack[-1], None)
            if child is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif child not in state:
                state[child] = 1
                path.append(child)
                stack.append(iter(sorted(graph[child])))
    return None


def test_the_graph_is_read() -> None:
    """The parser finds the edges it must: a guard against a graph that is empty and so trivially acyclic."""
    assert len(MODULES) > 50
    assert "frugalvision.errors" in GRAPH["frugalvision.models.factory"]
    assert "frugalvision.ops" in GRAPH["frugalvision.layers.adder"]  # via the package __init__
    assert "frugalvision.models.registry" in GRAPH["frugalvision.models.factory"]  # relative import
    assert sum(len(edges) for edges in GRAPH.values()) > 200


def test_every_module_has_a_layer() -> None:
    assert {_layer_name(m) for m in MODULES} - set(LAYER_INDEX) == set()


def test_no_import_cycle_between_files() -> None:
    cycle = _find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_lower_layer_imports_a_higher_one() -> None:
    upward = [
        f"{importer} ({_layer_name(importer)}) imports {target} ({_layer_name(target)})"
        for importer, targets in sorted(GRAPH.items())
        for target in sorted(targets)
        if LAYER_INDEX[_layer_name(target)] > LAYER_INDEX[_layer_name(importer)]
    ]
    assert upward == [], "imports running up the layers:\n" + "\n".join(upward)


def test_nothing_in_the_library_imports_the_executable_spec() -> None:
    """``ops/reference.py`` is the executable spec, for the tests and the docs; the library runs the backends that
    the tests compare with it (a library module importing it would compare code with itself)."""
    spec = "frugalvision.ops.reference"
    assert spec in MODULES
    importers = sorted(name for name, targets in GRAPH.items() if spec in targets and name.startswith(PACKAGE))
    assert importers == [], f"{spec} imported by: {', '.join(importers)}"


@pytest.mark.parametrize("layer", LOWER_LAYERS)
def test_lower_layers_are_below_every_engine(layer: str) -> None:
    """The order above keeps the issue's rule: ops, data, layers, models, optim below train, quant, export, ..."""
    for higher in ("train", "quant", "export", "analysis", "inference", "bench", "cli"):
        assert LAYER_INDEX[layer] < LAYER_INDEX[higher]
