"""What a registered model is made of: artifacts, requirements and signature."""

from __future__ import annotations

import os
import pickle
from importlib import metadata
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema

if TYPE_CHECKING:
    from mlflow.models import ModelSignature

# What the pyfunc in src/inference/model.py imports at serving time, per Keras backend.
SERVING_PACKAGES = ("mlflow", "keras", "scikit-learn", "pandas", "numpy")
BACKEND_PACKAGES = {
    "jax": ("jax", "jaxlib"),
    "tensorflow": ("tensorflow-cpu",),
    "torch": ("torch",),
}


def pinned_requirements(keras_backend: str) -> list[str]:
    """`package==version` for everything the served model imports, as installed now."""
    names = [*SERVING_PACKAGES, *BACKEND_PACKAGES.get(keras_backend, ())]
    requirements = []
    for name in names:
        try:
            requirements.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            if name == "tensorflow-cpu":  # Either distribution provides `tensorflow`.
                requirements.append(f"tensorflow=={metadata.version('tensorflow')}")
            else:
                raise
    return requirements


def save_artifacts(
    directory: str, model: Any, features_transformer: Any, target_transformer: Any
) -> dict[str, str]:
    """Write the model's three artifacts into `directory`; return their paths by name."""
    paths = {
        "model": os.path.join(directory, "model.keras"),
        "features_transformer": os.path.join(directory, "features.pkl"),
        "target_transformer": os.path.join(directory, "target.pkl"),
    }
    model.save(paths["model"])
    transformers = {
        "features_transformer": features_transformer,
        "target_transformer": target_transformer,
    }
    for name, transformer in transformers.items():
        with open(paths[name], "wb") as file:
            pickle.dump(transformer, file)
    return paths


def model_signature(schema: DatasetSchema) -> ModelSignature:
    """Input columns as the dataset describes them, every one optional (imputed)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = [ColSpec("double", name, required=False) for name in schema.numeric_features]
    inputs += [ColSpec("string", name, required=False) for name in schema.categorical_features]
    outputs = [ColSpec("string", "prediction"), ColSpec("double", "confidence")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))
