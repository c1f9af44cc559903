"""Tests for model_training.model_card: digest, slices, permutation importance and the Markdown.

The slice and importance tests use the pipeline's own pieces without Keras: the
features transformer, stratified folds, and the server's numpy forward pass over a
softmax regression fitted here by gradient descent.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from common.data import DatasetSchema
from inference.forward import dense_forward
from model_training.cross_validation import stratified_folds
from model_training.model_card import (
    MISSING,
    ModelCard,
    class_balance,
    feature_columns,
    permutation_importance,
    render_markdown,
    slice_accuracy,
    summarize_importance,
    training_data_digest,
    weakest_slice,
)
from model_training.preprocessing import fit_features_transformer, fit_transform, transform

SCHEMA = DatasetSchema(
    target="species",
    numeric_features=("length", "noise"),
    categorical_features=("island",),
    extraneous_values={},
)
SPECIES = ["a", "b", "c"]
ISLANDS = ["North", "South", "West"]


def synthetic_penguins(rows: int, seed: int, shuffled_island: str | None = None) -> pd.DataFrame:
    """Species set by `length` alone (well-separated clusters); `noise` and `island` carry
    nothing, except that on `shuffled_island` the species are shuffled: unpredictable."""
    rng = np.random.default_rng(seed)
    species = rng.choice(SPECIES, rows)
    data = pd.DataFrame(
        {
            "length": np.array([10.0, 20.0, 30.0])[pd.Index(SPECIES).get_indexer(species)]
            + rng.normal(0, 1.5, rows),
            "noise": rng.normal(0, 1, rows),
            "island": rng.choice(ISLANDS, rows).astype(object),
            "species": species.astype(object),
        }
    )
    if shuffled_island:
        on_island = (data["island"] == shuffled_island).to_numpy()
        data.loc[on_island, "species"] = rng.permutation(data.loc[on_island, "species"].to_numpy())
    return data


def fit_softmax(x: np.ndarray, y: np.ndarray, classes: int, steps: int = 300) -> list:
    """A one-layer softmax classifier as `dense_weights` would return it."""
    kernel = np.zeros((x.shape[1], classes), dtype="float32")
    bias = np.zeros(classes, dtype="float32")
    targets = np.eye(classes, dtype="float32")[np.asarray(y).reshape(-1)]
    for _ in range(steps):
        probabilities = dense_forward([(kernel, bias, "softmax")])(x)
        gradient = (probabilities - targets) / len(x)
        kernel -= 1.0 * (x.T @ gradient)
        bias -= 1.0 * gradient.sum(axis=0)
    return [(kernel, bias, "softmax")]


def out_of_fold_correct(data: pd.DataFrame, folds: int = 4) -> np.ndarray:
    """Whether each row is predicted right by the fold model that did not train on it,
    split, transformed and scored as the training pipeline does."""
    correct = np.zeros(len(data), dtype=bool)
    _, target_transformer, _, _ = fit_transform(data, SCHEMA)
    for train_rows, test_rows in stratified_folds(data["species"], folds, seed=3):
        train, test = data.iloc[train_rows], data.iloc[test_rows]
        features = fit_features_transformer(train, SCHEMA)
        x_train, y_train = transform(train, SCHEMA, features, target_transformer)
        x_test, y_test = transform(test, SCHEMA, features, target_transformer)
        forward = dense_forward(fit_softmax(x_train, y_train, len(SPECIES)))
        correct[test_rows] = forward(x_test).argmax(axis=1) == y_test.reshape(-1)
    return correct


# --- training data digest --------------------------------------------------------------------


def test_digest_is_sha256_of_each_column_with_rows_in_one_order() -> None:
    data = pd.DataFrame({"b": [2.5, 1.0, 1.0], "a": ["y", None, "x"]})
    a_codes, b_values = [1, -1, 0], [2.5, 1.0, 1.0]  # a's distinct values: x, y
    candidates = {
        hashlib.sha256(
            b"3 rows\n"
            + b"\ncolumn a\nx\ny\n"
            + np.array([a_codes[i] for i in order], "<i8").tobytes()
            + b"\ncolumn b\n"
            + np.array([b_values[i] for i in order], "<f8").tobytes()
        ).hexdigest()
        for order in itertools.permutations(range(3))
    }
    assert training_data_digest(data) in candidates
    with_nan = pd.DataFrame({"b": [2.5, 1.0, 1.0], "a": ["y", np.nan, "x"]})
    assert training_data_digest(with_nan) == training_data_digest(data), "None, NaN: missing"
    integers, floats = pd.DataFrame({"n": [181, 190]}), pd.DataFrame({"n": [181.0, 190.0]})
    assert training_data_digest(integers) == training_data_digest(floats)


def test_digest_ignores_row_and_column_order_but_not_values() -> None:
    data = synthetic_penguins(50, seed=1)
    digest = training_data_digest(data)
    reordered = data.sample(frac=1.0, random_state=4)[["island", "species", "noise", "length"]]
    assert training_data_digest(reordered) == digest
    changed = data.copy()
    changed.loc[7, "length"] += 1e-9
    assert training_data_digest(changed) != digest
    assert training_data_digest(data.iloc[1:]) != digest
    duplicated = pd.concat([data, data.iloc[[3]]])
    assert training_data_digest(duplicated) != digest
    assert training_data_digest(duplicated.iloc[::-1]) == training_data_digest(duplicated)


def test_class_balance_counts_rows_per_class_largest_first() -> None:
    balance = class_balance(pd.Series(["b", "a", "b", "c", "b", "a"]))
    assert balance == {"b": 3, "a": 2, "c": 1}
    assert list(balance) == ["b", "a", "c"]


# --- accuracy per slice ----------------------------------------------------------------------


def test_the_island_with_shuffled_labels_is_the_weakest_slice() -> None:
    data = synthetic_penguins(360, seed=2, shuffled_island="West")

    slices = slice_accuracy(data, SCHEMA, out_of_fold_correct(data))

    islands = {s["slice"]: s for s in slices if s["feature"] == "island"}
    assert set(islands) == set(ISLANDS)
    assert islands["West"]["accuracy"] < 0.6, islands
    assert islands["North"]["accuracy"] > 0.9 and islands["South"]["accuracy"] > 0.9, islands
    assert weakest_slice(slices) == islands["West"]
    assert sum(s["rows"] for s in islands.values()) == len(data)


def test_slices_cover_each_value_quartile_and_missing_value_with_exact_figures() -> None:
    data = pd.DataFrame(
        {
            "length": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, np.nan],
            "noise": [0.0] * 9,
            "island": ["North", "North", "South", None, "South", "South", "West", "West", "West"],
            "species": ["a"] * 9,
        }
    )
    correct = np.array([1, 0, 1, 1, 1, 0, 0, 0, 1], dtype=bool)

    slices = {
        (s["feature"], s["slice"]): (s["rows"], s["accuracy"])
        for s in slice_accuracy(data, SCHEMA, correct)
    }

    assert slices[("island", "North")] == (2, 0.5)
    assert slices[("island", "South")] == (3, pytest.approx(2 / 3))
    assert slices[("island", "West")] == (3, pytest.approx(1 / 3))
    assert slices[("island", MISSING)] == (1, 1.0)
    # Quartiles of 1..8 are 2.75, 4.5 and 6.25: two values in each quarter.
    assert slices[("length", "Q1 [1, 2.75]")] == (2, 0.5)
    assert slices[("length", "Q2 (2.75, 4.5]")] == (2, 1.0)
    assert slices[("length", "Q3 (4.5, 6.25]")] == (2, 0.5)
    assert slices[("length", "Q4 (6.25, 8]")] == (2, 0.0)
    assert slices[("length", MISSING)] == (1, 1.0)
    # A constant column has one slice, not four empty quartiles.
    assert [key for key in slices if key[0] == "noise"] == [("noise", "[0, 0]")]


def test_slices_refuse_outcomes_that_do_not_match_the_rows() -> None:
    with pytest.raises(ValueError, match="one prediction outcome per row: 2 for 3 rows"):
        slice_accuracy(synthetic_penguins(3, seed=0), SCHEMA, np.array([True, False]))


# --- permutation importance --------------------------------------------------------------


def test_permuting_a_raw_feature_is_permuting_its_transformed_columns() -> None:
    data = synthetic_penguins(80, seed=5)
    transformer = fit_features_transformer(data, SCHEMA)
    columns = feature_columns(transformer, SCHEMA)
    assert columns == {"length": [0], "noise": [1], "island": [2, 3, 4]}
    order = np.random.default_rng(0).permutation(len(data))
    x = transformer.transform(data[SCHEMA.features])
    for feature, group in columns.items():
        permuted = data.copy()
        permuted[feature] = data[feature].to_numpy()[order]
        expected = x.copy()
        expected[:, group] = x[order][:, group]
        np.testing.assert_allclose(transformer.transform(permuted[SCHEMA.features]), expected)


def test_importance_ranks_the_feature_the_labels_depend_on_above_noise() -> None:
    data = synthetic_penguins(300, seed=6)
    transformer, _, x, y = fit_transform(data, SCHEMA)
    columns = feature_columns(transformer, SCHEMA)
    model = dense_forward(fit_softmax(x, y, len(SPECIES)))
    calls = []

    def forward(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        return model(rows)

    importance = permutation_importance(forward, x, y, columns, repeats=4, seed=1)

    assert calls == [len(x) * (len(columns) * 4 + 1)], "all permutations in one forward call"
    assert set(importance) == set(columns) and all(len(d) == 4 for d in importance.values())
    ranked = summarize_importance([importance])
    assert ranked[0]["feature"] == "length"
    by_feature = {row["feature"]: row for row in ranked}
    assert by_feature["length"]["accuracy_drop"] > 0.4
    assert abs(by_feature["noise"]["accuracy_drop"]) < 0.05
    assert abs(by_feature["island"]["accuracy_drop"]) < 0.05


def test_importance_samples_large_inputs_and_combines_folds() -> None:
    x = np.random.default_rng(0).normal(size=(500, 2)).astype("float32")
    y = (x[:, 0] > 0).astype(int)

    def forward(rows: np.ndarray) -> np.ndarray:
        assert len(rows) == 100 * (2 * 3 + 1)
        return np.stack([rows[:, 0] <= 0, rows[:, 0] > 0], axis=1).astype(float)

    importance = permutation_importance(
        forward, x, y, {"signal": [0], "other": [1]}, repeats=3, max_rows=100
    )
    assert importance["other"] == [0.0, 0.0, 0.0]
    assert all(drop > 0.3 for drop in importance["signal"])
    combined = summarize_importance([{"a": [0.1, 0.3], "b": [0.0]}, {"a": [0.2], "b": [0.0]}])
    assert combined[0]["feature"] == "a"
    assert combined[0]["accuracy_drop"] == pytest.approx(0.2)
    assert combined[0]["std"] == pytest.approx(np.std([0.1, 0.3, 0.2]))
    assert combined[1]["accuracy_drop"] == 0.0


# --- the Markdown --------------------------------------------------------------------------


def make_card(version: str | None = "7") -> ModelCard:
    return ModelCard(
        model_name="penguins",
        version=version,
        metaflow_run="Training/123",
        mlflow_run_id="abc123",
        dataset="data/penguins.csv",
        training_rows=9,
        class_balance={"Adelie": 5, "Gentoo": 4},
        training_data_digest="d" * 64,
        folds=[
            {"fold": 0, "accuracy": 0.9, "loss": 0.3, "train": 6, "test": 3},
            {"fold": 1, "accuracy": 0.8, "loss": 0.4, "train": 6, "test": 3},
        ],
        accuracy=0.85,
        accuracy_std=0.05,
        accuracy_threshold=0.7,
        slices=[
            {"feature": "island", "slice": "Biscoe", "rows": 5, "accuracy": 1.0},
            {"feature": "island", "slice": "Dream|x", "rows": 4, "accuracy": 0.25},
        ],
        importance=[
            {"feature": "flipper_length_mm", "accuracy_drop": 0.3, "std": 0.01},
            {"feature": "sex", "accuracy_drop": 0.0, "std": 0.0},
        ],
        intended_use="Tell penguins apart.",
        limitations="Only three islands.",
        created="2026-12-01 12:00 UTC",
    )


def test_the_card_renders_every_section_in_order() -> None:
    text = render_markdown(make_card())
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == [
        "# Model card: penguins version 7",
        "## Intended use",
        "## Limitations",
        "## Training data",
        "### Class balance",
        "## Cross-validation",
        "## Accuracy per slice",
        "## Permutation feature importance",
    ]
    for expected in (
        "Registered as **penguins version 7**",
        "Tell penguins apart.",
        "Only three islands.",
        "9 rows from `data/penguins.csv`",
        "d" * 64,
        "| Adelie | 5 | 55.6% |",
        "Accuracy **0.850** ± 0.050 over 2 folds",
        "| 1 | 0.800 | 0.400 | 6 | 3 |",
        "| island | Dream\\|x | 4 | 0.250 |",
        "Weakest slice: `island` Dream|x, accuracy 0.250 on 4 rows.",
        "| 1 | flipper_length_mm | 0.300 | 0.010 |",
        "| 2 | sex | 0.000 | 0.000 |",
        "Training/123",
    ):
        assert expected in text, expected


def test_an_unregistered_card_says_why() -> None:
    text = render_markdown(replace(make_card(version=None), accuracy_threshold=0.9))
    assert text.startswith("# Model card: penguins\n")
    assert "**Not registered**: cross-validated accuracy 0.850 is below the threshold" in text


def test_the_calibration_section_gives_both_errors_and_the_map() -> None:
    from dataclasses import replace

    from model_training.model_card import render_markdown

    calibration = {
        "confidences": [0.5, 0.9, 1.0],
        "probabilities": [0.6, 0.9, 1.0],
        "rows": 9,
        "accuracy": 0.8889,
        "ece_raw": 0.0512,
        "ece": 0.0204,
        "method": "isotonic",
    }
    text = render_markdown(replace(make_card(), calibration=calibration))
    assert text.index("## Permutation feature importance") < text.index("## Confidence calibration")
    assert "Fitted on the 9 out-of-fold predictions (accuracy 0.889)" in text
    assert "raw confidences 0.051; calibrated, **0.020**" in text
    assert "| 0.500 | 0.600 |" in text
    single_fold = render_markdown(replace(make_card(), calibration={**calibration, "ece": None}))
    assert "calibrated: not measured (a single fold)" in single_fold
    assert "## Confidence calibration" not in render_markdown(make_card())
    assert "Input support" not in text  # a card made without one


def test_the_calibration_section_gives_the_input_support_threshold() -> None:
    from dataclasses import replace

    from model_training.model_card import render_markdown

    calibration = {
        "confidences": [0.5, 1.0],
        "probabilities": [0.6, 1.0],
        "rows": 9,
        "accuracy": 0.8889,
        "ece_raw": 0.0512,
        "ece": 0.0204,
        "method": "isotonic",
    }
    support = {"threshold": 4.56789, "quantile": 0.99, "rows": 344}
    text = render_markdown(replace(make_card(), calibration=calibration, input_support=support))
    section = text[text.index("## Confidence calibration") :]
    assert "farther than **4.568**" in section
    assert "the 99% quantile of the 344 out-of-fold rows" in section


def test_a_long_calibration_map_is_shown_in_part() -> None:
    from dataclasses import replace

    from model_training.model_card import MAX_CARD_POINTS, render_markdown

    confidences = [0.5 + i / 1000 for i in range(400)]
    calibration = {
        "confidences": confidences,
        "probabilities": confidences,
        "rows": 100_000,
        "accuracy": 0.7,
        "ece_raw": 0.01,
        "ece": 0.005,
        "method": "isotonic",
    }
    text = render_markdown(replace(make_card(), calibration=calibration))
    section = text[text.index("## Confidence calibration") :]
    assert section.count("\n| 0.") == MAX_CARD_POINTS
    assert "| 0.500 | 0.500 |" in section and "| 0.899 | 0.899 |" in section  # both ends
    assert f"(400 points, {MAX_CARD_POINTS} shown)" in section
