"""src/common/reexports.py: re-exporting packages imported without their initialiser.

On a toy package written to a temporary directory, whose modules record that they were
imported; the finder is in place for that package alone, and removed afterwards.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_monitoring.reexports import ReexportingPackageFinder, Reexports, package_reexports


def test_a_reexporting_initialiser_is_read_as_names_and_their_modules() -> None:
    source = '''"""A package."""
from .metrics import Accuracy, F1 as F1Score
from . import tests
from ..core.base import Base
from evidently.x.y import Thing
__all__ = ["Accuracy", "F1Score", "tests", "Base", "Thing"]
'''
    found = package_reexports(source, "evidently.x")
    assert found == Reexports(
        names={
            "Accuracy": ("evidently.x.metrics", "Accuracy"),
            "F1Score": ("evidently.x.metrics", "F1"),
            "tests": ("evidently.x.tests", None),
            "Base": ("evidently.core.base", "Base"),
            "Thing": ("evidently.x.y", "Thing"),
        },
        all=["Accuracy", "F1Score", "tests", "Base", "Thing"],
        doc="A package.",
    )


@pytest.mark.parametrize(
    "source",
    [
        "from .metrics import *\n",
        "import os\n",
        "from .metrics import Accuracy\nregister(Accuracy)\n",
        "from .metrics import Accuracy\nDEFAULT = Accuracy()\n",
        "try:\n    from .metrics import Accuracy\nexcept ImportError:\n    pass\n",
    ],
)
def test_an_initialiser_that_does_more_than_re_export_is_left_alone(source: str) -> None:
    assert package_reexports(source, "evidently.x") is None


@pytest.fixture
def toy_package(tmp_path: Path) -> Iterator[str]:
    """A package whose initialiser re-exports from a module that records its import,
    with a subpackage that is not lazy and one that is kept eager; the finder in place
    for it alone, and everything gone afterwards."""
    root = tmp_path / "toy_reexporting"
    (root / "plain").mkdir(parents=True)
    (root / "kept").mkdir()
    (root / "__init__.py").write_text(
        '"""Toy."""\nfrom .heavy import Heavy\nfrom . import plain\n__all__ = ["Heavy"]\n'
    )
    (root / "heavy.py").write_text(
        "import sys\nsys.modules['toy_reexporting'].imports.append('heavy')\nclass Heavy: ...\n"
    )
    (root / "plain" / "__init__.py").write_text("VALUE = 1 + 1\n")
    (root / "kept" / "__init__.py").write_text("from .parts import PART\n")
    (root / "kept" / "parts.py").write_text("PART = 'part'\n")
    finder = ReexportingPackageFinder("toy_reexporting", frozenset({"toy_reexporting.kept"}))
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    try:
        yield "toy_reexporting"
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.partition(".")[0] == "toy_reexporting"]:
            del sys.modules[name]


def test_a_reexported_name_is_imported_on_first_use(toy_package: str) -> None:
    import importlib

    package = importlib.import_module(toy_package)
    package.imports = []
    assert f"{toy_package}.heavy" not in sys.modules
    assert package.__doc__ == "Toy." and package.__all__ == ["Heavy"]

    from toy_reexporting import Heavy  # type: ignore[import-not-found]

    assert package.imports == ["heavy"]
    assert Heavy is sys.modules[f"{toy_package}.heavy"].Heavy
    assert package.Heavy is Heavy and package.imports == ["heavy"]  # once
    assert package.plain.VALUE == 2  # a submodule; its own initialiser ran, as usual
    with pytest.raises(AttributeError, match="has no attribute 'Missing'"):
        _ = package.Missing


def test_a_package_kept_eager_runs_its_initialiser(toy_package: str) -> None:
    import importlib

    kept = importlib.import_module(f"{toy_package}.kept")
    assert kept.PART == "part" and f"{toy_package}.kept.parts" in sys.modules
