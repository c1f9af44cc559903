"""Tests for the served pyfunc in src/inference/model.py, on a tiny real model; and, on
the session's registered models, what a registered model carries: the `inference`
package, and nothing else of the project."""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

from mlflow.exceptions import MlflowException
from support.paths import PENGUINS_CSV
from support.rows import SPARSE_ROW, SPEC_ROW
from support.toy_models import CLASSES, SCHEMA, features_of, save_artifacts, serve, train_toy

from common.registry import download_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    return train_toy(tmp_path_factory.mktemp("artifacts"))


def load(trained: SimpleNamespace, **environment: str):
    """A loaded pyfunc, with exactly the given serving settings in the environment."""
    return serve(trained.paths, **environment)


@pytest.fixture(scope="module")
def pyfunc(trained: SimpleNamespace):
    return load(trained)


def predict(pyfunc, rows) -> pd.DataFrame:
    return pyfunc.predict(None, rows)


def keras_reference(trained: SimpleNamespace, data: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Class names and confidences computed with scikit-learn and Keras directly."""
    x = trained.features.transform(data[list(SCHEMA.features)]).astype("float32")
    probabilities = np.asarray(trained.model.predict_on_batch(x))
    names = np.asarray(CLASSES, dtype=object)[probabilities.argmax(axis=1)]
    return names.tolist(), probabilities.max(axis=1)


def test_artifacts_are_written(trained: SimpleNamespace) -> None:
    assert set(trained.paths) == {"model", "features_transformer", "target_transformer"}
    for path in trained.paths.values():
        assert os.path.getsize(path) > 0
    assert len(trained.history["loss"]) == 3


def test_load_context_reads_classes_and_columns(pyfunc) -> None:
    assert pyfunc.classes.tolist() == CLASSES
    assert pyfunc.features.columns == ["length", "mass", "habitat"]
    assert pyfunc.capture is None


def test_loading_compiles_the_feature_transformer(
    trained: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    # The fitted transformer holds only imputers, a scaler and a one-hot encoder, all of
    # which the numpy fast path supports: loading must not fall back to scikit-learn.
    with caplog.at_level(logging.WARNING, logger="inference.model"):
        load(trained)
    assert "not compiled" not in caplog.text


def test_predict_output_shape_and_values(pyfunc) -> None:
    output = predict(pyfunc, features_of(12, seed=5))

    assert list(output.columns)[:2] == ["prediction", "confidence"]
    assert len(output) == 12
    assert set(output["prediction"]) <= set(CLASSES)
    assert all(isinstance(name, str) for name in output["prediction"])
    assert output["confidence"].between(0, 1).all()
    # A softmax's largest probability is at least 1 / classes.
    assert (output["confidence"] >= 1 / len(CLASSES) - 1e-6).all()


def test_each_prediction_has_a_unique_id(pyfunc) -> None:
    output = predict(pyfunc, features_of(6, seed=5))
    ids = output["id"].tolist()
    assert len(set(ids)) == 6
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)


def test_predict_matches_scikit_learn_and_keras(pyfunc, trained: SimpleNamespace) -> None:
    data = features_of(20, seed=6)
    # Missing values too: the serving path must impute exactly like training did.
    data.loc[[0, 3], "length"] = np.nan
    data.loc[[1, 3], "mass"] = np.nan
    data.loc[[2, 3], "habitat"] = np.nan
    names, confidences = keras_reference(trained, data)

    output = predict(pyfunc, data)
    assert output["prediction"].tolist() == names
    np.testing.assert_allclose(output["confidence"], confidences, rtol=1e-5)


def test_predict_accepts_records_and_any_column_order(pyfunc) -> None:
    data = features_of(5, seed=7)
    expected = predict(pyfunc, data)[["prediction", "confidence"]]
    reordered = predict(pyfunc, data[["habitat", "mass", "length"]])
    records = predict(pyfunc, data.to_dict(orient="records"))
    pd.testing.assert_frame_equal(reordered[["prediction", "confidence"]], expected)
    pd.testing.assert_frame_equal(records[["prediction", "confidence"]], expected)


def test_missing_optional_columns_are_tolerated(pyfunc, trained: SimpleNamespace) -> None:
    output = predict(pyfunc, pd.DataFrame({"length": [0.1, 20.3]}))
    assert len(output) == 2
    assert set(output["prediction"]) <= set(CLASSES)
    assert output["confidence"].between(0, 1).all()
    full = pd.DataFrame({"length": [0.1, 20.3], "mass": [np.nan] * 2, "habitat": [np.nan] * 2})
    assert output["prediction"].tolist() == keras_reference(trained, full)[0]

    only_category = predict(pyfunc, [{"habitat": "forest"}])
    assert len(only_category) == 1
    assert only_category["prediction"].iloc[0] in CLASSES


def test_null_values_are_imputed_like_absent_ones(pyfunc) -> None:
    # JSON `null` reaches the model as None: it must be imputed like NaN or an absent
    # column, as in training, not treated as a category of its own.
    absent = predict(pyfunc, [{"length": 10.0}])
    as_nan = predict(
        pyfunc, pd.DataFrame({"length": [10.0], "mass": [np.nan], "habitat": [np.nan]})
    )
    as_none = predict(pyfunc, [{"length": 10.0, "mass": None, "habitat": None}])
    columns = ["prediction", "confidence"]
    pd.testing.assert_frame_equal(as_nan[columns], absent[columns])
    pd.testing.assert_frame_equal(as_none[columns], absent[columns])


@pytest.mark.parametrize(
    ("rows", "fragments"),
    [
        (
            [{"length": 1.0, "habitat": "forest"}, {"length": 2.0, "habitat": "ocean"}],
            ["Row 1", "'habitat'", "unknown value 'ocean'", "'desert'"],
        ),
        (
            [{"length": 1.0}, {"length": "long"}],
            ["Row 1", "'length'", "expected a number, got 'long'"],
        ),
        ([{"length": float("inf")}], ["Row 0", "'length'", "not a finite number"]),
        ([{"length": 1.0, "colour": "red"}], ["Unknown field(s) ['colour']"]),
    ],
)
def test_invalid_input_is_rejected_naming_row_and_field(
    pyfunc, rows: list[dict], fragments: list[str]
) -> None:
    with pytest.raises(MlflowException) as info:
        predict(pyfunc, rows)
    assert info.value.get_http_status_code() == 400
    for fragment in fragments:
        assert fragment in info.value.message


def test_empty_input_gives_an_empty_frame(pyfunc) -> None:
    for empty in (pd.DataFrame(), pd.DataFrame(columns=["length", "mass", "habitat"]), []):
        output = predict(pyfunc, empty)
        assert isinstance(output, pd.DataFrame)
        assert list(output.columns)[:2] == ["prediction", "confidence"]
        assert len(output) == 0


def test_batch_size_limit(trained: SimpleNamespace) -> None:
    limited = load(trained, SERVING_MAX_BATCH_SIZE="2")
    assert len(predict(limited, features_of(2, seed=8))) == 2
    with pytest.raises(MlflowException, match="Too many rows: 3; the maximum per request is 2"):
        predict(limited, features_of(3, seed=8))


def test_predictions_are_captured_with_their_ids(trained: SimpleNamespace, tmp_path: Path) -> None:
    from inference.capture import CaptureStore

    database = tmp_path / "capture.db"
    capturing = load(trained, SERVING_CAPTURE_DATABASE=str(database), SERVING_MODEL_VERSION="7")
    try:
        output = predict(capturing, features_of(3, seed=9))
    finally:
        capturing.capture.close()

    store = CaptureStore(str(database))
    try:
        rows = store.recent(10)
    finally:
        store.close()
    assert sorted(row[0] for row in rows) == sorted(output["id"])
    by_id = {row[0]: row for row in rows}
    for _, expected in output.iterrows():
        row = by_id[expected["id"]]
        assert row[2] == "7"
        assert row[4] == expected["prediction"]
        assert row[5] == pytest.approx(expected["confidence"])
        assert row[6] is None  # no ground truth yet


def test_predict_is_safe_from_many_threads(trained: SimpleNamespace, tmp_path: Path) -> None:
    """The scoring server calls predict from a thread pool; Keras on JAX alone is not
    thread-safe there (donated buffers: "Array has been deleted")."""
    import threading

    instance = load(trained, SERVING_CAPTURE_DATABASE=str(tmp_path / "threads.db"))
    rows = features_of(3, seed=7)
    expected = predict(instance, rows)["prediction"].tolist()
    failures: list[str] = []
    answers: list[list[str]] = []

    def work() -> None:
        for _ in range(40):
            try:
                answers.append(predict(instance, rows)["prediction"].tolist())
            except Exception as error:  # Collected and asserted below.
                failures.append(repr(error))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(answers) == 8 * 40
    assert all(answer == expected for answer in answers)
    # Counted by SQLite itself: the store has no counting method (it needs none).
    with contextlib.closing(sqlite3.connect(instance.capture.path)) as connection:
        stored = connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    assert stored == 3 + 8 * 40 * 3


def test_forward_pass_matches_keras_for_every_batch_size(trained: SimpleNamespace) -> None:
    from inference.forward import build_forward, locked_forward

    x = trained.features.transform(features_of(37, seed=3)).astype("float32")
    fast = build_forward(trained.model, x[:5])
    reference = locked_forward(trained.model)
    for rows in (1, 2, 3, 8, 17, 37):
        np.testing.assert_allclose(fast(x[:rows]), reference(x[:rows]), atol=1e-5)


def test_dense_forward_matches_keras_for_every_batch_size(trained: SimpleNamespace) -> None:
    from inference.forward import dense_forward, dense_weights

    weights = dense_weights(trained.model)
    assert weights is not None and [name for *_, name in weights] == ["relu", "relu", "softmax"]
    assert all(type(kernel) is np.ndarray for kernel, _, _ in weights)
    forward = dense_forward(weights)
    x = trained.features.transform(features_of(37, seed=4)).astype("float32")
    for rows in (1, 2, 17, 37):
        np.testing.assert_allclose(
            forward(x[:rows]), np.asarray(trained.model.predict_on_batch(x[:rows])), atol=1e-6
        )


def test_the_server_answers_with_the_pipelines_forward_pass(
    pyfunc, trained: SimpleNamespace
) -> None:
    """The served probabilities are exactly what evaluate_fold computes from the weights."""
    from inference.forward import dense_forward, dense_weights

    rows = features_of(25, seed=5)
    x = trained.features.transform(rows).astype("float32")
    evaluation = dense_forward(dense_weights(trained.model))(x)
    served = pyfunc.forward(pyfunc.features.transform(pyfunc.features.validate(rows)))
    np.testing.assert_array_equal(served, evaluation)
    output = predict(pyfunc, rows)
    np.testing.assert_allclose(output["confidence"], evaluation.max(axis=1), rtol=1e-6)
    assert output["prediction"].tolist() == [CLASSES[i] for i in evaluation.argmax(axis=1)]


def test_an_architecture_the_numpy_forward_does_not_know_falls_back_to_keras(
    trained: SimpleNamespace,
) -> None:
    import keras

    from inference.forward import build_forward, dense_weights

    model = keras.Sequential(
        [
            keras.Input(shape=(trained.model.input_shape[1],)),
            keras.layers.Dense(4, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    assert dense_weights(model) is None
    x = trained.features.transform(features_of(9, seed=6)).astype("float32")
    forward = build_forward(model, x[:3])
    np.testing.assert_allclose(forward(x), np.asarray(model.predict_on_batch(x)), atol=1e-5)


def test_load_scorer_answers_as_the_served_model(serving_models, tracking_uri, tmp_path) -> None:
    import mlflow.artifacts
    import mlflow.pyfunc

    from inference.model import load_scorer

    uri = serving_models.uri(serving_models.good[0])
    directory = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(tmp_path), tracking_uri=tracking_uri
    )
    scorer = load_scorer(directory)
    rows = pd.read_csv(PENGUINS_CSV).drop(columns="species").head(40)
    predictions, confidences = scorer.score(scorer.features.validate(rows))
    served = mlflow.pyfunc.load_model(directory).predict(rows)
    assert predictions == served["prediction"].tolist()
    assert confidences == pytest.approx(served["confidence"].tolist())
    assert not hasattr(scorer, "capture")  # in process: nothing is captured


def test_load_scorer_refuses_a_directory_without_a_model(tmp_path) -> None:
    from inference.model import load_scorer

    with pytest.raises(ValueError, match="not a model this project registered"):
        load_scorer(tmp_path)


def test_the_forward_artifact_loads_the_same_model_without_keras(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    from inference.forward import load_dense
    from inference.model import Model

    paths = save_artifacts(
        str(tmp_path), trained.model, trained.features, trained.target, with_forward=True
    )
    assert set(paths) == {"model", "features_transformer", "target_transformer", "forward"}
    instance = Model()
    instance.load_artifacts(paths)
    assert instance.model is None  # no Keras model was loaded
    rows = features_of(50, seed=9)
    names, confidences = keras_reference(trained, rows)
    predictions, scored = instance.score(instance.features.validate(rows))
    assert predictions == names
    assert scored == pytest.approx(confidences.tolist(), abs=1e-5)

    # Weights that no longer reproduce what Keras answered are not trusted.
    with np.load(paths["forward"]) as arrays:
        tampered = dict(arrays)
    tampered["kernel_0"] = tampered["kernel_0"] * 2
    np.savez(paths["forward"], **tampered)
    assert load_dense(paths["forward"]) is None
    fallback = Model()
    fallback.load_artifacts(paths)
    assert fallback.model is not None
    assert fallback.score(fallback.features.validate(rows))[0] == names


def test_a_model_keras_cannot_describe_as_dense_layers_gets_no_forward_artifact(
    tmp_path: Path,
) -> None:
    import keras

    from inference.forward import export_dense

    inputs = keras.Input(shape=(3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    assert export_dense(model, str(tmp_path / "forward.npz")) is False
    assert not (tmp_path / "forward.npz").exists()


def test_the_transform_artifact_loads_the_same_features_without_scikit_learn(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    import json

    from inference.features import load_transform
    from inference.scorer import Scorer

    paths = save_artifacts(
        str(tmp_path), trained.model, trained.features, trained.target, with_forward=True,
        with_transform=True,
    )  # fmt: skip
    assert "transform" in paths
    scorer = Scorer()
    scorer.load_artifacts(paths)
    assert scorer.features.transformer is None  # nothing was unpickled
    assert scorer.classes.tolist() == CLASSES
    rows = features_of(50, seed=10)
    rows.loc[[0, 4], "length"] = np.nan
    rows.loc[[1, 4], "habitat"] = np.nan
    names, confidences = keras_reference(trained, rows)
    predictions, scored = scorer.score(scorer.features.validate(rows))
    assert predictions == names
    assert scored == pytest.approx(confidences.tolist(), abs=1e-5)

    # A description whose recorded rows no longer give the recorded output is not used:
    # the scorer unpickles the transformers instead, and answers the same.
    description = json.loads(Path(paths["transform"]).read_text())
    description["blocks"][0]["mean"][0] += 1.0
    Path(paths["transform"]).write_text(json.dumps(description))
    assert load_transform(paths["transform"]) is None
    fallback = Scorer()
    fallback.load_artifacts(paths)
    assert fallback.features.transformer is not None
    assert fallback.score(fallback.features.validate(rows))[0] == names
    Path(paths["transform"]).write_text("{not json")
    assert load_transform(paths["transform"]) is None


# --- As registered: its own code, and nothing else of the project ----------------------------

SRC = Path(__file__).resolve().parents[2] / "src"
# Module names and imports that belong to deployment, not to serving.
DEPLOYMENT_MODULES = {"backend", "backends", "base", "local", "local_server", "sagemaker", "aws"}
DEPLOYMENT_IMPORTS = {"backends", "boto3", "botocore", "sagemaker", "common", "pipelines"}
REGISTERED_ROWS = [SPEC_ROW, SPARSE_ROW]

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
    code = download_model(serving_models.uri(serving_models.good[0]), tmp_path / "model") / "code"
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
    model_dir = download_model(serving_models.uri(serving_models.good[0]), tmp_path / "model")
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
        [sys.executable, "-c", CHILD, str(SRC), str(model_dir), json.dumps(REGISTERED_ROWS)],
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
    assert len(predictions) == len(REGISTERED_ROWS)
    for row in predictions:
        assert row["prediction"] in {"Adelie", "Chinstrap", "Gentoo"}
        assert 0 < row["confidence"] <= 1
        assert isinstance(row["id"], str) and row["id"]
    assert predictions[0]["prediction"] == "Gentoo"
