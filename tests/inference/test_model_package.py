"""A registered model carries the model server's code, and only that.

src/inference/ is what the training pipeline ships as the model's `code_paths`, so it
must hold exactly what the model server imports: nothing to deploy with (backends,
SageMaker, AWS, the local server manager), and nothing it cannot run without. The
model is loaded in a fresh process whose `sys.path` holds no part of the project but
the model's own code directory, as on a machine (or a SageMaker container) that has
only the registered model.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[2] / "src"
PROJECT_PACKAGES = ("common", "backends", "inference", "pipelines")
# Module names and imports that belong to deployment, not to serving.
DEPLOYMENT_MODULES = {"backend", "backends", "base", "local", "local_server", "sagemaker", "aws"}
DEPLOYMENT_IMPORTS = {"backends", "boto3", "botocore", "sagemaker", "common", "pipelines"}
ROWS = [
    {
        "island": "Biscoe", "culmen_length_mm": 48.6, "culmen_depth_mm": 16.0,
        "flipper_length_mm": 230.0, "body_mass_g": 5800.0, "sex": "MALE",
    },
    {"island": "Torgersen", "culmen_length_mm": 39.1, "sex": None},
]  # fmt: skip

# Runs in the fresh process: drop the project from sys.path (the editable install puts
# src/ there), show nothing of it is importable, load and predict, report what loaded.
CHILD = """
import importlib.util, json, sys
from pathlib import Path

src, model_dir, rows = Path(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
sys.path[:] = [p for p in sys.path if not Path(p or ".").resolve().is_relative_to(src)]
packages = ("common", "backends", "inference", "pipelines")
importable = [name for name in packages if importlib.util.find_spec(name) is not None]

import mlflow.pyfunc
import pandas as pd

model = mlflow.pyfunc.load_model(model_dir)
answer = model.predict(pd.DataFrame(rows))
loaded = {
    name: getattr(module, "__file__", None)
    for name, module in sys.modules.items()
    if name.split(".")[0] in packages
}
print("RESULT" + json.dumps({
    "importable_before_load": importable,
    "loaded": loaded,
    "predictions": json.loads(answer.to_json(orient="records")),
    "keras_imported": "keras" in sys.modules or "jax" in sys.modules,
    "sklearn_imported": "sklearn" in sys.modules,
}))
"""

# The pipelines' in-process path (batch scoring, the deployment comparison), run from
# the model's code directory: `inference.scorer` alone, without MLflow.
SCORER_CHILD = """
import json, sys
code, model_dir, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, code)
import pandas as pd
from inference.scorer import load_scorer

scorer = load_scorer(model_dir)
predictions, confidences = scorer.score(scorer.features.validate(pd.DataFrame(rows)))
heavy = ("mlflow", "sklearn", "scipy", "keras", "jax")
print("RESULT" + json.dumps({
    "predictions": predictions,
    "imported": sorted(name for name in heavy if name in sys.modules),
}))
"""


def download(models: Any, directory: Path) -> Path:
    import mlflow

    uri = models.uri(models.good[0])
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(directory)))


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_models_code_directory_holds_no_deployment_code(
    serving_models: Any, tmp_path: Path
) -> None:
    code = download(serving_models, tmp_path / "model") / "code"
    modules = sorted(code.rglob("*.py"))
    assert modules, f"no code shipped with the model under {code}"
    assert {path.relative_to(code).parts[0] for path in modules} == {"inference"}
    for path in modules:
        assert path.stem not in DEPLOYMENT_MODULES, f"deployment module shipped: {path}"
        assert not imported_modules(path) & DEPLOYMENT_IMPORTS, path
    # The shipped package is src/inference as it is, file for file.
    shipped = {path.relative_to(code / "inference").as_posix() for path in modules}
    assert shipped == {
        path.relative_to(SRC / "inference").as_posix() for path in (SRC / "inference").rglob("*.py")
    }


def test_a_registered_model_predicts_with_nothing_of_the_project_but_its_code(
    serving_models: Any, tmp_path: Path
) -> None:
    model_dir = download(serving_models, tmp_path / "model")
    code = (model_dir / "code").resolve()
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "SERVING_CAPTURE_DATABASE", "MLFLOW_TRACKING_URI"}
    }
    environment["KERAS_BACKEND"] = "jax"
    process = subprocess.run(
        [sys.executable, "-c", CHILD, str(SRC), str(model_dir), json.dumps(ROWS)],
        cwd=workdir, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(row for row in process.stdout.splitlines() if row.startswith("RESULT"))
    result = json.loads(line.removeprefix("RESULT"))

    # Before loading, no part of the project could be imported...
    assert result["importable_before_load"] == []
    # ...after, only the model's own `inference` package was, from its code directory,
    # and every module of it was imported: it holds nothing the server does not use.
    loaded = result["loaded"]
    assert {name.split(".")[0] for name in loaded} == {"inference"}, loaded
    for name, file in loaded.items():
        assert file is not None and Path(file).resolve().is_relative_to(code), (name, file)
    shipped = {
        ".".join(path.relative_to(code).with_suffix("").parts).removesuffix(".__init__")
        for path in code.rglob("*.py")
    }
    # MLflow runs the model file (models from code) from the model's root, not as
    # inference.model: it is the same file.
    assert (model_dir / "model.py").read_bytes() == (code / "inference" / "model.py").read_bytes()
    assert set(loaded) == shipped - {"inference.model"}

    # Its `forward` artifact (numpy weights) spared the server Keras and JAX; its
    # `transform` artifact (the compiled features transformer) spared scikit-learn.
    assert result["keras_imported"] is False
    assert result["sklearn_imported"] is False

    predictions = result["predictions"]
    assert len(predictions) == len(ROWS)
    for row in predictions:
        assert row["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}
        assert 0 < row["confidence"] <= 1
        assert isinstance(row["id"], str) and row["id"]
    assert predictions[0]["prediction"] == "Gentoo"


def test_the_scorer_loads_a_registered_model_without_mlflow_or_scikit_learn(
    serving_models: Any, tmp_path: Path
) -> None:
    model_dir = download(serving_models, tmp_path / "model")
    process = subprocess.run(
        [sys.executable, "-c", SCORER_CHILD, str(model_dir / "code"), str(model_dir),
         json.dumps(ROWS)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(row for row in process.stdout.splitlines() if row.startswith("RESULT"))
    result = json.loads(line.removeprefix("RESULT"))
    assert result["imported"] == []
    assert result["predictions"][0] == "Gentoo"
