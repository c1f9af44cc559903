"""End-to-end tests of the training pipeline (src/pipelines/training.py).

Most tests read one shared run (`training_run`, small settings); the others start their
own runs: the accuracy threshold, a second dataset with its own config, and bad input.
"""

from __future__ import annotations

import base64
import json
import re
import time
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from support.flows import (
    TRAINING_PARAMETERS,
    FlowRequest,
    FlowResult,
    card_text,
    predict_in_fresh_process,
    run_cli,
)
from support.paths import LOCAL_CONFIG, PENGUINS_CSV, TRAINING_FLOW
from support.ports import free_port
from support.state import ensure_experiment

from common.config import load_project_configuration

FOLDS = TRAINING_PARAMETERS["folds"]
CLASSES = ["Adelie", "Chinstrap", "Gentoo"]

TYPICAL_PENGUINS = [
    {
        "island": "Torgersen",
        "culmen_length_mm": 39.1,
        "culmen_depth_mm": 18.7,
        "flipper_length_mm": 181.0,
        "body_mass_g": 3750.0,
        "sex": "MALE",
    },
    {
        "island": "Biscoe",
        "culmen_length_mm": 47.5,
        "culmen_depth_mm": 15.0,
        "flipper_length_mm": 217.0,
        "body_mass_g": 5200.0,
        "sex": "MALE",
    },
    {
        "island": "Dream",
        "culmen_length_mm": 49.5,
        "culmen_depth_mm": 19.0,
        "flipper_length_mm": 200.0,
        "body_mass_g": 3800.0,
        "sex": "MALE",
    },
]
TYPICAL_SPECIES = ["Adelie", "Gentoo", "Chinstrap"]
# The same penguins as the CSV writes them: whole millimetres and grams are integers.
INTEGER_COLUMNS = ("flipper_length_mm", "body_mass_g")
TYPICAL_PENGUINS_WITH_INTEGERS = [
    {**row, **{column: int(row[column]) for column in INTEGER_COLUMNS}} for row in TYPICAL_PENGUINS
]


def task(run: Any, step: str) -> Any:
    return run[step].task


def foreach_tasks(run: Any, step: str) -> list[Any]:
    """The tasks of a foreach step, ordered by fold."""
    return sorted(run[step].tasks(), key=lambda t: t["fold"].data)


def registered_versions(client: Any) -> dict[str, set[str]]:
    """Every registered model and its versions."""
    return {
        model.name: {str(v.version) for v in client.search_model_versions(f"name = '{model.name}'")}
        for model in client.search_registered_models()
    }


# --- the shared run: steps and artifacts --------------------------------------------------


def test_run_succeeds_with_every_step(training_run: Any) -> None:
    assert training_run.successful and training_run.finished
    assert {step.id for step in training_run} == {
        "start",
        "cross_validation",
        "transform_fold",
        "train_fold",
        "evaluate_fold",
        "average_scores",
        "transform",
        "train",
        "register",
        "end",
    }


def test_start_artifacts(training_run: Any) -> None:
    start = task(training_run, "start")
    config = load_project_configuration(LOCAL_CONFIG)["dataset"]
    assert isinstance(start["mlflow_run_id"].data, str) and start["mlflow_run_id"].data
    assert start["mode"].data == "development"
    data = start["data"].data
    assert isinstance(data, pd.DataFrame)
    assert set(data.columns) == {
        config["target"],
        *config["numeric_features"],
        *config["categorical_features"],
    }
    assert len(data) == len(pd.read_csv(PENGUINS_CSV))
    assert sorted(data["species"].unique()) == CLASSES


def test_cross_validation_folds_partition_the_rows(training_run: Any) -> None:
    folds = task(training_run, "cross_validation")["folds"].data
    rows = len(task(training_run, "start")["data"].data)
    assert isinstance(folds, list) and len(folds) == FOLDS
    tested = []
    for index, (fold, (train_indices, test_indices)) in enumerate(folds):
        assert fold == index
        assert not set(train_indices) & set(test_indices)
        assert set(train_indices) | set(test_indices) == set(range(rows))
        tested.extend(test_indices)
    assert sorted(tested) == list(range(rows))


def test_transform_fold_tasks(training_run: Any) -> None:
    folds = dict(task(training_run, "cross_validation")["folds"].data)
    tasks = foreach_tasks(training_run, "transform_fold")
    assert [t["fold"].data for t in tasks] == list(range(FOLDS))
    for t in tasks:
        train_indices, test_indices = folds[t["fold"].data]
        np.testing.assert_array_equal(t["train_indices"].data, train_indices)
        np.testing.assert_array_equal(t["test_indices"].data, test_indices)
        x_train, y_train = t["x_train"].data, t["y_train"].data
        x_test, y_test = t["x_test"].data, t["y_test"].data
        assert x_train.shape[0] == len(y_train) == len(train_indices)
        assert x_test.shape[0] == len(y_test) == len(test_indices)
        assert x_train.shape[1] == x_test.shape[1]
        assert not np.isnan(x_train).any() and not np.isnan(x_test).any()
        assert set(np.unique(y_train)) <= set(range(len(CLASSES)))
        # As the target transformer returns them, like the reference course's artifacts.
        assert y_train.shape == (len(train_indices), 1)
        assert y_test.shape == (len(test_indices), 1)


def test_fold_transforms_are_what_scikit_learn_fits_on_the_fold(training_run: Any) -> None:
    """The folds fit their transform with numpy; it must be scikit-learn's, value for value."""
    from common.data import DatasetSchema
    from model_training.preprocessing import (
        fit_features_transformer,
        fit_target_transformer,
        transform,
    )

    data = task(training_run, "start")["data"].data
    config = load_project_configuration(LOCAL_CONFIG)
    schema = DatasetSchema.from_config(config["dataset"])
    for t in foreach_tasks(training_run, "transform_fold"):
        train, test = data.iloc[t["train_indices"].data], data.iloc[t["test_indices"].data]
        features = fit_features_transformer(train, schema)
        target = fit_target_transformer(data, schema)
        for rows, x, y in ((train, "x_train", "y_train"), (test, "x_test", "y_test")):
            expected_x, expected_y = transform(rows, schema, features, target)
            np.testing.assert_allclose(t[x].data, expected_x, atol=1e-6)
            np.testing.assert_array_equal(t[y].data, expected_y)
        assert t["class_names"].data == CLASSES


def test_train_fold_tasks(training_run: Any) -> None:
    tasks = foreach_tasks(training_run, "train_fold")
    assert len(tasks) == FOLDS
    run_ids = [t["mlflow_fold_run_id"].data for t in tasks]
    assert all(isinstance(run_id, str) and run_id for run_id in run_ids)
    assert len(set(run_ids)) == FOLDS
    assert all("model" in t for t in tasks)
    for t in tasks:
        # Plain numpy, so evaluate_fold scores without importing Keras.
        weights = t["weights"].data
        assert [name for *_, name in weights] == ["relu", "relu", "softmax"]
        assert all(type(kernel) is np.ndarray for kernel, _, _ in weights)


def test_evaluate_fold_scores_are_floats(training_run: Any) -> None:
    tasks = foreach_tasks(training_run, "evaluate_fold")
    assert len(tasks) == FOLDS
    for t in tasks:
        accuracy, loss = t["test_accuracy"].data, t["test_loss"].data
        assert type(accuracy) is float and 0.0 <= accuracy <= 1.0
        assert type(loss) is float and loss >= 0.0


def test_average_scores(training_run: Any) -> None:
    average = task(training_run, "average_scores")
    folds = foreach_tasks(training_run, "evaluate_fold")
    accuracies = [t["test_accuracy"].data for t in folds]
    losses = [t["test_loss"].data for t in folds]
    assert average["test_accuracy"].data == pytest.approx(np.mean(accuracies))
    assert average["test_accuracy_std"].data == pytest.approx(np.std(accuracies))
    assert average["test_loss"].data == pytest.approx(np.mean(losses))
    assert average["test_loss_std"].data == pytest.approx(np.std(losses))
    for name in ("test_accuracy", "test_accuracy_std", "test_loss", "test_loss_std"):
        assert type(average[name].data) is float, name


def test_transform_artifacts(training_run: Any) -> None:
    transform = task(training_run, "transform")
    data = task(training_run, "start")["data"].data
    config = load_project_configuration(LOCAL_CONFIG)["dataset"]
    features = transform["features_transformer"].data
    target = transform["target_transformer"].data
    assert list(features.feature_names_in_) == [
        *config["numeric_features"],
        *config["categorical_features"],
    ]
    assert list(target.categories_[0]) == CLASSES
    x, y = transform["x"].data, transform["y"].data
    assert x.shape[0] == len(y) == len(data)
    assert y.shape == (len(data), 1)
    np.testing.assert_array_equal(features.transform(data).astype("float32"), x)


def test_train_produces_a_model_for_every_class(training_run: Any) -> None:
    from common.keras_runtime import import_keras

    keras = import_keras()
    model = task(training_run, "train")["model"].data
    x = task(training_run, "transform")["x"].data
    assert isinstance(model, keras.Model)
    probabilities = np.asarray(model.predict_on_batch(x[:5]))
    assert probabilities.shape == (5, len(CLASSES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-4)


def test_register_artifacts(training_run: Any) -> None:
    register = task(training_run, "register")
    assert register["registered"].data is True
    assert register["model_version"].data
    assert set(register["artifacts"].data) == {
        "model",
        "features_transformer",
        "target_transformer",
        "forward",  # the Dense weights as numpy: servers load without Keras
        "transform",  # the compiled transformer as JSON: ... and without scikit-learn
        "class_balance",  # the training class shares, for the server's metrics
    }
    code_paths = register["code_paths"].data
    assert code_paths and all(Path(path).exists() for path in code_paths)
    requirements = register["pip_requirements"].data
    assert requirements
    for requirement in requirements:
        name, separator, version = requirement.partition("==")
        assert separator == "==" and name and version, requirement
    assert f"pandas=={metadata.version('pandas')}" in requirements


# --- the shared run: MLflow --------------------------------------------------------------


def test_mlflow_parent_run_has_cross_validation_metrics(
    training_run: Any, mlflow_client: Any
) -> None:
    parent = mlflow_client.get_run(task(training_run, "start")["mlflow_run_id"].data)
    average = task(training_run, "average_scores")
    assert parent.info.run_name == training_run.id
    metrics = parent.data.metrics
    assert metrics["cross_validation_accuracy"] == pytest.approx(average["test_accuracy"].data)
    assert metrics["cross_validation_accuracy_std"] == pytest.approx(
        average["test_accuracy_std"].data
    )
    assert metrics["cross_validation_loss"] == pytest.approx(average["test_loss"].data)
    assert "cross_validation_loss_std" in metrics
    assert parent.data.params["training_epochs"] == str(TRAINING_PARAMETERS["training_epochs"])
    assert parent.data.params["folds"] == str(FOLDS)


def test_mlflow_nested_fold_runs(training_run: Any, mlflow_client: Any) -> None:
    parent = mlflow_client.get_run(task(training_run, "start")["mlflow_run_id"].data)
    children = mlflow_client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    by_name = {run.info.run_name: run for run in children}
    # Numbered from 1, as the logs ("Fold 1: accuracy ...") and the cards number them.
    assert set(by_name) == {f"cross-validation-fold-{fold + 1}" for fold in range(FOLDS)}
    evaluations = foreach_tasks(training_run, "evaluate_fold")
    trainings = foreach_tasks(training_run, "train_fold")
    for fold in range(FOLDS):
        run = by_name[f"cross-validation-fold-{fold + 1}"]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_id == trainings[fold]["mlflow_fold_run_id"].data
        metrics = run.data.metrics
        assert metrics["test_accuracy"] == pytest.approx(evaluations[fold]["test_accuracy"].data)
        assert metrics["test_loss"] == pytest.approx(evaluations[fold]["test_loss"].data)


def test_registered_model_version_comes_from_the_run(training_run: Any, mlflow_client: Any) -> None:
    version = task(training_run, "register")["model_version"].data
    model_version = mlflow_client.get_model_version("penguins", version)
    assert model_version.run_id == task(training_run, "start")["mlflow_run_id"].data


def test_run_records_its_training_dataset(training_run: Any, mlflow_client: Any) -> None:
    parent = mlflow_client.get_run(task(training_run, "start")["mlflow_run_id"].data)
    inputs = parent.inputs.dataset_inputs
    assert inputs, "the run logged no dataset input"
    dataset = inputs[0].dataset
    assert dataset.name == "training"
    assert dataset.digest


def test_evaluation_scores_what_the_fold_model_predicts(training_run: Any) -> None:
    """evaluate_fold's numpy forward pass gives the Keras model's own probabilities."""
    from common.keras_runtime import import_keras
    from inference.forward import dense_forward

    import_keras()
    for evaluation, training, transformed in zip(
        foreach_tasks(training_run, "evaluate_fold"),
        foreach_tasks(training_run, "train_fold"),
        foreach_tasks(training_run, "transform_fold"),
        strict=True,
    ):
        x_test = transformed["x_test"].data
        keras_probabilities = np.asarray(training["model"].data.predict_on_batch(x_test))
        probabilities = dense_forward(training["weights"].data)(x_test)
        np.testing.assert_allclose(probabilities, keras_probabilities, atol=1e-5)
        np.testing.assert_array_equal(
            evaluation["test_predictions"].data, probabilities.argmax(axis=1)
        )


def test_registered_pyfunc_gives_the_pipelines_evaluation_probabilities(
    training_run: Any,
) -> None:
    """The served model and the pipeline's evaluation agree on the same rows."""
    from common.keras_runtime import import_keras
    from inference.forward import dense_forward, dense_weights

    import_keras()
    version = task(training_run, "register")["model_version"].data
    rows = task(training_run, "start")["data"].data.head(40)
    transform = task(training_run, "transform")
    features = list(transform["features_transformer"].data.feature_names_in_)
    x = transform["features_transformer"].data.transform(rows[features]).astype("float32")
    probabilities = dense_forward(dense_weights(task(training_run, "train")["model"].data))(x)

    served = predict_in_fresh_process(
        f"models:/penguins/{version}",
        {"rows": json.loads(rows[features].to_json(orient="records"))},
    )["rows"]
    assert "error" not in served, served
    np.testing.assert_allclose(
        [p["confidence"] for p in served], probabilities.max(axis=1), rtol=1e-6
    )
    assert [p["prediction"] for p in served] == [CLASSES[i] for i in probabilities.argmax(axis=1)]


# --- the shared run: challenger and model card ---------------------------------------------


def test_registered_version_is_the_challenger_tagged_with_its_evidence(
    training_run: Any, mlflow_client: Any
) -> None:
    from common.registry import CHALLENGER
    from model_training.model_card import training_data_digest

    version = task(training_run, "register")["model_version"].data
    average = task(training_run, "average_scores")
    data = task(training_run, "start")["data"].data
    assert str(mlflow_client.get_model_version_by_alias("penguins", CHALLENGER).version) == version
    tags = mlflow_client.get_model_version("penguins", version).tags
    assert float(tags["cv_accuracy"]) == pytest.approx(average["test_accuracy"].data)
    assert float(tags["cv_accuracy_std"]) == pytest.approx(average["test_accuracy_std"].data)
    fold_accuracies = [
        t["test_accuracy"].data for t in foreach_tasks(training_run, "evaluate_fold")
    ]
    assert json.loads(tags["cv_fold_accuracies"]) == pytest.approx(fold_accuracies)
    assert int(tags["training_rows"]) == len(data) == len(pd.read_csv(PENGUINS_CSV))
    # Recomputed from the rows in another order: the digest names the rows, not the run.
    assert tags["training_data_digest"] == training_data_digest(data.iloc[::-1])
    assert len(tags["training_data_digest"]) == 64


def test_slices_partition_the_out_of_fold_predictions(training_run: Any) -> None:
    """Each feature's slices hold every row once, and their accuracies add up to the
    accuracy of the out-of-fold predictions (the confusion matrix's diagonal)."""
    average = task(training_run, "average_scores")
    schema = load_project_configuration(LOCAL_CONFIG)["dataset"]
    rows = len(task(training_run, "start")["data"].data)
    confusion = average["cross_validation_confusion"].data
    out_of_fold_accuracy = np.trace(confusion) / confusion.sum()
    slices = average["slice_accuracy"].data
    features = [*schema["categorical_features"], *schema["numeric_features"]]
    assert [s["feature"] for s in slices] == sorted(
        (s["feature"] for s in slices), key=features.index
    )
    for feature in features:
        mine = [s for s in slices if s["feature"] == feature]
        assert sum(s["rows"] for s in mine) == rows, feature
        correct = sum(s["rows"] * s["accuracy"] for s in mine)
        assert correct / rows == pytest.approx(out_of_fold_accuracy), feature
    islands = {s["slice"] for s in slices if s["feature"] == "island"}
    assert islands == {"Biscoe", "Dream", "Torgersen"}
    quartiles = [s["slice"] for s in slices if s["feature"] == "body_mass_g"]
    assert [name[:2] for name in quartiles if name.startswith("Q")] == ["Q1", "Q2", "Q3", "Q4"]


def test_permutation_importance_covers_every_feature(training_run: Any) -> None:
    schema = load_project_configuration(LOCAL_CONFIG)["dataset"]
    features = {*schema["numeric_features"], *schema["categorical_features"]}
    for evaluation in foreach_tasks(training_run, "evaluate_fold"):
        drops = evaluation["permutation_importance"].data
        assert set(drops) == features
        assert all(-1.0 <= d <= 1.0 for fold in drops.values() for d in fold)
    importance = task(training_run, "average_scores")["feature_importance"].data
    assert {row["feature"] for row in importance} == features
    drops = [row["accuracy_drop"] for row in importance]
    assert drops == sorted(drops, reverse=True)
    assert drops[0] > 0, "a model above the threshold relies on some feature"


def test_model_card_is_an_artifact_of_the_versions_run(
    training_run: Any, mlflow_client: Any, tmp_path: Path
) -> None:
    from common.settings import ModelSettings

    register = task(training_run, "register")
    version = register["model_version"].data
    run_id = mlflow_client.get_model_version("penguins", version).run_id
    path = mlflow_client.download_artifacts(run_id, "model_card.md", str(tmp_path))
    text = Path(path).read_text(encoding="utf-8")
    assert text == register["model_card"].data
    tags = mlflow_client.get_model_version("penguins", version).tags
    for expected in (
        f"# Model card: penguins version {version}",
        "## Intended use",
        ModelSettings.intended_use,
        "## Limitations",
        ModelSettings.limitations,
        f"{tags['training_rows']} rows from `data/penguins.csv`",
        tags["training_data_digest"],
        "## Cross-validation",
        "## Accuracy per slice",
        "| island | Torgersen |",
        "| body_mass_g | Q4 (",
        "## Permutation feature importance",
    ):
        assert expected in text, expected
    folds = task(training_run, "average_scores")["fold_scores"].data
    assert [fold["fold"] for fold in folds] == list(range(1, FOLDS + 1))
    for fold in folds:
        assert f"| {fold['fold']} | {fold['accuracy']:.3f} | {fold['loss']:.3f} |" in text


@pytest.fixture(scope="module")
def penguin_predictions(training_run: Any) -> dict[str, Any]:
    """The registered model, loaded in a fresh process, on typical penguins."""
    version = task(training_run, "register")["model_version"].data
    return predict_in_fresh_process(
        f"models:/penguins/{version}",
        {"floats": TYPICAL_PENGUINS, "integers": TYPICAL_PENGUINS_WITH_INTEGERS},
    )


def test_registered_model_predicts_in_a_fresh_process(penguin_predictions) -> None:
    predictions = penguin_predictions["floats"]
    assert "error" not in predictions, predictions
    assert [p["prediction"] for p in predictions] == TYPICAL_SPECIES
    assert all(0.0 <= p["confidence"] <= 1.0 for p in predictions)


def test_registered_model_accepts_integer_measurements(penguin_predictions) -> None:
    """Rows as read from data/penguins.csv (`flipper_length_mm: 181`) must be accepted."""
    predictions = penguin_predictions["integers"]
    assert "error" not in predictions, predictions
    assert [p["prediction"] for p in predictions] == TYPICAL_SPECIES


# --- the shared run: cards -----------------------------------------------------------------


def card_tables(card: Any) -> list[dict[str, Any]]:
    """Every table of a card as its payload has it: {"columns": [...], "data": [[...]]}."""
    payloads = re.findall(r'window\.__MF_DATA__\[[^\]]*\]\s*=\s*"([A-Za-z0-9+/=]+)"', card.get())
    tables: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "table":
                tables.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for payload in payloads:
        walk(json.loads(base64.b64decode(payload)))
    return tables


def test_the_start_card_says_where_the_results_are_and_shows_no_index_column(
    training_run: Any,
) -> None:
    """`card server` opens on the first step's card: it points to the others, and its
    tables have no unnamed pandas index column and every row (not the first five)."""
    from metaflow.cards import get_cards

    (card,) = get_cards(task(training_run, "start"))
    content = card_text(card)
    assert "This run's cards" in content and "`model_card`" in content
    assert "Artifact Name: data" not in content  # the dataset is not dumped row by row
    tables = card_tables(card)
    assert [table["columns"] for table in tables] == [
        ["species", "rows"],
        ["column", "missing values"],
    ]
    data = task(training_run, "start")["data"].data
    assert len(tables[1]["data"]) == data.shape[1]
    assert {row[0] for row in tables[1]["data"]} == set(data.columns)


@pytest.mark.parametrize(
    ("step", "texts"),
    [
        ("start", ["Dataset", "Class balance", "Missing values"]),
        ("average_scores", ["Cross-validation", "Confusion matrix"]),
        ("train", ["Training curves"]),
        ("register", ["Model card", "Accuracy per slice", "Permutation feature importance"]),
    ],
)
def test_cards(training_run: Any, step: str, texts: list[str]) -> None:
    from metaflow.cards import get_cards

    cards = get_cards(task(training_run, step))
    assert len(cards) >= 1
    content = "".join(card_text(card) for card in cards)
    for text in texts:
        assert text in content, f"{text!r} is not in the {step} card"
    if step == "train":
        # The curves are an SVG image: one line per panel, a point per epoch.
        charts = re.findall(r"data:image/svg\+xml;base64,\s*([A-Za-z0-9+/=]+)", content)
        assert charts, "the train card has no chart"
        svg = base64.b64decode(charts[0]).decode()
        lines = re.findall(r'<polyline points="([^"]+)"', svg)
        epochs = TRAINING_PARAMETERS["training_epochs"]
        assert [len(points.split()) for points in lines] == [epochs, epochs]


def test_the_train_card_shows_its_chart_in_a_browser(
    training_run: Any, chromium: str, tmp_path: Path
) -> None:
    """Metaflow's card page draws the SVG: after its scripts ran, the chart is an
    image the browser decoded (a size of 0 x 0 is an image it could not read)."""
    from metaflow.cards import get_cards
    from support.browser import decoded_image_sizes

    (card,) = get_cards(task(training_run, "train"))
    dom, sizes = decoded_image_sizes(chromium, card.get(), tmp_path, "train-card")
    assert re.search(r'<img[^>]+src="data:image/svg\+xml;base64,', dom), dom[:2000]
    assert "920x300" in sizes, (sizes, dom[:2000])


# --- the accuracy threshold ---------------------------------------------------------------


def test_threshold_not_reached_registers_nothing(side_runs: SimpleNamespace, mlflow_client) -> None:
    result = side_runs.threshold
    assert result.successful, result.describe()
    accuracy = task(result.run, "average_scores")["test_accuracy"].data
    assert accuracy < 1.0, "one epoch should not reach perfect accuracy"
    register = task(result.run, "register")
    assert register["registered"].data is False
    assert register["model_version"].data is None
    assert "Not registering" in result.output
    assert "**Not registered**" in register["model_card"].data
    # The registry gained no version, from this run or otherwise.
    assert registered_versions(mlflow_client)["penguins"] == side_runs.penguins_versions_before
    parent = task(result.run, "start")["mlflow_run_id"].data
    assert not [v for v in mlflow_client.search_model_versions("") if v.run_id == parent]


def test_default_threshold_registers(training_run: Any, mlflow_client) -> None:
    register = task(training_run, "register")
    average = task(training_run, "average_scores")
    assert average["test_accuracy"].data >= 0.7
    assert register["registered"].data is True
    assert register["model_version"].data in registered_versions(mlflow_client)["penguins"]


# --- a second dataset with its own configuration --------------------------------------------

COLORS_CONFIG = """\
# A dataset that has nothing to do with penguins.
project: colors

backend:
  module: backend.Local

dataset:
  target: color
  numeric_features: [brightness, saturation]
  categorical_features: [shape]
  extraneous_values:
    shape: ["?"]

model:
  name: colors
  intended_use: Name the color of a sample from its brightness and saturation.
  limitations: Only red, green and blue; shapes are unreliable.
"""

COLOR_CENTERS = {
    "red": (0.2, 0.9, "circle"),
    "green": (0.8, 0.9, "square"),
    "blue": (0.5, 0.2, "triangle"),
}


def make_colors_dataset(path: Path, rows_per_class: int = 50) -> None:
    """Three well-separated classes; columns in another order, plus an unused one."""
    rng = np.random.default_rng(7)
    shapes = [shape for *_, shape in COLOR_CENTERS.values()]
    records = []
    for color, (brightness, saturation, shape) in COLOR_CENTERS.items():
        for _ in range(rows_per_class):
            records.append(
                {
                    "note": f"sample of {color}",
                    "shape": shape if rng.random() < 0.8 else str(rng.choice(shapes)),
                    "saturation": round(rng.normal(saturation, 0.04), 3),
                    "color": color,
                    "brightness": round(rng.normal(brightness, 0.04), 3),
                }
            )
    data = pd.DataFrame(records)
    data.loc[rng.choice(len(data), 6, replace=False), "shape"] = "?"
    data.to_csv(path, index=False)


@pytest.fixture(scope="module")
def side_runs(
    flows_runner, training_run: Any, mlflow_client, tmp_path_factory: pytest.TempPathFactory
) -> SimpleNamespace:
    """The threshold run and the second-dataset run, started together to share the cores.

    Both start after the shared run, whose registered version must survive them.
    """
    directory = tmp_path_factory.mktemp("colors")
    make_colors_dataset(directory / "colors.csv")
    (directory / "colors.yml").write_text(COLORS_CONFIG, encoding="utf-8")
    ensure_experiment("colors")
    before = registered_versions(mlflow_client)["penguins"]
    results = flows_runner(
        {
            "threshold": FlowRequest(
                TRAINING_FLOW, {"accuracy_threshold": 1.0, "training_epochs": 1, "folds": 2}
            ),
            "colors": FlowRequest(
                TRAINING_FLOW,
                {"dataset": str(directory / "colors.csv"), "training_epochs": 40, "folds": 2},
                config=directory / "colors.yml",
            ),
        }
    )
    return SimpleNamespace(penguins_versions_before=before, **results)


@pytest.fixture(scope="module")
def colors_run(side_runs: SimpleNamespace) -> FlowResult:
    assert side_runs.colors.successful, side_runs.colors.describe()
    return side_runs.colors


def test_second_dataset_registers_its_own_model(colors_run: FlowResult, mlflow_client) -> None:
    register = task(colors_run.run, "register")
    assert register["registered"].data is True
    version = mlflow_client.get_model_version("colors", register["model_version"].data)
    assert version.run_id == task(colors_run.run, "start")["mlflow_run_id"].data
    experiment = mlflow_client.get_experiment_by_name("colors")
    assert mlflow_client.get_run(version.run_id).info.experiment_id == experiment.experiment_id
    assert any(tag == "project:colors" for tag in colors_run.run.system_tags)
    data = task(colors_run.run, "start")["data"].data
    assert set(data.columns) == {"color", "brightness", "saturation", "shape"}
    assert "?" not in set(data["shape"].dropna())


def test_second_dataset_model_card_has_its_configured_text_and_features(
    colors_run: FlowResult, mlflow_client, tmp_path: Path
) -> None:
    from common.registry import CHALLENGER

    version = task(colors_run.run, "register")["model_version"].data
    assert str(mlflow_client.get_model_version_by_alias("colors", CHALLENGER).version) == version
    run_id = mlflow_client.get_model_version("colors", version).run_id
    text = Path(mlflow_client.download_artifacts(run_id, "model_card.md", str(tmp_path)))
    card = text.read_text(encoding="utf-8")
    assert f"# Model card: colors version {version}" in card
    assert "Name the color of a sample from its brightness and saturation." in card
    assert "Only red, green and blue; shapes are unreliable." in card
    for row in ("| shape | circle |", "| brightness | Q1 [", "| saturation | Q4 ("):
        assert row in card, row
    assert "| culmen" not in card and "island" not in card


def test_second_dataset_model_predicts_in_a_fresh_process(colors_run: FlowResult) -> None:
    version = task(colors_run.run, "register")["model_version"].data
    rows = [
        {"brightness": b, "saturation": s, "shape": shape} for b, s, shape in COLOR_CENTERS.values()
    ]
    predictions = predict_in_fresh_process(f"models:/colors/{version}", {"rows": rows})["rows"]
    assert "error" not in predictions, predictions
    assert [p["prediction"] for p in predictions] == list(COLOR_CENTERS)
    assert all(0.0 <= p["confidence"] <= 1.0 for p in predictions)


# --- bad input: every one fails the run, with a message saying what is wrong ---------------


def csv_without_flipper_length(directory: Path) -> Path:
    path = directory / "no-flippers.csv"
    pd.read_csv(PENGUINS_CSV).drop(columns=["flipper_length_mm"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "missing-dataset",
        "missing-column",
        "unknown-backend",
        "threshold-above-one",
        "keras-backend-not-installed",
    ],
)
def test_bad_input_fails_the_run_at_start(
    case: str, flow_runner, training_run: Any, mlflow_client: Any, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-dataset.csv"
    parameters, expected = {
        "missing-dataset": ({"dataset": str(missing)}, [str(missing), "not found"]),
        "missing-column": (
            {"dataset": str(csv_without_flipper_length(tmp_path))},
            ["flipper_length_mm", "lacks the configured column"],
        ),
        "unknown-backend": ({"backend": "backend.Nope"}, ["'backend.Nope'", "Valid backends"]),
        "threshold-above-one": (
            {"accuracy_threshold": 1.01},
            ["--accuracy-threshold must be between 0 and 1"],
        ),
        "keras-backend-not-installed": (
            {},
            ["KERAS_BACKEND=tensorflow", "'tensorflow' package, which is not installed"],
        ),
    }[case]
    env = {"KERAS_BACKEND": "tensorflow"} if case == "keras-backend-not-installed" else None
    before = registered_versions(mlflow_client)

    result = flow_runner(TRAINING_FLOW, parameters, env=env)

    assert result.status == "failed" and result.returncode != 0, result.describe()
    assert not result.run.successful
    assert not result.run["start"].task.successful
    assert {step.id for step in result.run} == {"start"}, "work ran after a failed start"
    for text in expected:
        assert text in result.output, f"{text!r} not in the output:\n{result.describe()}"
    assert registered_versions(mlflow_client) == before


def test_unreachable_tracking_server_fails_within_seconds(
    flow_runner, training_run: Any, mlflow_client: Any
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    before = registered_versions(mlflow_client)
    started = time.monotonic()

    result = flow_runner(TRAINING_FLOW, {"mlflow_tracking_uri": uri}, timeout=180)

    elapsed = time.monotonic() - started
    assert result.status == "failed" and result.returncode != 0, result.describe()
    assert not result.run["start"].task.successful
    assert uri in result.output and "not reachable" in result.output, result.describe()
    # Process start-up and imports included; MLflow's own retries would take minutes.
    assert elapsed < 60, f"took {elapsed:.0f} s to fail"
    assert registered_versions(mlflow_client) == before


def wrong_type_config() -> str:
    """config/local.yml with `dataset.numeric_features: "abc"`."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    config["dataset"]["numeric_features"] = "abc"
    return yaml.safe_dump(config)


BAD_CONFIGS = {
    "unparseable": (
        "project: penguins\ndataset: [unclosed\n  target: species\n",
        ["Project configuration error", "not valid YAML", "line 2"],
    ),
    "wrong-type": (
        wrong_type_config(),
        ["Project configuration error", "dataset.numeric_features", "must be a list", "'abc'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_task(
    case: str, flow_runner, training_run: Any, mlflow_client: Any, tmp_path: Path
) -> None:
    from metaflow.exception import MetaflowException

    text, expected = BAD_CONFIGS[case]
    config = tmp_path / f"{case}.yml"
    config.write_text(text, encoding="utf-8")
    before = registered_versions(mlflow_client)

    # As a user runs it: the command fails, saying what is wrong, before any task.
    process = run_cli(TRAINING_FLOW, "--config", "project", str(config), "run", timeout=120)
    assert process.returncode != 0
    output = process.stdout + process.stderr
    for message in expected:
        assert message in output, f"{message!r} not in:\n{output[-4000:]}"
    assert "Task is starting" not in output

    # Through metaflow.Runner the configuration is parsed in the calling process: the
    # same error is raised there, and no run starts.
    with pytest.raises(MetaflowException) as raised:
        flow_runner(TRAINING_FLOW, config=config)
    assert raised.value.headline == "Project configuration error"
    for message in expected[1:]:
        assert message in str(raised.value)

    assert registered_versions(mlflow_client) == before
