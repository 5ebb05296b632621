"""The seams, checked on the source: the import graph of ``ptmzoo`` has no cycle, nobody sniffs a
declared capability (``getattr(x, "flag", default)``, ``hasattr``), and every head, objective and
task defined in the package is in its registry (``catalog.HEADS``, ``objectives.OBJECTIVES``,
``tasks.TASKS``), so that a checkpoint naming it can be rebuilt and a command can find it.

The source is read with ``ast``, not searched as text: an import inside a function is an edge too,
relative imports are resolved, and ``from .x import name`` is an edge to the module ``x.name``
when ``name`` is a module.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections import deque
from pathlib import Path

import pytest

import ptmzoo

PACKAGE = "ptmzoo"

# The capabilities that backbones, heads, objectives and tasks declare (as class attributes with a
# default, on the base classes): code reads them, it never guesses them with a default of its own.
CAPABILITIES = frozenset({
    "is_encoder_decoder", "supports_cache", "reads_entities", "needs_hidden_states", "model_class", "causal",
    "tie_word_embeddings", "lm_head_transform", "relative_attention_num_buckets", "extra_vocab", "needs_parallel",
    "needs_sentence_pairs", "generator",
})


# ---------------------------------------------------------------------------------- the import graph
def package_modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``package`` under ``root`` (a package is its
    ``__init__``)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_names(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The dotted names an import statement inside ``module`` brings in: ``import a.b`` -> a.b;
    ``from .x import y`` -> <package>.x.y (a module, or a name defined in <package>.x)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - (node.level - 1)])
        source = f"{base}.{node.module}" if node.module else base
    else:
        source = node.module
    return [f"{source}.{alias.name}" for alias in node.names]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports, at module level or inside functions. A name that
    is not a module stands for the module it is imported from."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in imported_names(module, path.name == "__init__.py", node):
                while name and name not in modules:  # a function or class: its module
                    name = name.rpartition(".")[0]
                if name and name != module:
                    graph[module].add(name)
    return graph


def strongly_connected_components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of ``graph``, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One shortest import cycle through the first module of a component: [a, b, ..., a]."""
    start, inside = component[0], set(component)
    parent: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for successor in sorted(graph[node] & inside):
            if successor == start:
                path = [node]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if successor not in parent:
                parent[successor] = node
                queue.append(successor)
    raise AssertionError(f"{component} is not a cycle")


def import_cycles(root: Path, package: str) -> list[tuple[list[str], list[str]]]:
    """(one cycle, all the modules of its strongly connected component) for each component."""
    graph = import_graph(package_modules(root, package))
    return [(a_cycle(graph, c), c) for c in strongly_connected_components(graph) if len(c) > 1]


def source_root() -> Path:
    return Path(ptmzoo.__file__).resolve().parents[1]


def test_the_import_graph_has_no_cycle():
    cycles = import_cycles(source_root(), PACKAGE)
    assert not cycles, "import cycles in ptmzoo:\n" + "\n".join(
        f"{' -> '.join(cycle)}  (one of the cycles among {len(component)} modules: {', '.join(component)})"
        for cycle, component in cycles)


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker on a package made for it: imports inside functions, relative imports from
    modules and from packages, ``from . import module`` and names imported from modules are edges;
    other packages' modules are not."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nfrom .b import helper\n",
        "pkg/b.py": "def helper():\n    from . import a\n    return a\n",
        "pkg/c.py": "from pkg.a import helper\nfrom .sub import d\n",
        "pkg/sub/__init__.py": "from . import d\n",
        "pkg/sub/d.py": "from ..b import helper\nfrom .. import c\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert import_graph(package_modules(tmp_path, "pkg")) == {
        "pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}, "pkg.c": {"pkg.a", "pkg.sub.d"},
        "pkg.sub": {"pkg.sub.d"}, "pkg.sub.d": {"pkg.b", "pkg.c"}}
    assert import_cycles(tmp_path, "pkg") == [(["pkg.a", "pkg.b", "pkg.a"], ["pkg.a", "pkg.b"]),
                                              (["pkg.c", "pkg.sub.d", "pkg.c"], ["pkg.c", "pkg.sub.d"])]


# ---------------------------------------------------------------------------------- no sniffing
def capability_sniffs(root: Path, package: str) -> list[str]:
    """``getattr(x, "<capability>", default)`` and ``hasattr(x, "<capability>")`` calls: file:line."""
    found = []
    for path in package_modules(root, package).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            guessed = ((node.func.id == "getattr" and len(node.args) == 3)
                       or (node.func.id == "hasattr" and len(node.args) == 2))
            name = node.args[1] if guessed else None
            if isinstance(name, ast.Constant) and name.value in CAPABILITIES:
                found.append(f"{path.relative_to(root)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_declared_capability_is_sniffed():
    sniffs = capability_sniffs(source_root(), PACKAGE)
    assert not sniffs, "declared capabilities read with a guessed default (declare them on the base class):\n" + \
        "\n".join(sniffs)


def test_the_sniffing_check_sees_getattr_with_a_default_and_hasattr(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        "def f(backbone, head):\n"
        "    a = getattr(backbone, 'is_encoder_decoder', False)\n"
        "    b = hasattr(head, 'needs_hidden_states')\n"
        "    c = getattr(backbone, 'causal')  # no default: declared, fine\n"
        "    d = getattr(backbone, 'hidden_size', 0)  # not a capability\n")
    assert [line.split(": ", 1)[0] for line in capability_sniffs(tmp_path, "pkg")] == ["pkg/m.py:2", "pkg/m.py:3"]


# ---------------------------------------------------------------------------------- registries
def defined_subclasses(base: type) -> list[type]:
    """Every subclass of ``base`` defined in ptmzoo (all its modules imported first)."""
    for info in pkgutil.walk_packages(ptmzoo.__path__, prefix=f"{PACKAGE}."):
        if not info.name.endswith(".__main__"):  # runs the command line
            importlib.import_module(info.name)
    found, todo = [], [base]
    while todo:
        for cls in todo.pop().__subclasses__():
            todo.append(cls)
            if cls.__module__.startswith(f"{PACKAGE}."):
                found.append(cls)
    return sorted(set(found), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def registries():
    from ptmzoo.catalog import HEADS
    from ptmzoo.models.model import Head
    from ptmzoo.objectives import OBJECTIVES
    from ptmzoo.objectives.base import Objective
    from ptmzoo.tasks import TASKS
    from ptmzoo.tasks.base import Task

    return {"catalog.HEADS": (Head, "kind", HEADS), "objectives.OBJECTIVES": (Objective, "name", OBJECTIVES),
            "tasks.TASKS": (Task, "name", TASKS)}


@pytest.mark.parametrize("registry", ["catalog.HEADS", "objectives.OBJECTIVES", "tasks.TASKS"])
def test_every_head_objective_and_task_is_registered(registry):
    base, key, table = registries()[registry]
    classes = [cls for cls in defined_subclasses(base) if isinstance(getattr(cls, key, None), str)
               and getattr(cls, "named_in_recipes", True)]  # steps that other jobs build are not named
    assert len(classes) >= 5, f"found only {classes}"
    missing = [f"{cls.__module__}.{cls.__qualname__} ({key}={getattr(cls, key)!r})" for cls in classes
               if table.get(getattr(cls, key)) is not cls]
    assert not missing, (f"defined but not in {registry} under their {key} (a checkpoint or command naming "
                         f"them would get another class, or none): {missing}")


# ---------------------------------------------------------------------------------- the tests themselves
TESTS = Path(__file__).resolve().parent


def test_the_tests_are_one_package_and_import_their_helpers_through_it():
    """Every folder of tests is a package (so modules of the same name in two folders do not clash),
    and helpers are imported as its modules (``from tests.conftest import run_cli``), not by a bare
    name that only resolves when pytest happens to put the helper's folder on ``sys.path``."""
    folders = {path.parent for path in TESTS.rglob("*.py")}
    assert not [str(f.relative_to(TESTS.parent)) for f in sorted(folders) if not (f / "__init__.py").exists()]
    helpers = {path.stem for path in TESTS.rglob("*.py")} - {"__init__"}
    bare = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                bare.append(f"{path.relative_to(TESTS.parent)}:{node.lineno}: relative import")
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bare += [f"{path.relative_to(TESTS.parent)}:{node.lineno}: {name}" for name in names
                     if name.split(".")[0] in helpers]
    assert not bare, "import test helpers as tests.<folder>.<module>:\n" + "\n".join(bare)
