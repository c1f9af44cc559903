"""The Keras runtime every process that trains or loads a Keras model shares.

Which Keras backend runs (KERAS_BACKEND, JAX by default) and whether it is installed,
importing Keras quickly (`import_keras`), and JAX's on-disk compilation cache. The
classifier itself (build, train) is `model_training.network`'s. Importing this module
imports neither Keras nor JAX.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

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
