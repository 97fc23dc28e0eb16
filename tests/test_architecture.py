"""The package's shape (DESIGN §2): every import goes down the layers, and none closes a circle.

Both checks read the source with ``ast`` (nothing is imported), so they see every import:
module-level ones, and the lazy ones inside functions. A relative import is resolved against
the importing module's package; ``from PKG import name`` is an import of the submodule
``PKG.name`` when there is one, else of ``PKG`` itself.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "magnetdml"

# The layer order, in one place: each top-level subpackage or module of magnetdml -> its layer.
LAYERS = {
    # 0: small helpers every layer may use
    "_validation": 0,
    "registry": 0,
    "_figures": 0,
    "_version": 0,
    "_faiss": 0,
    "_paths": 0,
    "_progress": 0,
    "losses": 1,
    "clustering": 2,
    "sampling": 2,
    "evaluation": 3,
    "data": 4,
    "models": 4,
    "training": 5,
    "reporting": 6,
    "experiments": 6,
    "cli": 6,
    # the package itself: ``import magnetdml`` re-exports the public API of the layers (the
    # training layer lazily), ``python -m magnetdml`` runs the command line
    "__init__": 7,
    "__main__": 7,
}
# Siblings in one layer stay independent of each other (clustering never imports sampling,
# data never models, one helper never another), except in the top layer, which stacks in
# this order: experiments draw figures and reports with reporting, and the cli runs them all.
TOP_LAYER_ORDER = ("reporting", "experiments", "cli")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "magnetdml.training.loop"
    target: str  # the imported module, e.g. "magnetdml.training.trainer"
    file: str  # the importing file, e.g. "magnetdml/training/loop.py"
    line: int
    lazy: bool  # inside a function: runs when called, not when the module loads

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``: dotted name -> file."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def package_imports(root: Path, package: str) -> list[Import]:
    """Every import, module-level or lazy, of one ``package`` module from another."""
    modules = module_names(root, package)
    found = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        lazy_nodes = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".") if is_package else source.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [
                    f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module
                    for alias in node.names
                ]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target == package or target.startswith(package + "."):
                    found.append(
                        Import(
                            source,
                            target,
                            path.relative_to(root).as_posix(),
                            node.lineno,
                            id(node) in lazy_nodes,
                        )
                    )
    return found


def top_level(module: str) -> str:
    """``magnetdml.training.loop`` -> ``training``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(
    imports: list[Import], layers: dict[str, int], top_order: tuple[str, ...]
) -> list[str]:
    problems = []
    for imp in imports:
        source, target = top_level(imp.source), top_level(imp.target)
        if source == target:
            continue
        low, high = layers[target], layers[source]
        stacked = (
            low == high
            and source in top_order
            and target in top_order
            and top_order.index(target) < top_order.index(source)
        )
        if not (low < high or stacked):
            problems.append(
                f"{imp.where()} imports {imp.target}"
                f"{' (lazily)' if imp.lazy else ''}: {source} (layer {high}) may "
                f"only import layers below it, but {target} is layer {low}"
            )
    return problems


def find_cycle(imports: list[Import]) -> list[Import] | None:
    """One import circle, as the imports that close it, or None."""
    graph: dict[str, list[Import]] = {}
    for imp in imports:
        if imp.target != imp.source:
            graph.setdefault(imp.source, []).append(imp)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    modules: list[str] = []  # the current path, as modules ...
    steps: list[Import] = []  # ... and as the imports between them

    def visit(module: str) -> list[Import] | None:
        state[module] = 1
        modules.append(module)
        for imp in graph.get(module, []):
            if state.get(imp.target) == 1:  # back to a module on the path: a circle
                return [*steps[modules.index(imp.target) :], imp]
            if imp.target not in state:
                steps.append(imp)
                cycle = visit(imp.target)
                if cycle:
                    return cycle
                steps.pop()
        modules.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def describe(cycle: list[Import]) -> str:
    steps = "\n".join(
        f"  {imp.source} -> {imp.target}{' (lazy)' if imp.lazy else ''}   [{imp.where()}]"
        for imp in cycle
    )
    return f"import circle {' -> '.join([cycle[0].source, *(i.target for i in cycle)])}:\n{steps}"


# ------------------------------------------------------------------------ the package


def test_every_top_level_module_has_a_layer():
    tops = {top_level(name) for name in module_names(SRC, PACKAGE)}
    missing = sorted(tops - set(LAYERS))
    assert not missing, (
        f"{missing} have no layer: add them to LAYERS in "
        f"{Path(__file__).name} (DESIGN §2 lists the layers)"
    )
    assert not sorted(set(LAYERS) - tops), "LAYERS names modules that do not exist"


def test_modules_import_only_from_layers_below_their_own():
    problems = layer_violations(package_imports(SRC, PACKAGE), LAYERS, TOP_LAYER_ORDER)
    assert not problems, "imports going up the layers:\n" + "\n".join(problems)


def test_no_import_circle():
    # Lazy imports count too. A lazy import cannot fail on a half-initialised module, but a
    # circle through one still ties the modules together both ways, so that neither can be
    # read, tested or moved without the other (the old cli -> commands -> cli_* -> cli circle
    # ran through a lazy import).
    cycle = find_cycle(package_imports(SRC, PACKAGE))
    assert cycle is None, describe(cycle)


# ------------------------------------------------------ the checks can fail


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_an_upward_import_is_reported_with_file_import_and_both_layers(tmp_path):
    write_package(
        tmp_path,
        {
            "__init__.py": "",
            "losses/__init__.py": "",
            "losses/magnet.py": "def f():\n    from ..training import loop\n",
            "training/__init__.py": "",
            "training/loop.py": "from ..losses import magnet\n",
            "reporting/__init__.py": "",
            "experiments/__init__.py": "from ..reporting import page\nfrom ..cli import main\n",
            "reporting/page.py": "",
            "cli/__init__.py": "",
            "cli/main.py": "",
        },
    )
    layers = {"__init__": 7, "losses": 1, "training": 5, "reporting": 6, "experiments": 6, "cli": 6}
    problems = layer_violations(package_imports(tmp_path, "pkg"), layers, TOP_LAYER_ORDER)
    assert problems == [
        "pkg/experiments/__init__.py:2 imports pkg.cli.main: experiments (layer 6) may only "
        "import layers below it, but cli is layer 6",
        "pkg/losses/magnet.py:2 imports pkg.training.loop (lazily): losses (layer 1) may only "
        "import layers below it, but training is layer 5",
    ]


def test_a_circle_is_reported_through_every_module_on_it(tmp_path):
    write_package(
        tmp_path,
        {
            "__init__.py": "",
            "cli.py": "def main():\n    from . import commands\n",
            "commands.py": "from . import cli_report\n",
            "cli_report.py": "from .cli import main\n",
            "plain.py": "from . import cli\n",
        },
    )
    cycle = find_cycle(package_imports(tmp_path, "pkg"))
    assert [(i.source, i.target, i.lazy) for i in cycle] == [
        ("pkg.cli", "pkg.commands", True),
        ("pkg.commands", "pkg.cli_report", False),
        ("pkg.cli_report", "pkg.cli", False),
    ]
    assert describe(cycle).startswith(
        "import circle pkg.cli -> pkg.commands -> pkg.cli_report -> pkg.cli:"
    )
    write_package(tmp_path, {"cli_report.py": ""})
    assert find_cycle(package_imports(tmp_path, "pkg")) is None


# ------------------------------------------------- one concept, one place (issue 24)


def project_bases(root: Path, package: str) -> dict[str, list[str]]:
    """``module.Class`` -> the bases of that class that are classes of ``package`` itself.

    A base counts as the package's when it is a class defined in the same module, or a name
    (or ``alias.Name``) imported from a module of the package that is the name of a class
    defined anywhere in the package (re-exports through ``__init__`` included). Bases from
    other libraries (``nn.Module``, ``Sampler``, ``Exception``) never count."""
    modules = module_names(root, package)
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    class_names = {
        node.name
        for tree in trees.values()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
    }
    found = {}
    for source, tree in trees.items():
        is_package = modules[source].name == "__init__.py"
        local = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        imported: dict[str, str] = {}  # bound name -> the module it came from
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = source.split(".") if is_package else source.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    imported[alias.asname or alias.name] = module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name

        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [
                    name
                    for name in (
                        _project_base(b, local, imported, class_names, package) for b in node.bases
                    )
                    if name
                ]
                found[f"{source}.{node.name}"] = bases
    return found


def _project_base(
    base: ast.expr, local: set[str], imported: dict[str, str], class_names: set[str], package: str
) -> str | None:
    """The class name of ``base`` if it is one of ``package``'s classes, else None."""
    if isinstance(base, ast.Name):
        if base.id in local:
            return base.id
        origin, name = imported.get(base.id, ""), base.id
    elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
        origin, name = imported.get(base.value.id, ""), base.attr
    else:
        return None
    inside = origin == package or origin.startswith(package + ".")
    return name if inside and name in class_names else None


@pytest.mark.slow
def test_no_class_inherits_from_more_than_one_project_class():
    # Composition with declared state (issue 24): a class built from several of the
    # package's classes (the Trainer's four mixins) shares attributes that no file declares.
    mixed = {name: bases for name, bases in project_bases(SRC, PACKAGE).items() if len(bases) > 1}
    assert not mixed, (
        f"classes inheriting from several magnetdml classes (compose parts instead): {mixed}"
    )


def test_the_multiple_inheritance_check_can_fail(tmp_path):
    write_package(
        tmp_path,
        {
            "__init__.py": "",
            "parts.py": "class A:\n    pass\n\n\nclass B:\n    pass\n",
            "whole.py": (
                "from torch import nn\nfrom . import parts\nfrom .parts import A\n\n\n"
                "class Mixed(A, parts.B):\n    pass\n\n\n"
                "class Module(A, nn.Module):\n    pass\n"
            ),
        },
    )
    bases = project_bases(tmp_path, "pkg")
    assert bases["pkg.whole.Mixed"] == ["A", "B"]
    assert bases["pkg.whole.Module"] == ["A"]


def occurrences(pattern: str) -> list[str]:
    """``file:line`` of every line of the package's source that contains ``pattern``."""
    return [
        f"{path.relative_to(SRC).as_posix()}:{number}"
        for path in sorted((SRC / PACKAGE).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern in line
    ]


def test_one_knc_and_one_evaluate_run():
    # kNC of a trained embedding is decided in one place (evaluation.knc.fit_knc: which
    # centres, which lengthscale sigma^2 / s); training, reloaded runs, searches, the own
    # loop and predict call it. Finished runs are scored by one evaluate_run.
    assert files("def evaluate_run(") == ["magnetdml/training/runs.py"]
    assert files("def fit_knc(") == ["magnetdml/evaluation/knc.py"]
    # the classifier is built by fit_knc, by evaluate(index=, lengthscale=) for callers that
    # bring their own centres, and by the hierarchy analysis, whose centres carry the fine
    # labels of their members (not a run's kNC)
    assert set(files("KNearestClusters(")) == {
        "magnetdml/evaluation/knc.py",
        "magnetdml/evaluation/api.py",
        "magnetdml/experiments/analysis.py",
    }
    # the lengthscale of losses without a running sigma^2, and the one with: in fit_knc only
    assert files("cluster_variance(") == ["magnetdml/evaluation/knc.py"]
    assert files("knc_lengthscale(") == ["magnetdml/evaluation/knc.py"]
    assert files("UNSEEN_METRICS = ") == ["magnetdml/evaluation/api.py"]
    # sigma^2 is tracked by one running average (training.sigma2)
    assert files("RunningSigma2(") == [
        "magnetdml/training/magnet_training.py",
        "magnetdml/training/trainer.py",
    ]


def files(pattern: str) -> list[str]:
    """The files (no repeats, sorted) whose source contains ``pattern``."""
    return sorted({where.split(":")[0] for where in occurrences(pattern)})


def test_the_tests_mirror_the_package():
    """Each test folder is named after a subpackage of src/magnetdml (or benchmarks/)."""
    root = Path(__file__).resolve().parent
    package = root.parent / "src" / "magnetdml"
    if not package.is_dir():
        pytest.skip("outside the repository (e.g. an sdist's tests against a wheel)")
    layers = {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    folders = {p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= layers | {"benchmarks"}, folders - layers
    assert not [
        p.name
        for p in root.glob("test_*.py")
        if p.name
        not in {
            "test_architecture.py",
            "test_packaging.py",
            "test_portable_results.py",
            "test_docs_tables.py",
        }
    ]
