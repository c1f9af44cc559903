"""The Keras classifier: import, build, train and evaluate.

Pure functions over numpy arrays, so they can be tested without Metaflow or MLflow.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    import numpy as np

DEFAULT_KERAS_BACKEND = "jax"

# Keras imports these eagerly, for features this project never uses (image galleries,
# scikit-learn wrappers, DataFrame inputs); together they double the cost of importing
# Keras in every task that trains or evaluates. Keras guards each import, so hiding the
# ones not yet loaded just switches those features off. Measured here: 7.4 s -> 3.6 s.
_OPTIONAL_KERAS_IMPORTS = ("matplotlib", "sklearn", "pandas")


def import_keras() -> ModuleType:
    """Import Keras on the configured backend (JAX unless KERAS_BACKEND says otherwise)."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_KERAS_BACKEND)
    hidden = [name for name in _OPTIONAL_KERAS_IMPORTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` fail
    try:
        import keras
    finally:
        for name in hidden:
            if sys.modules.get(name, False) is None:
                del sys.modules[name]
    return keras


def build_model(input_size: int, classes: int, learning_rate: float = 0.01) -> keras.Model:
    """A small multilayer perceptron; Adam converges on tabular data in few epochs."""
    keras = import_keras()
    model = keras.Sequential(
        [
            keras.Input(shape=(input_size,)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    classes: int,
    epochs: int,
    batch_size: int,
    seed: int | None = None,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build and fit a model; return it with its per-epoch history."""
    keras = import_keras()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = build_model(x.shape[1], classes)
    history = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return model, {name: [float(v) for v in values] for name, values in history.history.items()}


def evaluate_model(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Loss, accuracy and predicted class indices of `model` on (x, y)."""
    loss, accuracy = model.evaluate(x, y, verbose=0)
    predictions = model.predict_on_batch(x).argmax(axis=1)
    return float(loss), float(accuracy), predictions
