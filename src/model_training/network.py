"""The classifier: a small Keras multilayer perceptron, built and trained on numpy arrays.

On JAX (the default backend) training runs as one compiled loop (`_fit_jax`), the same
arithmetic as Keras's `fit` without its per-batch Python. Scoring a trained model is not
here: `inference.forward` runs it as the server does, and
`model_training.cross_validation.classification_scores` turns its answers into scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.keras_runtime import enable_compilation_cache, import_keras

if TYPE_CHECKING:
    import keras
    import numpy as np


def build_model(
    input_size: int,
    classes: int,
    learning_rate: float = 0.01,
    hidden_units: int = 16,
    hidden_layers: int = 2,
    dropout: float = 0.0,
) -> keras.Model:
    """A small multilayer perceptron; Adam converges on tabular data in few epochs.

    Hidden layer i has `hidden_units / 2**i` units (at least 1), each followed by a
    Dropout layer when `dropout` is above 0: the defaults are Dense 16 -> Dense 8.
    """
    keras = import_keras()
    layers: list[Any] = [keras.Input(shape=(input_size,))]
    for index in range(hidden_layers):
        layers.append(keras.layers.Dense(max(1, hidden_units // 2**index), activation="relu"))
        if dropout > 0:
            layers.append(keras.layers.Dropout(dropout))
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    model = keras.Sequential(layers)
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
    learning_rate: float = 0.01,
    hidden_units: int = 16,
    hidden_layers: int = 2,
    dropout: float = 0.0,
) -> tuple[keras.Model, dict[str, list[float]]]:
    """Build and fit a model; return it with its per-epoch history (`loss`, `accuracy`).

    `y` holds class indices, shaped (n,) or (n, 1) as the target transformer returns them.
    The network's hyperparameters are `build_model`'s.
    """
    import numpy as np

    keras = import_keras()
    if keras.backend.backend() == "jax":
        enable_compilation_cache()  # Before building: initialising the layers compiles too.
    if seed is not None:
        keras.utils.set_random_seed(seed)
    model = build_model(x.shape[1], classes, learning_rate, hidden_units, hidden_layers, dropout)
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
    import numpy as np

    batches = _padded_batches(x, y, batch_size)
    model.optimizer.build(model.trainable_variables)
    epoch = _compiled_epoch(model)
    state = _training_state(model)
    rng = np.random.default_rng(seed)
    losses, accuracies = [], []
    for _ in range(epochs):
        order = batches.shuffled_order(rng)
        state, loss, correct = epoch(state, order, batches.mask, batches.features, batches.labels)
        losses.append(loss)
        accuracies.append(correct)
    _assign_training_state(model, state)
    return {
        "accuracy": [float(value) / batches.rows for value in accuracies],
        "loss": [float(value) / batches.rows for value in losses],
    }


@dataclass(frozen=True)
class _PaddedBatches:
    """The training rows as JAX arrays, padded to whole batches, and which rows are real.

    Arguments of the compiled epoch, not constants captured by it: the data would be
    embedded in the program. Padded, so folds of nearly equal size share one compiled
    program (and the persistent cache's entry for it).
    """

    features: Any
    labels: Any
    mask: Any  # (steps, batch_size): 1 for a real row, 0 for padding
    rows: int
    steps: int
    batch_size: int

    def shuffled_order(self, rng: np.random.Generator) -> np.ndarray:
        """A new shuffle of the real rows, padded and cut into (steps, batch_size)."""
        import numpy as np

        padding = self.steps * self.batch_size - self.rows
        order = np.concatenate([rng.permutation(self.rows), np.zeros(padding, dtype=np.int64)])
        return order.astype("int32").reshape(self.steps, self.batch_size)


def _padded_batches(x: np.ndarray, y: np.ndarray, batch_size: int) -> _PaddedBatches:
    import jax.numpy as jnp
    import numpy as np

    rows = len(x)
    batch_size = min(batch_size, rows)
    steps = -(-rows // batch_size)
    padding = steps * batch_size - rows
    features = jnp.asarray(np.concatenate([x, np.zeros((padding, x.shape[1]), x.dtype)]))
    labels = jnp.asarray(np.concatenate([y, np.zeros(padding, y.dtype)]).astype("int32"))
    mask = np.concatenate([np.ones(rows, "float32"), np.zeros(padding, "float32")])
    return _PaddedBatches(
        features, labels, jnp.asarray(mask.reshape(steps, batch_size)), rows, steps, batch_size
    )


def _compiled_epoch(model: keras.Model) -> Callable[..., Any]:
    """One epoch of training as a compiled function of (state, order, mask, features,
    labels): the new state, and the epoch's summed loss and count of right answers."""
    import jax
    import jax.numpy as jnp

    keras = import_keras()
    optimizer = model.optimizer

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

    return epoch


def _state_variables(model: keras.Model) -> tuple[list[Any], list[Any], list[Any]]:
    """The model's trainable and other variables and its optimizer's, in that order."""
    return (
        model.trainable_variables,
        model.non_trainable_variables,
        model.optimizer.variables,
    )


def _training_state(model: keras.Model) -> tuple[list[Any], ...]:
    """The values the compiled epoch updates, read out of the model's variables."""
    return tuple([v.value for v in variables] for variables in _state_variables(model))


def _assign_training_state(model: keras.Model, state: tuple[list[Any], ...]) -> None:
    """Write the trained values back into the model's (and optimizer's) variables."""
    for variables, values in zip(_state_variables(model), state, strict=True):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
