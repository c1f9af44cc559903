"""What a registered model is made of, and registering it.

A servable model is its artifact files (`model_files`: the Keras model and its numpy
forward pass; `transformer_files`: the fitted transformers and their compiled numpy
form), the `inference` package that serves them, the pinned requirements of the
Keras backend it was trained on, and a signature naming the dataset's columns.
`log_servable_model` logs and registers all of it on the active MLflow run.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema
from common.registry import quiet_downloads

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.models import ModelSignature


# A model's artifacts as files: artifact name -> (file name, contents). As bytes they
# travel between steps as Metaflow artifacts, so the step that registers a model
# needs neither Keras nor scikit-learn to write them (seconds of imports each).
ArtifactFiles = dict[str, tuple[str, bytes]]

# What the pyfunc in src/inference/model.py imports at serving time, per Keras backend.
SERVING_PACKAGES = ("mlflow", "keras", "scikit-learn", "pandas", "numpy", "prometheus-client")


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


def model_files(model: Any, with_forward: bool = True) -> ArtifactFiles:
    """The Keras model as `model.keras` and, `with_forward`, as `forward.npz`.

    `forward.npz` (`inference.forward.export_dense`) holds the weights as numpy, so the
    server and the pipelines that score skip importing Keras (seconds per process); it
    is left out for an architecture the numpy forward pass does not know.
    """
    from inference.forward import export_dense

    with tempfile.TemporaryDirectory() as directory:
        saved = {"model": os.path.join(directory, "model.keras")}
        model.save(saved["model"])
        forward = os.path.join(directory, "forward.npz")
        if with_forward and export_dense(model, forward):
            saved["forward"] = forward
        return {
            name: (os.path.basename(path), Path(path).read_bytes()) for name, path in saved.items()
        }


def transformer_files(
    features_transformer: Any, target_transformer: Any, with_transform: bool = True
) -> ArtifactFiles:
    """The fitted transformers as pickles and, `with_transform`, as `transform.json`.

    `transform.json` (`inference.features.export_transform`) holds the features
    transformer compiled to numpy and the class names, so the model loads without
    unpickling the transformers, which imports scikit-learn (seconds too); it is left
    out when the compiled form cannot reproduce the transformer.
    """
    from inference.features import export_transform

    files = {
        "features_transformer": ("features.pkl", pickle.dumps(features_transformer)),
        "target_transformer": ("target.pkl", pickle.dumps(target_transformer)),
    }
    with tempfile.TemporaryDirectory() as directory:
        transform = os.path.join(directory, "transform.json")
        if with_transform and export_transform(features_transformer, target_transformer, transform):
            files["transform"] = ("transform.json", Path(transform).read_bytes())
    return files


def servable_files(
    model: Any,
    features_transformer: Any,
    target_transformer: Any,
    with_forward: bool = True,
    with_transform: bool = True,
) -> ArtifactFiles:
    """Every artifact of a servable model: `model_files` and `transformer_files`."""
    return {
        **model_files(model, with_forward),
        **transformer_files(features_transformer, target_transformer, with_transform),
    }


def write_files(directory: str, files: ArtifactFiles) -> dict[str, str]:
    """Write `files` into `directory`; return their paths by artifact name."""
    paths = {}
    for name, (file_name, contents) in files.items():
        paths[name] = os.path.join(directory, file_name)
        Path(paths[name]).write_bytes(contents)
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


@dataclass(frozen=True)
class ServableModel:
    """What `log_servable_model` logged: where each part is, and the registry version."""

    model_uri: str
    version: str | None  # None when no registered model name was given.
    artifacts: dict[str, str]  # Artifact URIs by name.
    code_paths: list[str]
    pip_requirements: list[str]


def serving_package() -> Path:
    """The `inference` package's directory, wherever it is (src/ or a code package root).

    Found, not imported: logging a model loads none of the code that serves it.
    """
    spec = importlib.util.find_spec("inference")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The `inference` package is not importable: run from the repository with src/ "
            "on the path (`uv run` does it), or ship it in the flow's code package."
        )
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def _quiet_model_logging() -> Iterator[None]:
    """`log_model` without the noise and the check that cannot fail here.

    - No progress bars (`quiet_downloads`): `log_model` reloads the model to check the
      input example, downloading each artifact with a progress bar into the pipeline log.
    - No "Failed to resolve installed pip version" warning: the conda environment MLflow
      writes beside the requirements names pip, which a uv environment need not have.
    - No check that the requirements match the installed packages: `pinned_requirements`
      read them from the installed packages, and the check maps every installed
      distribution's files to its modules first (~0.5 s a model here).
    """
    import logging

    from mlflow.utils import environment

    log = logging.getLogger(environment.__name__)
    level = log.level
    log.setLevel(logging.ERROR)
    check = getattr(environment, "warn_dependency_requirement_mismatches", None)
    if check is not None:
        environment.warn_dependency_requirement_mismatches = lambda requirements: None
    try:
        with quiet_downloads():
            yield
    finally:
        if check is not None:
            environment.warn_dependency_requirement_mismatches = check
        log.setLevel(level)


def log_servable_model(
    files: ArtifactFiles,
    schema: DatasetSchema,
    registered_model_name: str | None,
    input_example: pd.DataFrame | None = None,
    python_model: str | os.PathLike[str] | None = None,
    keras_backend: str | None = None,
) -> ServableModel:
    """Log a model's artifact `files` with its serving code to the active MLflow run.

    The one way a servable model is made: the training pipeline, the tests and the
    benchmarks all call this, with `servable_files(...)` or the training pipeline's
    `model_files` and `transformer_files` artifacts. `python_model` replaces
    src/inference/model.py (tests log a deliberately broken model this way);
    `registered_model_name` None logs without registering. `input_example`: a few
    feature rows, stored with the model for users to read (MLflow also checks that the
    model answers them). `keras_backend`: the one the model was trained on, whose
    packages it requires (by default the one `common.keras_runtime.import_keras` uses).
    """
    import mlflow

    from common.keras_runtime import keras_backend as configured_backend

    missing = {"model", "features_transformer", "target_transformer"} - set(files)
    if missing:
        raise ValueError(f"A servable model needs the artifacts {sorted(missing)} too.")
    package = serving_package()
    # The whole package: the model imports its validation, forward pass and capture.
    code_paths = [package.as_posix()]
    requirements = pinned_requirements(keras_backend or configured_backend())
    with tempfile.TemporaryDirectory() as directory, _quiet_model_logging():
        paths = write_files(directory, files)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Path(python_model) if python_model else package / "model.py",
            registered_model_name=registered_model_name,
            code_paths=code_paths,
            artifacts=paths,
            pip_requirements=requirements,
            signature=model_signature(schema),
            input_example=input_example,
        )
    version = info.registered_model_version
    return ServableModel(
        model_uri=info.model_uri,
        version=None if version is None else str(version),
        artifacts={name: f"{info.model_uri}/artifacts/{Path(p).name}" for name, p in paths.items()},
        code_paths=code_paths,
        pip_requirements=requirements,
    )
