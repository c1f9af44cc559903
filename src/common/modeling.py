"""The Keras classifier: import, build, train and evaluate.

Pure functions over numpy arrays, so they can be tested without Metaflow or MLflow.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
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


def keras_backend() -> str:
    """The Keras backend `import_keras` uses, without importing Keras.

    An empty KERAS_BACKEND counts as unset: Keras itself would fall back to TensorFlow,
    which this project does not install.
    """
    return os.environ.get("KERAS_BACKEND") or DEFAULT_KERAS_BACKEND


# The package each Keras 3 backend imports, by KERAS_BACKEND value.
BACKEND_MODULES = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch", "numpy": "numpy"}
# The project's extras (pyproject.toml) for the backends it does not install by default.
INSTALL_HINTS = {
    "tensorflow": " with `uv sync --extra tensorflow`",
    "torch": " with `uv sync --extra torch`",
}


def check_backend_installed(backend: str) -> None:
    """Fail with what to do when KERAS_BACKEND names no backend, or one not installed.

    Without this, the first training task fails deep inside Keras's import
    (`No module named 'torch'`), after the pipeline has already started.
    """
    import importlib.util

    if backend not in BACKEND_MODULES:
        raise ValueError(
            f"KERAS_BACKEND={backend!r} is not a Keras backend: use one of "
            f"{', '.join(BACKEND_MODULES)}, or unset it for {DEFAULT_KERAS_BACKEND} (installed)."
        )
    module = BACKEND_MODULES[backend]
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"KERAS_BACKEND={backend} needs the {module!r} package, which is not installed: "
            f"unset KERAS_BACKEND to train on {DEFAULT_KERAS_BACKEND} (installed), "
            f"or install it{INSTALL_HINTS.get(backend, '')}."
        )


def import_keras() -> ModuleType:
    """Import Keras on the configured backend (JAX unless KERAS_BACKEND says otherwise)."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    backend = keras_backend()
    check_backend_installed(backend)
    os.environ["KERAS_BACKEND"] = backend
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


COMPILATION_CACHE = "penguins-mlops/jax"


def enable_compilation_cache() -> None:
    """Keep JAX's compiled programs on disk, unless the user configured a cache already.

    Every training task is a new process that compiles the same few programs (layer
    initialisers, the training loop) for the same shapes: ~1 s of each task on a quiet
    2-core machine. With the persistent cache only the first task of the first run pays.
    """
    import jax

    if os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir:
        return
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / COMPILATION_CACHE
    jax.config.update("jax_compilation_cache_dir", str(cache))
    # By default only programs that took over a second to compile are kept; here most
    # take a fraction of a second each, and together they are the cost.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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
    """Build and fit a model; return it with its per-epoch history (`loss`, `accuracy`).

    `y` holds class indices, shaped (n,) or (n, 1) as the target transformer returns them.
    """
    import numpy as np

    keras = import_keras()
    if keras.backend.backend() == "jax":
        enable_compilation_cache()  # Before building: initialising the layers compiles too.
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = build_model(x.shape[1], classes)
    labels = np.asarray(y).reshape(-1)
    if keras.backend.backend() == "jax":
        history = _fit_jax(model, np.asarray(x, dtype="float32"), labels, epochs, batch_size, seed)
    else:
        fitted = model.fit(x, labels, epochs=epochs, batch_size=batch_size, verbose=0)
        history = fitted.history
    return model, {name: [float(v) for v in values] for name, values in history.items()}


def _fit_jax(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int,
    batch_size: int,
    seed: int | None,
) -> dict[str, list[float]]:
    """What `model.fit(x, y, epochs, batch_size, shuffle=True)` does, as one compiled loop.

    Keras's own loop dispatches every batch from Python, with callbacks and metric
    objects around it: ~13 ms a step here, 6 s for the default 50 epochs of 9 steps,
    where the arithmetic takes microseconds. Here every epoch and batch run inside a
    single `jax.lax.scan`: the same model, loss, optimizer (Adam's own update, through
    `stateless_apply`), batch size and per-epoch shuffling, compiled once. The last,
    partial batch is padded and masked, so each step still averages over its real rows.
    The history is what Keras reports: per epoch, the mean loss and the accuracy of the
    batches as they were seen, before each update.

    Each epoch's shuffled order is drawn with numpy, outside the compiled function: a
    shuffle inside it (a sort) would triple the compilation time, which is most of the
    cost at this size (measured: ~0.8 s to compile, 25 ms to run 50 epochs of 9 steps).
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    keras = import_keras()
    rows = len(x)
    batch_size = min(batch_size, rows)
    steps = -(-rows // batch_size)
    padding = steps * batch_size - rows
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(seed)
    # Arguments, not constants captured by the compiled function: the data would be
    # embedded in the program. Padded to whole batches, so folds of nearly equal size
    # share one compiled program (and the persistent cache's entry for it).
    features = jnp.asarray(np.concatenate([x, np.zeros((padding, x.shape[1]), x.dtype)]))
    labels = jnp.asarray(np.concatenate([y, np.zeros(padding, y.dtype)]).astype("int32"))
    mask = np.concatenate([np.ones(rows, "float32"), np.zeros(padding, "float32")])
    mask = jnp.asarray(mask.reshape(steps, batch_size))

    def loss_and_outputs(trainable, non_trainable, xb, yb, weights):
        outputs, non_trainable = model.stateless_call(trainable, non_trainable, xb, training=True)
        losses = keras.losses.sparse_categorical_crossentropy(yb, outputs)
        return jnp.sum(losses * weights) / jnp.sum(weights), (outputs, non_trainable)

    gradient = jax.value_and_grad(loss_and_outputs, has_aux=True)

    @functools.partial(jax.jit, donate_argnums=0)
    def epoch(state, order, mask, features, labels):
        def train_step(state, batch):
            trainable, non_trainable, optimizer_variables = state
            indices, weights = batch
            xb, yb = jnp.take(features, indices, axis=0), jnp.take(labels, indices, axis=0)
            (loss, (outputs, non_trainable)), grads = gradient(
                trainable, non_trainable, xb, yb, weights
            )
            trainable, optimizer_variables = optimizer.stateless_apply(
                optimizer_variables, grads, trainable
            )
            correct = jnp.sum((jnp.argmax(outputs, axis=-1) == yb) * weights)
            state = (trainable, non_trainable, optimizer_variables)
            return state, (loss * jnp.sum(weights), correct)

        state, (losses, correct) = jax.lax.scan(train_step, state, (order, mask))
        return state, jnp.sum(losses), jnp.sum(correct)

    state = (
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        [v.value for v in optimizer.variables],
    )
    losses, accuracies = [], []
    for _ in range(epochs):
        order = np.concatenate([rng.permutation(rows), np.zeros(padding, dtype=np.int64)])
        order = order.astype("int32").reshape(steps, batch_size)
        state, loss, correct = epoch(state, order, mask, features, labels)
        losses.append(loss)
        accuracies.append(correct)
    for variables, values in zip(
        (model.trainable_variables, model.non_trainable_variables, optimizer.variables),
        state,
        strict=True,
    ):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
    return {
        "accuracy": [float(value) / rows for value in accuracies],
        "loss": [float(value) / rows for value in losses],
    }


def evaluate_model(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Loss, accuracy and predicted class indices of `model` on (x, y)."""
    import numpy as np

    labels = np.asarray(y).reshape(-1)
    loss, accuracy = model.evaluate(x, labels, verbose=0)
    predictions = model.predict_on_batch(x).argmax(axis=1)
    return float(loss), float(accuracy), predictions
