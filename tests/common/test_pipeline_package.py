"""The code package Metaflow ships to remote tasks holds everything they import and read.

A task on AWS Batch or Kubernetes runs in the extracted package with
`PYTHONPATH=.mf_code`; it has neither this repository's `src/` nor its `data/`. These
tests build the package with the flow's own `package save`, extract it, and run Python
there the way a worker does: `-S` keeps site-packages' editable-install hook (which
would put this repository's `src/` on the path) out, and site-packages goes on
PYTHONPATH only for the third-party libraries an image or `--environment uv` provides.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.flows import run_cli
from support.paths import LOCAL_CONFIG, PENGUINS_CSV, REPO_ROOT, TEMPLATE_FLOW, TRAINING_FLOW

from common.config import load_project_configuration
from common.data import DatasetSchema, load_dataset

SOURCE = REPO_ROOT / "src"


def extracted_package(root: Path, *options: str) -> Path:
    """The training flow's code package, saved with `options` and extracted as a worker does."""
    archive = root / "job.tar"
    saved = run_cli(TRAINING_FLOW, *options, "package", "save", str(archive), timeout=120)
    assert saved.returncode == 0, saved.stderr[-4000:]
    extracted = root / "metaflow"
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    return extracted


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extracted_package(tmp_path_factory.mktemp("code-package"))


def packaged_files(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


def run_on_worker(package: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -S <arguments>` in the extracted package with a worker's import path."""
    site_packages = sysconfig.get_paths()["purelib"]
    environ = {**os.environ, "PYTHONPATH": f"{package / '.mf_code'}{os.pathsep}{site_packages}"}
    return subprocess.run(
        [sys.executable, "-S", *arguments],
        cwd=package,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_package_holds_the_shared_code_and_the_dataset(package: Path) -> None:
    files = packaged_files(package)

    for name in ("common", "backends", "inference"):
        expected = {
            f"{name}/{path.relative_to(SOURCE / name).as_posix()}"
            for path in (SOURCE / name).rglob("*.py")
        }
        assert expected <= files, f"missing from the package: {sorted(expected - files)}"
    assert "data/penguins.csv" in files
    assert "training.py" in files  # The flow file sits at the root, beside the packages.
    assert "README.md" in files  # `--environment uv` builds the project, which needs it.
    assert all(name.endswith(".csv") for name in files if name.startswith("data/"))
    assert (package / "data" / "penguins.csv").read_bytes() == PENGUINS_CSV.read_bytes()


def test_packaged_code_imports_and_reads_the_dataset_without_the_repository(
    package: Path,
) -> None:
    modules = ["common.config", "common.data", "common.pipeline", "backends.local"]
    code = (
        "import importlib, json, sys\n"
        f"modules = {modules!r}\n"
        "files = {name: importlib.import_module(name).__file__ for name in modules}\n"
        "from common.data import DatasetSchema, load_dataset\n"
        "schema = DatasetSchema.from_config(json.loads(sys.argv[1]))\n"
        "data = load_dataset('data/penguins.csv', schema, 42)\n"
        "print('RESULT=' + json.dumps({'files': files, 'rows': len(data)}))\n"
    )
    section = load_project_configuration(LOCAL_CONFIG)["dataset"]

    process = run_on_worker(package, "-c", code, json.dumps(section))

    assert process.returncode == 0, process.stderr[-4000:]
    line = next(x for x in process.stdout.splitlines() if x.startswith("RESULT="))
    result = json.loads(line.removeprefix("RESULT="))
    for name, file in result["files"].items():
        assert Path(file).resolve().is_relative_to(package.resolve()), (name, file)
    local = load_dataset(PENGUINS_CSV, DatasetSchema.from_config(section), 42)
    assert result["rows"] == len(local)


def test_flow_loads_in_the_package_with_the_config_frozen_into_it(package: Path) -> None:
    """What every remote task does first: load the flow and its frozen configuration.

    Argo Workflows and Step Functions tasks find the configuration through this
    variable (see METAFLOW_FLOW_CONFIG_VALUE in their compiled templates).
    """
    process = run_on_worker(
        package,
        "training.py",
        "--no-pylint",
        "show",
        METAFLOW_FLOW_CONFIG_VALUE=json.dumps({"project": "kv.project"}),
    )

    assert process.returncode == 0, process.stderr[-4000:]
    output = process.stdout + process.stderr
    assert "Project: penguins" in output
    assert "Step cross_validation" in output


def test_every_pipeline_subclass_gets_the_same_package() -> None:
    """A flow outside src/pipelines (the tests' template flow) ships the same files."""
    listed = run_cli(TEMPLATE_FLOW, "package", "list", "--archive", timeout=120)

    assert listed.returncode == 0, listed.stderr[-4000:]
    names = set((listed.stdout + listed.stderr).split())
    assert {"template_flow.py", "common/config.py", "backends/base.py"} <= names
    assert "data/penguins.csv" in names


# --- `--environment uv` ---------------------------------------------------------------

# Where the uv environment's bootstrap finds the project's lock (OTHER_CONTENT).
UV_PROJECT_FILES = ("pyproject.toml", "uv.lock")


@pytest.fixture(scope="module")
def uv_package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A `--environment uv` package, synced as `metaflow.plugins.uv.bootstrap` syncs it.

    The worker runs `uv sync --frozen --no-dev --no-install-package metaflow ...` in the
    extracted package; here it runs `--offline`, from the uv cache `uv sync` filled.
    """
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    package = extracted_package(tmp_path_factory.mktemp("uv-package"), "--environment", "uv")
    for name in UV_PROJECT_FILES:
        (package / ".mf_meta" / name).rename(package / name)
    environ = {
        name: value
        for name, value in os.environ.items()
        if name not in {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT"}
    }
    # Metaflow and its extensions come from the package, as the bootstrap arranges.
    skip = ["--no-install-package", "metaflow", "--no-install-package", "metaflow-card-html"]
    # A worker also compiles bytecode (pyproject's `compile-bytecode`) and copies the
    # files; what is checked here needs neither: 37,000 files compiled cost ~40 s of this
    # machine's 2 cores, and a gigabyte copied and deleted another ~20 s.
    synced = subprocess.run(
        [
            uv,
            "sync",
            "--frozen",
            "--no-dev",
            "--offline",
            "--no-compile-bytecode",
            "--link-mode",
            "symlink",
            *skip,
        ],
        cwd=package,
        env=environ,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert synced.returncode == 0, synced.stderr[-4000:]
    yield package
    shutil.rmtree(package / ".venv", ignore_errors=True)  # Over a gigabyte when copied.


@pytest.mark.e2e  # installs the whole lock into a new environment, as a worker does
def test_uv_environment_builds_the_locked_dependencies_beside_the_package(
    uv_package: Path,
) -> None:
    """`uv sync` builds this project on the worker: it needs the README the package holds."""
    packages = ["keras", "mlflow", "evidently", "scikit-learn", "pandas"]
    code = (
        "import importlib, importlib.metadata as metadata, json, sys\n"
        "files = {name: importlib.import_module(name).__file__\n"
        "         for name in ['common.config', 'backends.base', 'metaflow']}\n"
        f"versions = {{name: metadata.version(name) for name in {packages!r}}}\n"
        "print('RESULT=' + json.dumps({'python': sys.executable, 'files': files,\n"
        "                              'versions': versions}))\n"
    )
    environ = {name: value for name, value in os.environ.items() if name not in {"VIRTUAL_ENV"}}
    process = subprocess.run(
        [shutil.which("uv") or "uv", "run", "--no-sync", "python", "-c", code],
        cwd=uv_package,
        env={**environ, "PYTHONPATH": str(uv_package / ".mf_code")},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert process.returncode == 0, process.stderr[-4000:]
    line = next(x for x in process.stdout.splitlines() if x.startswith("RESULT="))
    result = json.loads(line.removeprefix("RESULT="))
    assert Path(result["python"]).is_relative_to(uv_package / ".venv")
    for name, file in result["files"].items():
        assert Path(file).resolve().is_relative_to(uv_package.resolve()), (name, file)
    from importlib import metadata

    assert result["versions"] == {name: metadata.version(name) for name in packages}
