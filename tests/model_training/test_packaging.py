"""Tests for model_training.packaging: pinned requirements, the model signature, and
registering a servable model from its artifact files."""

from __future__ import annotations

from importlib import metadata
from typing import Any

from common.data import DatasetSchema
from model_training.packaging import model_signature, pinned_requirements


def test_pinned_requirements_for_jax() -> None:
    requirements = pinned_requirements("jax")
    names = [
        "mlflow", "keras", "scikit-learn", "pandas", "numpy", "prometheus-client", "jax", "jaxlib"
    ]  # fmt: skip
    assert requirements == [f"{name}=={metadata.version(name)}" for name in names]
    for requirement in requirements:
        _, _, version = requirement.partition("==")
        assert version and "==" not in version


def test_pinned_requirements_for_unknown_backend_lists_serving_packages_only() -> None:
    names = [requirement.partition("==")[0] for requirement in pinned_requirements("other")]
    assert names == ["mlflow", "keras", "scikit-learn", "pandas", "numpy", "prometheus-client"]


def test_model_signature_inputs_are_all_optional() -> None:
    schema = DatasetSchema("label", ("width", "height"), ("color",), {})
    signature = model_signature(schema)

    inputs = signature.inputs.inputs
    assert [column.name for column in inputs] == ["width", "height", "color"]
    # Numbers are typed `any` so whole numbers pass MLflow; the model checks values.
    assert [column.to_dict()["type"] for column in inputs] == ["any", "any", "string"]
    assert all(column.required is False for column in inputs)
    assert signature.inputs.required_input_names() == []
    assert "label" not in signature.inputs.input_names()


def test_model_signature_outputs() -> None:
    signature = model_signature(DatasetSchema("y", ("x",), (), {}))
    outputs = {column.name: column.type.name for column in signature.outputs.inputs}
    assert outputs == {"prediction": "string", "confidence": "double"}


SMALL_SCHEMA = DatasetSchema("kind", ("length",), ("habitat",), {})


def train_small_model(seed: int) -> tuple[DatasetSchema, Any, Any, tuple[Any, Any, Any]]:
    """60 rows of two classes a length and a habitat tell apart; a model trained on them.

    Returns the schema, the rows, their transformed features and (model, features
    transformer, target transformer).
    """
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np
    import pandas as pd

    from model_training.network import train_model
    from model_training.preprocessing import fit_transform

    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 2, 60)
    data = pd.DataFrame(
        {
            "length": kind * 10.0 + rng.normal(0, 1, 60),
            "habitat": np.asarray(["dry", "wet"], dtype=object)[kind],
            "kind": np.asarray(["a", "b"], dtype=object)[kind],
        }
    )
    features, target, x, y = fit_transform(data, SMALL_SCHEMA)
    model, _ = train_model(x, y, classes=2, epochs=3, batch_size=16, seed=0)
    return SMALL_SCHEMA, data, x, (model, features, target)


def test_log_servable_model_registers_a_model_that_predicts(tmp_path, monkeypatch) -> None:
    """A real SQLite store; the logged pyfunc loads and answers like the model."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import mlflow
    import numpy as np

    from common.tracking import prepare_tracking_store
    from model_training.packaging import log_servable_model, servable_files

    schema, data, x, (model, features, target) = train_small_model(seed=0)

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("_MLFLOW_SERVER_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    prepare_tracking_store(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    with mlflow.start_run() as run:
        files = servable_files(model, features, target, with_forward=False, with_transform=False)
        logged = log_servable_model(files, schema, "registry-test", input_example=data.head(2))

    assert logged.version == "1"
    assert set(logged.artifacts) == {"model", "features_transformer", "target_transformer"}
    assert all(uri.startswith(logged.model_uri) for uri in logged.artifacts.values())
    assert [os.path.basename(path) for path in logged.code_paths] == ["inference"]
    assert f"pandas=={metadata.version('pandas')}" in logged.pip_requirements
    version = mlflow.MlflowClient().get_model_version("registry-test", "1")
    assert version.run_id == run.info.run_id

    loaded = mlflow.pyfunc.load_model("models:/registry-test/1")
    answer = loaded.predict(data[["length", "habitat"]].head(5))
    probabilities = np.asarray(model.predict_on_batch(x[:5]))
    np.testing.assert_allclose(answer["confidence"], probabilities.max(axis=1), rtol=1e-5)
    assert answer["prediction"].tolist() == [["a", "b"][i] for i in probabilities.argmax(axis=1)]


def test_serving_package_is_found_without_importing_it() -> None:
    import sys

    from model_training.packaging import serving_package

    imported = "inference" in sys.modules
    package = serving_package()
    assert (package / "model.py").is_file() and (package / "forward.py").is_file()
    assert ("inference" in sys.modules) == imported


REGISTER_FROM_FILES = """
import json, pickle, sys
import mlflow
import pandas as pd
from common.data import DatasetSchema
from model_training.packaging import log_servable_model
from common.tracking import prepare_tracking_store

directory = sys.argv[1]
files = pickle.load(open(f"{directory}/files.pkl", "rb"))
rows = pd.read_json(f"{directory}/rows.json")
uri = f"sqlite:///{directory}/mlflow.db"
prepare_tracking_store(uri)
mlflow.set_tracking_uri(uri)
mlflow.set_experiment("registry-files")
with mlflow.start_run():
    logged = log_servable_model(
        files, DatasetSchema("kind", ("length",), ("habitat",), {}), "registry-files",
        input_example=rows.head(2),
    )
loaded = mlflow.pyfunc.load_model(f"models:/registry-files/{logged.version}")
print(json.dumps({
    "version": logged.version,
    "artifacts": sorted(logged.artifacts),
    "heavy": sorted(name for name in ("keras", "jax", "sklearn") if name in sys.modules),
    "predictions": loaded.predict(rows)["prediction"].tolist(),
}))
"""


def test_a_model_registers_from_its_files_without_keras_or_scikit_learn(tmp_path) -> None:
    """What the training pipeline's `register` step does: the files `train` and
    `transform` wrote go to MLflow, validated on an input example and loadable, in a
    process that never imports Keras, JAX or scikit-learn."""
    import json
    import os
    import pickle
    import subprocess
    import sys

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import numpy as np
    from support.paths import REPO_ROOT, SRC

    from model_training.packaging import model_files, transformer_files

    _, data, x, (model, features, target) = train_small_model(seed=1)
    files = {
        **model_files(model),
        **transformer_files(features, target),
    }
    assert set(files) == {
        "model", "forward", "features_transformer", "target_transformer", "transform"
    }  # fmt: skip
    (tmp_path / "files.pkl").write_bytes(pickle.dumps(files))
    data[["length", "habitat"]].head(6).to_json(tmp_path / "rows.json")

    environment = {**os.environ, "PYTHONPATH": str(SRC)}
    environment["_MLFLOW_SERVER_ARTIFACT_ROOT"] = str(tmp_path / "artifacts")
    result = subprocess.run(
        [sys.executable, "-c", REGISTER_FROM_FILES, str(tmp_path)],
        capture_output=True, text=True, env=environment, cwd=REPO_ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["version"] == "1"
    assert outcome["artifacts"] == sorted(files)
    assert outcome["heavy"] == []
    # Nothing misleading in the log: pip is not needed to install the model.
    assert "Failed to resolve installed pip version" not in result.stderr
    probabilities = np.asarray(model.predict_on_batch(x[:6]))
    assert outcome["predictions"] == [["a", "b"][i] for i in probabilities.argmax(axis=1)]


def test_a_servable_model_needs_its_model_and_transformers() -> None:
    import pytest

    from model_training.packaging import log_servable_model

    schema = DatasetSchema("kind", ("length",), (), {})
    with pytest.raises(ValueError, match=r"\['features_transformer', 'target_transformer'\]"):
        log_servable_model({"model": ("model.keras", b"")}, schema, None)
