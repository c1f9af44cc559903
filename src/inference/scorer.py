"""A registered model's scoring path, loaded from its files: validation, transform,
forward pass. No MLflow, no server, no capture.

The model server runs it (`inference.model.Model` is this plus MLflow's pyfunc
interface, capture and the shadow), and so do the pipelines that score models in
process (batch scoring, the deployment pipeline's comparison), through `load_scorer`:
one code path for every answer a model gives. Importing this module costs numpy and
pandas; a model logged with its `transform` and `forward` artifacts loads without
scikit-learn, Keras or JAX as well.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from inference.features import Columns, FeatureTransform, InvalidInput, load_transform
from inference.forward import build_forward, load_dense

logger = logging.getLogger(__name__)


class Scorer:
    """Validated rows in, class names and confidences out."""

    features: FeatureTransform
    classes: np.ndarray
    model: Any = None  # the Keras model, loaded only when no `forward` artifact serves

    def load_artifacts(self, artifacts: dict[str, str]) -> None:
        """Load the transform and the classifier from their files.

        A model logged with its `transform` artifact (the compiled feature transform and
        the class names as JSON) and its `forward` artifact (the Dense weights as numpy),
        each checked on rows recorded when it was logged, loads from those; any other,
        or one whose check fails, unpickles the transformers (scikit-learn) and loads
        the Keras model.
        """
        compiled = _compiled_transform(artifacts)
        if compiled is not None:
            self.features, classes = compiled
        else:
            self.features = _unpickled_features(artifacts)
            with open(artifacts["target_transformer"], "rb") as file:
                classes = pickle.load(file).categories_[0]
        self.classes = np.asarray(classes, dtype=object)
        sample = self.features.validate(self.features.sample_rows())
        if not self.features.verify(sample):
            logger.warning("Feature transformer not compiled; using scikit-learn (slower).")
        forward = load_dense(artifacts["forward"]) if "forward" in artifacts else None
        if forward is not None:
            self.forward = forward
        else:
            # Empty counts as unset, as in common.keras_runtime.keras_backend.
            os.environ["KERAS_BACKEND"] = os.environ.get("KERAS_BACKEND") or "jax"
            import keras

            self.model = keras.saving.load_model(artifacts["model"], compile=False)
            self.forward = build_forward(self.model, self.features.transform(sample))

    def score(self, columns: Columns) -> tuple[list[str], list[float]]:
        """Classify validated rows: (predictions, confidences); nothing is captured."""
        probabilities = self.forward(self.features.transform(columns))
        unanswerable = ~np.isfinite(probabilities).all(axis=1)
        if unanswerable.any():  # e.g. 1e42 g: finite, but past float32 and the network
            raise InvalidInput(
                f"Row {int(np.flatnonzero(unanswerable)[0])}: the values are too far out of "
                "range for the model to answer; check the units of the numbers."
            )
        count = len(probabilities)
        indices = probabilities.argmax(axis=1)
        predictions = self.classes[indices].tolist()
        confidences = probabilities[np.arange(count), indices].astype(float).tolist()
        return predictions, confidences


def model_artifacts(model_directory: str | os.PathLike[str]) -> dict[str, str]:
    """The artifact paths, by name, of the model downloaded in `model_directory`."""
    import yaml

    directory = Path(model_directory)
    try:
        flavor = yaml.safe_load((directory / "MLmodel").read_text())["flavors"]["python_function"]
        return {name: str(directory / item["path"]) for name, item in flavor["artifacts"].items()}
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise ValueError(f"{directory} is not a model this project registered: {error}") from None


def load_features(artifacts: dict[str, str]) -> FeatureTransform:
    """The input a model's artifacts expect (without loading the classifier)."""
    compiled = _compiled_transform(artifacts)
    return compiled[0] if compiled is not None else _unpickled_features(artifacts)


def _compiled_transform(artifacts: dict[str, str]) -> tuple[FeatureTransform, list[Any]] | None:
    """The `transform` artifact's features and classes, if it has a usable one."""
    return load_transform(artifacts["transform"]) if "transform" in artifacts else None


def _unpickled_features(artifacts: dict[str, str]) -> FeatureTransform:
    with open(artifacts["features_transformer"], "rb") as file:
        return FeatureTransform.from_transformer(pickle.load(file))


def load_scorer(model_directory: str | os.PathLike[str]) -> Scorer:
    """The model downloaded in `model_directory`, loaded in this process to score rows.

    `scorer.features.validate(rows)` then `scorer.score(columns)`: what the server runs,
    without capture, ids or row limit. The code is this process's `inference` package,
    which is the one every model of this checkout ships.
    """
    scorer = Scorer()
    scorer.load_artifacts(model_artifacts(model_directory))
    return scorer
