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
    """Input columns as the dataset describes them, every one optional (imputed).

    Numeric columns are typed `any`: MLflow refuses to convert whole numbers to
    doubles ("not safe"), yet 181 is a fine flipper length. The model checks every
    value itself and rejects what is not a finite number, naming row and field.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    inputs = [ColSpec(AnyType(), name, required=False) for name in schema.numeric_features]
    inputs += [ColSpec("string", name, required=False) for name in schema.categorical_features]
    outputs = [ColSpec("string", "prediction"), ColSpec("double", "confidence")]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs))


CHAMPION = "champion"
PREVIOUS = "previous"


def resolve_version(client: Any, name: str, requested: str | None) -> str:
    """The registry version to deploy: newest, a number, or an alias such as `champion`."""
    from mlflow.exceptions import MlflowException

    if requested in (None, "", "latest"):
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise LookupError(
                f"No version of model {name!r} is registered. Train one first: "
                "uv run src/pipelines/training.py run"
            )
        return str(max(int(version.version) for version in versions))
    try:
        if str(requested).isdigit():
            return str(client.get_model_version(name, str(requested)).version)
        return str(client.get_model_version_by_alias(name, str(requested)).version)
    except MlflowException as error:
        raise LookupError(f"Model {name!r} has no version or alias {requested!r}.") from error


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version an alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def promote(client: Any, name: str, version: str, target: str, when: str) -> str | None:
    """Make `version` the champion; the old champion becomes `previous`. Returns it."""
    current = alias_version(client, name, CHAMPION)
    if current is not None and current != version:
        client.set_registered_model_alias(name, PREVIOUS, current)
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "deployed_at", when)
    client.set_model_version_tag(name, version, "deployment_target", target)
    return current
