"""Tiny real models trained in process on a made-up, well separated dataset.

Used by tests/inference/test_model.py and test_shadow.py: three classes told apart by
two numbers and a habitat. Training takes a second; the artifacts are the ones the
training pipeline writes (`save_artifacts`), and `model_directory` lays them out as a
downloaded registered model, so `inference.scorer.load_scorer` (the server's shadow
loader) reads them. `evaluate_model` is Keras's own evaluation, the reference the
project's scores are checked against.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from common.data import DatasetSchema

SCHEMA = DatasetSchema(
    target="kind",
    numeric_features=("length", "mass"),
    categorical_features=("habitat",),
    extraneous_values={},
)
CLASSES = ["feline", "lizard", "sparrow"]
HABITATS = ["desert", "forest", "town"]
# Everything `inference.model.Model.load_context` reads from the environment.
SERVING_VARIABLES = (
    "SERVING_CAPTURE_DATABASE",
    "SERVING_MODEL_VERSION",
    "SERVING_MAX_BATCH_SIZE",
    "SERVING_SHADOW_MODEL_PATH",
    "SERVING_SHADOW_VERSION",
    "SERVING_SHADOW_BUDGET_MS",
)


def make_data(rows: int, seed: int, habitats: Sequence[str] = HABITATS) -> pd.DataFrame:
    """Three well separated classes; the habitat follows the class most of the time."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 3, rows)
    habitat = np.where(rng.random(rows) < 0.8, kind, rng.integers(0, 3, rows))
    names = np.asarray(list(habitats), dtype=object)
    return pd.DataFrame(
        {
            "length": kind * 10.0 + rng.normal(0, 1, rows),
            "mass": kind * -5.0 + rng.normal(0, 1, rows),
            "habitat": names[habitat % len(names)],
            "kind": np.asarray(CLASSES, dtype=object)[kind],
        }
    )


def features_of(rows: int, seed: int) -> pd.DataFrame:
    return make_data(rows, seed).drop(columns=["kind"])


def train_toy(
    directory: Path,
    data_seed: int = 0,
    seed: int = 1,
    epochs: int = 3,
    habitats: Sequence[str] = HABITATS,
) -> SimpleNamespace:
    """Train on 90 made-up rows; save the artifacts under `directory`."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from model_training.network import train_model
    from model_training.preprocessing import fit_transform

    data = make_data(90, seed=data_seed, habitats=habitats)
    features, target, x, y = fit_transform(data, SCHEMA)
    model, history = train_model(
        x, y, classes=len(CLASSES), epochs=epochs, batch_size=16, seed=seed
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = save_artifacts(str(directory), model, features, target)
    return SimpleNamespace(
        model=model, features=features, target=target, paths=paths, history=history
    )


def save_artifacts(
    directory: str,
    model: Any,
    features_transformer: Any,
    target_transformer: Any,
    with_forward: bool = False,
    with_transform: bool = False,
) -> dict[str, str]:
    """Write a model's artifact files into `directory`; return their paths by name.

    The numpy forward pass and the compiled transform only when asked: without them
    the model loads through Keras and scikit-learn.
    """
    from model_training.packaging import servable_files, write_files

    files = servable_files(
        model, features_transformer, target_transformer, with_forward, with_transform
    )
    return write_files(directory, files)


def evaluate_model(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Loss, accuracy and predicted class indices of `model` on (x, y), as Keras reports them."""
    labels = np.asarray(y).reshape(-1)
    loss, accuracy = model.evaluate(x, labels, verbose=0)
    predictions = model.predict_on_batch(x).argmax(axis=1)
    return float(loss), float(accuracy), predictions


def model_directory(paths: dict[str, str], directory: Path) -> Path:
    """`directory` holding an `MLmodel` that names the artifacts, as a downloaded model's."""
    import yaml

    artifacts = {name: {"path": str(Path(path).resolve())} for name, path in paths.items()}
    mlmodel = {"flavors": {"python_function": {"artifacts": artifacts}}}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    return directory


def serve(paths: dict[str, str], **environment: str) -> Any:
    """`inference.model.Model` loaded as the server loads it, with exactly the given
    serving settings in the environment."""
    import pytest

    from inference.model import Model

    instance = Model()
    with pytest.MonkeyPatch.context() as patch:
        for name in SERVING_VARIABLES:
            patch.delenv(name, raising=False)
        for name, value in environment.items():
            patch.setenv(name, value)
        instance.load_context(SimpleNamespace(artifacts=dict(paths)))
    return instance
