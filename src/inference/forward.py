"""The forward pass of the classifier, shared by the model server and the pipeline.

The project's model is a stack of Dense layers (src/model_training/network.py). Its forward
pass is a few matrix products, so `dense_forward` computes it in numpy from weights
copied out of the Keras model: no Keras or JAX import (seconds per process), nothing
written by a call, so it is safe from any number of threads, and ~10 µs for one row.
The training pipeline evaluates its fold models with this same function, so the
cross-validated scores measure exactly what the server computes.

For an architecture `dense_weights` does not know, the server falls back to Keras:
MLflow's scoring server runs requests on a thread pool, and Keras's `predict_on_batch`
on JAX hands the model's weight buffers to each call and writes them back after it,
so concurrent calls fail ("Array has been deleted"). On JAX we compile a pure
function of the weights instead (read once, never written); on other backends calls
are serialised. Batches are padded to the next power of two so the number of
compiled shapes stays small.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

Forward = Callable[[np.ndarray], np.ndarray]
# One Dense layer: kernel (inputs x units), bias (units,) or None, activation name.
DenseLayer = tuple[np.ndarray, np.ndarray | None, str]


def _softmax(z: np.ndarray) -> np.ndarray:
    exponentials = np.exp(z - z.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0.0),
    "sigmoid": _sigmoid,
    "softmax": _softmax,
    "tanh": np.tanh,
}


def dense_weights(model: Any) -> list[DenseLayer] | None:
    """The Dense layers of a Keras Sequential `model` as plain numpy, or None.

    None means the architecture is not a plain stack of Dense layers with known
    activations (another layer type, LoRA, quantization): use the Keras forward then.
    """
    if type(model).__name__ != "Sequential":
        return None
    layers: list[DenseLayer] = []
    for layer in model.layers:
        activation = getattr(getattr(layer, "activation", None), "__name__", None)
        if (
            type(layer).__name__ != "Dense"
            or activation not in ACTIVATIONS
            or getattr(layer, "lora_enabled", False)
            or getattr(layer, "quantization_mode", None)
        ):
            return None
        bias = _array(layer.bias) if layer.use_bias else None
        layers.append((_array(layer.kernel), bias, activation))
    return layers or None


def _array(variable: Any) -> np.ndarray:
    """A copy of a Keras variable's value (a JAX, TensorFlow or torch array) in numpy."""
    try:
        return np.array(np.asarray(variable.value), dtype="float32")
    except (TypeError, RuntimeError):  # torch refuses __array__ on tensors needing grad.
        return np.array(variable.numpy(), dtype="float32")


def dense_forward(weights: list[DenseLayer]) -> Forward:
    """Probabilities for float32 rows, from `dense_weights` output, in numpy alone."""
    layers = [(kernel, bias, ACTIVATIONS[name]) for kernel, bias, name in weights]

    def forward(x: np.ndarray) -> np.ndarray:
        outputs = np.asarray(x, dtype="float32")
        for kernel, bias, activation in layers:
            outputs = outputs @ kernel
            if bias is not None:
                outputs = outputs + bias
            outputs = activation(outputs)
        return outputs

    return forward


def _padded_size(rows: int) -> int:
    return 1 << max(rows - 1, 0).bit_length()


def jax_forward(model: Any) -> Forward:
    """A jitted, stateless forward pass over weights captured now."""
    import jax
    import jax.numpy as jnp

    # Copies: Keras donates the variables' own buffers to its compiled steps, so a
    # later predict_on_batch anywhere would delete arrays shared with them.
    trainable = [jnp.array(np.asarray(v.value)) for v in model.trainable_variables]
    non_trainable = [jnp.array(np.asarray(v.value)) for v in model.non_trainable_variables]

    @jax.jit
    def compiled(trainable: Any, non_trainable: Any, x: Any) -> Any:
        outputs, _ = model.stateless_call(trainable, non_trainable, x, training=False)
        return outputs

    def forward(x: np.ndarray) -> np.ndarray:
        rows = len(x)
        padded = np.zeros((_padded_size(rows), x.shape[1]), dtype=x.dtype)
        padded[:rows] = x
        return np.asarray(compiled(trainable, non_trainable, padded))[:rows]

    return forward


def locked_forward(model: Any) -> Forward:
    """`predict_on_batch`, one call at a time."""
    lock = threading.Lock()

    def forward(x: np.ndarray) -> np.ndarray:
        with lock:
            return np.asarray(model.predict_on_batch(x))

    return forward


# --- the `forward` artifact: the Dense weights, so a server need not import Keras ------
# An .npz of `kernel_<i>`, `bias_<i>` (absent without bias), `activations` (one name per
# layer) and a check: `check_inputs` with the probabilities Keras gave for them when
# the model was logged. A loader that cannot reproduce them uses Keras instead.
CHECK_ROWS = 16


def export_dense(model: Any, path: str) -> bool:
    """Write `model`'s Dense weights to `path` (.npz); False if it is not a Dense stack."""
    weights = dense_weights(model)
    if weights is None:
        return False
    rng = np.random.default_rng(0)
    check_inputs = rng.normal(size=(CHECK_ROWS, weights[0][0].shape[0])).astype("float32")
    check_outputs = np.asarray(model(check_inputs, training=False), dtype="float32")
    if not np.allclose(dense_forward(weights)(check_inputs), check_outputs, atol=1e-5):
        return False
    arrays: dict[str, np.ndarray] = {
        "activations": np.array([name for _, _, name in weights]),
        "check_inputs": check_inputs,
        "check_outputs": check_outputs,
    }
    for index, (kernel, bias, _) in enumerate(weights):
        arrays[f"kernel_{index}"] = kernel
        if bias is not None:
            arrays[f"bias_{index}"] = bias
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    return True


def load_dense(path: str) -> Forward | None:
    """The forward pass `export_dense` wrote, checked on its own rows; None if unusable."""
    try:
        with np.load(path, allow_pickle=False) as arrays:
            names = [str(name) for name in arrays["activations"]]
            weights: list[DenseLayer] = [
                (
                    arrays[f"kernel_{index}"].astype("float32"),
                    arrays[f"bias_{index}"].astype("float32")
                    if f"bias_{index}" in arrays
                    else None,
                    name,
                )
                for index, name in enumerate(names)
            ]
            check_inputs, check_outputs = arrays["check_inputs"], arrays["check_outputs"]
    except (OSError, KeyError, ValueError):
        return None
    if not weights or any(name not in ACTIVATIONS for name in names):
        return None
    forward = dense_forward(weights)
    return forward if np.allclose(forward(check_inputs), check_outputs, atol=1e-5) else None


def build_forward(model: Any, sample: np.ndarray) -> Forward:
    """The fastest safe forward pass for `model`, checked against Keras on `sample`."""
    import keras

    weights = dense_weights(model)
    # An eager call: checking needs no compiled Keras predict function (~0.6 s).
    reference = np.asarray(model(sample, training=False))
    if weights is not None:
        candidate = dense_forward(weights)
        if np.allclose(candidate(sample), reference, atol=1e-5):
            return candidate
    if keras.backend.backend() == "jax":
        candidate = jax_forward(model)
        if np.allclose(candidate(sample), reference, atol=1e-5):
            return candidate
    return locked_forward(model)
