"""The import rule of src/, checked on the source so that it stays true.

    pipelines → the stages, backends, common, inference;
    a stage (model_training, model_tuning, promotion, model_monitoring, batch_scoring)
    → common, inference, and the stages it builds on (model_tuning → model_training;
    model_monitoring → promotion; batch_scoring → model_monitoring);
    promotion and backends, which deploy → backends too (backends: → common, inference);
    common → nothing else of the project;     inference → nothing else of the project;
    no import cycles, between packages or between modules;
    every module of common used by two stages at least: a stage's package or the flow
    file that runs it (pipelines.training: model_training, pipelines.deployment:
    promotion, pipelines.monitoring: model_monitoring, pipelines.scoring: batch_scoring),
    the traffic flow and backends each count as one user, and a module reached through
    other modules of common is used by whoever imports those.

Every import counts, wherever it is in a file: at module level, inside a function,
under `if TYPE_CHECKING:`, relative or absolute, and `importlib.import_module("...")`
with a literal name. The checker is tested on small synthetic trees first: a check
that cannot fail would prove nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# What each package of src/ may import besides itself.
STAGES = ("model_training", "model_tuning", "promotion", "model_monitoring", "batch_scoring")
FRAMEWORK = frozenset({"common", "inference"})
ALLOWED: dict[str, frozenset[str]] = {
    "pipelines": frozenset({*STAGES, "backends"}) | FRAMEWORK,
    "model_training": FRAMEWORK,
    "model_tuning": FRAMEWORK | {"model_training"},
    "promotion": FRAMEWORK | {"backends"},
    "model_monitoring": FRAMEWORK | {"promotion"},
    "batch_scoring": FRAMEWORK | {"model_monitoring"},
    "backends": FRAMEWORK,
    "common": frozenset(),
    "inference": frozenset(),
    # The team stack starts servers; it may use the framework, never a stage.
    "team_stack": FRAMEWORK,
}


@dataclass(frozen=True, order=True)
class Import:
    """`importer` imports `imported` (both dotted module names) at `path`:`line`."""

    importer: str
    imported: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.importer} imports {self.imported}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module an `ImportFrom` reads from, with relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imported_names(tree: ast.AST, importer: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module name `tree` imports, as candidates: `from a import b` gives `a.b`,
    which the caller reads as module a.b when there is one, else as module a. (Python
    runs package a's `__init__` first either way; a package that re-exports its own
    submodules is not a cycle worth reporting.)"""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, importer, is_package)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in {"import_module", "__import__"}
                )
            )
        ):
            yield node.args[0].value, node.lineno


def project_modules(root: Path) -> dict[str, Path]:
    """Every module under `root` by dotted name (a package by its own name), with its file."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def project_imports(root: Path) -> list[Import]:
    """Every import, anywhere in a .py file under `root`, of a module under `root`."""
    files = project_modules(root)
    packages = {name.split(".")[0] for name in files}
    found: set[Import] = set()
    for importer, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for name, line in _imported_names(tree, importer, is_package):
            if name.split(".")[0] not in packages:
                continue  # The standard library or a third-party package.
            # `from a import b` names module a.b when it exists, else something in a.
            target = name
            while target and target not in files:
                target = target.rpartition(".")[0]
            target = target or name
            if target != importer:
                relative = path.relative_to(root.parent).as_posix()
                found.add(Import(importer, target, relative, line))
    return sorted(found)


def direction_violations(imports: list[Import], allowed: Mapping[str, frozenset[str]]) -> list[str]:
    """Imports that break the package rule; packages not in `allowed` may import nothing."""
    broken = []
    for item in imports:
        source, target = item.importer.split(".")[0], item.imported.split(".")[0]
        if source != target and target not in allowed.get(source, frozenset()):
            broken.append(f"{item} (a {source} module may import only {source}" + (
                f", {', '.join(sorted(allowed[source]))})" if allowed.get(source) else ")"
            ))  # fmt: skip
    return broken


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def module_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for item in imports:
        graph.setdefault(item.importer, set()).add(item.imported)
    return graph


def package_graph(imports: list[Import]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for item in imports:
        source, target = item.importer.split(".")[0], item.imported.split(".")[0]
        if source != target:
            graph.setdefault(source, set()).add(target)
    return graph


def check(root: Path, allowed: Mapping[str, frozenset[str]] = ALLOWED) -> list[str]:
    """Every breach of the rule under `root`, one line each; empty when it holds."""
    imports = project_imports(root)
    problems = direction_violations(imports, allowed)
    problems += [f"package cycle: {' <-> '.join(c)}" for c in cycles(package_graph(imports))]
    problems += [f"module cycle: {' <-> '.join(c)}" for c in cycles(module_graph(imports))]
    return problems


# --- common is what two stages share --------------------------------------------------

# Who uses a module of common: each stage, the flow file that runs a stage (as that
# stage), the traffic flow, backends and the team stack. A module only one of them uses
# belongs there.
FLOW_USERS = {
    "pipelines.training": "model_training",
    "pipelines.deployment": "promotion",
    "pipelines.monitoring": "model_monitoring",
    "pipelines.scoring": "batch_scoring",
    "pipelines.traffic": "traffic",
}
OTHER_USERS = frozenset({"backends", "team_stack"})


def user_of(module: str) -> str | None:
    """The stage (or other user) that `module` counts as, None for common, inference..."""
    package = module.split(".")[0]
    if package in STAGES or package in OTHER_USERS:
        return package
    return FLOW_USERS.get(module)


def within_common(start: str, graph: Mapping[str, set[str]]) -> set[str]:
    """`start` and every module of common it imports, directly or through others."""
    reached: set[str] = set()
    pending = [start]
    while pending:
        module = pending.pop()
        if module not in reached and module.startswith("common."):
            reached.add(module)
            pending.extend(graph.get(module, ()))
    return reached


def common_users(root: Path) -> dict[str, set[str]]:
    """Each module of common (not its package `__init__`, which every import of it runs)
    with the users that import it, directly or through other modules of common."""
    imports = project_imports(root)
    graph = module_graph(imports)
    users: dict[str, set[str]] = {
        name: set() for name in project_modules(root) if name.startswith("common.")
    }
    for item in imports:
        user = user_of(item.importer)
        if user is not None:
            for module in within_common(item.imported, graph) & users.keys():
                users[module].add(user)
    return users


def single_user_modules(root: Path) -> list[str]:
    """The modules of common that fewer than two users need, each with who uses it."""
    return [
        f"{module} is used by {' '.join(sorted(users)) + ' only' if users else 'no stage'}"
        for module, users in sorted(common_users(root).items())
        if len(users) < 2
    ]


# --- the checker, on synthetic trees ------------------------------------------------------


def write_tree(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for package in ALLOWED:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


CLEAN = {
    "pipelines/flow.py": "import os\nfrom common import settings\nfrom backends.local import X\n"
    "import inference.model\n",
    "backends/local.py": "from inference.model import Model\nfrom common.settings import S\n"
    "from . import base\n",
    "backends/base.py": "import json\n",
    "common/settings.py": "import dataclasses\n",
    "common/config.py": "from .settings import S\n",
    "inference/model.py": "import numpy\nfrom inference import features\n",
    "inference/features.py": "import pandas\n",
}


def test_a_tree_that_follows_the_rule_passes(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", CLEAN)
    assert check(root) == []
    imports = {(i.importer, i.imported) for i in project_imports(root)}
    # The checker sees absolute, `from`, relative and package-level imports.
    assert {
        ("pipelines.flow", "common.settings"),
        ("pipelines.flow", "backends.local"),
        ("pipelines.flow", "inference.model"),
        ("backends.local", "backends.base"),
        ("common.config", "common.settings"),
        ("inference.model", "inference.features"),
    } <= imports


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # common never imports backends, inference or pipelines; a function-level
        # import counts as much as one at the top.
        (
            "common/config.py",
            "def f():\n    from backends.local import X\n",
            "src/common/config.py:2: common.config imports backends.local",
        ),
        (
            "common/config.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import inference.model\n",
            "src/common/config.py:3: common.config imports inference.model",
        ),
        (
            "common/config.py",
            "import importlib\nimportlib.import_module('pipelines.flow')\n",
            "src/common/config.py:2: common.config imports pipelines.flow",
        ),
        # inference imports nothing of the project outside itself.
        (
            "inference/features.py",
            "class F:\n    def m(self):\n        from common import settings\n",
            "src/inference/features.py:3: inference.features imports common.settings",
        ),
        (
            "inference/features.py",
            "from ..backends import base\n",
            "src/inference/features.py:1: inference.features imports backends.base",
        ),
        # backends never import pipelines.
        (
            "backends/base.py",
            "import pipelines.flow as flow\n",
            "src/backends/base.py:1: backends.base imports pipelines.flow",
        ),
    ],
)
def test_an_import_against_the_direction_is_reported(
    tmp_path: Path, name: str, text: str, expected: str
) -> None:
    root = write_tree(tmp_path / "src", {**CLEAN, name: text})
    problems = check(root)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_a_package_not_in_the_rule_may_import_nothing(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", {**CLEAN, "scripts/tool.py": "import common.config\n"})
    assert any("scripts.tool imports common.config" in p for p in check(root))


def test_a_cycle_between_modules_is_reported(tmp_path: Path) -> None:
    files = {
        **CLEAN,
        "backends/base.py": "def later():\n    from backends import sagemaker\n",
        "backends/sagemaker.py": "from backends.aws import client\n",
        "backends/aws.py": "from backends.base import Backend\n",
    }
    problems = check(write_tree(tmp_path / "src", files))
    assert "module cycle: backends.aws <-> backends.base <-> backends.sagemaker" in problems


def test_a_cycle_between_packages_is_reported(tmp_path: Path) -> None:
    # Both directions are allowed here, so only the cycle check can catch it.
    allowed = {**ALLOWED, "common": frozenset({"inference"}), "inference": frozenset({"common"})}
    files = {**CLEAN, "inference/model.py": "import common.config\n"}
    files["common/settings.py"] = "from inference.features import F\n"
    problems = check(write_tree(tmp_path / "src", files), allowed)
    assert "package cycle: common <-> inference" in problems


# Each module of common used by two users or more: settings through config and traffic.
SHARED = {
    "common/settings.py": "import dataclasses\n",
    "common/config.py": "from common.settings import Settings\n",
    "common/traffic.py": "from common import config\n",
    "pipelines/training.py": "from common.config import load\n",
    "pipelines/traffic.py": "def send():\n    from common.traffic import rows\n",
    "promotion/gate.py": "from common.traffic import rows\n",
    "backends/local.py": "from ..common import settings\n",
}


def test_a_tree_whose_common_modules_are_shared_passes(tmp_path: Path) -> None:
    root = write_tree(tmp_path / "src", SHARED)
    assert single_user_modules(root) == []
    assert check(root) == []
    users = common_users(root)
    # Through other modules of common; the flow files count as their stage (or traffic).
    assert users["common.settings"] == {"model_training", "traffic", "promotion", "backends"}
    assert users["common.traffic"] == {"traffic", "promotion"}


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # A module one stage imports belongs in that stage.
        (
            {
                "common/cards.py": "import json\n",
                "model_monitoring/cards.py": "import common.cards\n",
            },
            "common.cards is used by model_monitoring only",
        ),
        # A flow file and the stage it runs are one user.
        (
            {
                "common/cards.py": "import json\n",
                "pipelines/monitoring.py": "from common.cards import render\n",
                "model_monitoring/history.py": "from common import cards\n",
            },
            "common.cards is used by model_monitoring only",
        ),
        # Reached only through a module one stage uses: that stage's too.
        (
            {
                "common/cards.py": "from . import charts\n",
                "common/charts.py": "import math\n",
                "model_training/card.py": "from common.cards import render\n",
            },
            "common.charts is used by model_training only",
        ),
        # Used by no stage: nothing imports it (or only modules of common no stage uses).
        ({"common/orphan.py": "import os\n"}, "common.orphan is used by no stage"),
    ],
)
def test_a_common_module_fewer_than_two_use_is_reported(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    root = write_tree(tmp_path / "src", {**SHARED, **files})
    assert expected in single_user_modules(root)


# --- the repository ----------------------------------------------------------------------


def test_the_checker_sees_the_repository() -> None:
    imports = project_imports(SRC)
    pairs = {(i.importer, i.imported) for i in imports}
    assert ("pipelines.training", "common.pipeline") in pairs
    assert ("inference.model", "inference.features") in pairs
    assert {name.split(".")[0] for name, _ in pairs} == set(ALLOWED)


def test_src_follows_the_import_rule() -> None:
    problems = check(SRC)
    assert problems == [], "The import rule of src/ is broken:\n" + "\n".join(problems)


def test_every_module_of_common_serves_two_users() -> None:
    problems = single_user_modules(SRC)
    assert problems == [], (
        "A module of common that fewer than two stages use belongs in the stage:\n"
        + "\n".join(problems)
    )
