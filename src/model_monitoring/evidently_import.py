"""Importing only the part of Evidently the reports use: an import-speed device.

`import evidently` takes ~4-5 s of CPU here: its package initialisers import every
metric, test, preset, descriptor (NLTK, LLM judges) and the UI server (Litestar), and
any `from evidently.x import y` runs them all first. Most of those initialisers only
re-export names of their submodules: `import_evidently`, in the report process, skips
them, and each name is imported from its submodule when first used. What the reports
use is then ~120 of Evidently's ~430 modules, ~2.3 s of CPU, imported by the report
worker while its caller loads the data. Two things initialisers did on the side are
kept: the statistical tests register themselves by name when their package is
imported, and one UI module sets the colours of every Plotly figure. The pages and
conclusions are those of the usual import (tests/model_monitoring/test_evidently_import.py
compares them); another release of Evidently than the one compared is imported whole.

The machinery, for any library (`defer_reexports`): some package initialisers import
every submodule to re-export their names (`from .metrics import Accuracy, ...`), so that
importing any one module of the library imports all of it. Deferred, such a package
starts empty: each re-exported name is imported from its module the first time it is
used (PEP 562 module `__getattr__`), and `from package import name` works as before. An
initialiser that does anything else (any statement but `from ... import ...`, a
docstring and a literal `__all__`) runs as usual, as do the packages named `eager`.
What is skipped is the side effects of importing the skipped modules: registries they
fill, global settings they change. Whoever defers a library's initialisers must check
that what they use of it gives the same results, as the tests do for Evidently.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any

LAZY_EVIDENTLY_VERSION = "0.7.23"
# Initialisers that fill a registry the reports look names up in: they run as usual.
EVIDENTLY_REGISTRY_PACKAGES = frozenset({"evidently.legacy.calculations.stattests"})
# Imported for its side effect: the colour sequence of every Plotly figure in a report.
EVIDENTLY_STYLE_MODULE = "evidently.legacy.ui.dashboards.utils"
# What the report functions (model_monitoring.reports) import from Evidently, by module:
# imported ahead, they make the first report of a process cost what the next ones do.
REPORT_IMPORTS = {
    "evidently": (
        "BinaryClassification",
        "DataDefinition",
        "Dataset",
        "MulticlassClassification",
        "Report",
    ),
    "evidently.metrics": ("DuplicatedRowCount",),
    "evidently.presets": ("ClassificationPreset", "DataDriftPreset", "ValueStats"),
    "evidently.tests": ("gte", "lte"),
}


def import_evidently() -> bool:
    """Import what the report functions import from Evidently; True if only that part
    of Evidently was imported.

    For use in a process of its own (the report worker), before the reports are asked
    for: the packages it creates stay as they are for that process's life.
    """
    from importlib import metadata

    try:
        lazy = metadata.version("evidently") == LAZY_EVIDENTLY_VERSION
    except metadata.PackageNotFoundError:
        lazy = False
    lazy = lazy and "evidently" not in sys.modules
    if lazy:
        defer_reexports("evidently", EVIDENTLY_REGISTRY_PACKAGES)
        importlib.import_module(EVIDENTLY_STYLE_MODULE)
    else:
        import evidently  # noqa: F401
    for module, names in REPORT_IMPORTS.items():
        for name in names:
            getattr(importlib.import_module(module), name)
    return lazy


# --- packages whose initialiser only re-exports names, imported without running it --------


@dataclass(frozen=True)
class Reexports:
    """What a package initialiser that only re-exports names binds."""

    names: dict[str, tuple[str, str | None]]  # name → (module, attribute; None: a submodule)
    all: list[str] | None
    doc: str | None


def package_reexports(source: str, package: str) -> Reexports | None:
    """What the initialiser `source` of `package` binds, if all it does is re-export
    names (`from ... import ...`, a docstring, a literal `__all__`); None otherwise."""
    tree = ast.parse(source)
    names: dict[str, tuple[str, str | None]] = {}
    exported = None
    for position, node in enumerate(tree.body):
        if position == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["__all__"]
            and isinstance(node.value, (ast.List, ast.Tuple))
        ):
            exported = [str(name) for name in ast.literal_eval(node.value)]
            continue
        if not isinstance(node, ast.ImportFrom):
            return None
        module = node.module or ""
        if node.level:
            base = package.rsplit(".", node.level - 1)[0]
            module = f"{base}.{module}" if module else base
        for alias in node.names:
            if alias.name == "*":
                return None
            bound = alias.asname or alias.name
            if module == package:
                names[bound] = (f"{package}.{alias.name}", None)
            else:
                names[bound] = (module, alias.name)
    return Reexports(names, exported, ast.get_docstring(tree))


class ReexportingPackage(importlib.abc.Loader):
    """Loads a re-exporting package without running its initialiser: each name is
    imported from its module when first used (PEP 562 `__getattr__`)."""

    def __init__(self, reexports: Reexports) -> None:
        self._reexports = reexports

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None  # the usual module object

    def exec_module(self, module: types.ModuleType) -> None:
        names = self._reexports.names
        module.__doc__ = self._reexports.doc
        if self._reexports.all is not None:
            module.__all__ = list(self._reexports.all)

        def __getattr__(name: str) -> Any:
            if name not in names:
                raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
            source, attribute = names[name]
            value = importlib.import_module(source)
            if attribute is not None:
                value = getattr(value, attribute)
            setattr(module, name, value)
            return value

        module.__getattr__ = __getattr__  # type: ignore[attr-defined]


class ReexportingPackageFinder(importlib.abc.MetaPathFinder):
    """Gives the packages under `root` whose initialiser only re-exports names, except
    `eager` ones, to `ReexportingPackage`; every other module is found as usual."""

    def __init__(self, root: str, eager: frozenset[str]) -> None:
        self._root = root
        self._eager = eager

    def find_spec(
        self, name: str, path: Any = None, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name in self._eager or not (name == self._root or name.startswith(f"{self._root}.")):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.submodule_search_locations is None or not spec.origin:
            return None
        try:
            with open(spec.origin, encoding="utf-8") as file:
                reexports = package_reexports(file.read(), name)
        except (OSError, SyntaxError, ValueError):
            return None
        if reexports is None:
            return None
        return importlib.util.spec_from_file_location(
            name,
            spec.origin,
            loader=ReexportingPackage(reexports),
            submodule_search_locations=spec.submodule_search_locations,
        )


def defer_reexports(root: str, eager: frozenset[str] = frozenset()) -> None:
    """From now on in this process, import the re-exporting packages of `root` (the
    package and those under it), except `eager` ones, without their initialisers.

    Packages already imported stay as they are: call it before importing `root`.
    """
    sys.meta_path.insert(0, ReexportingPackageFinder(root, eager))
