"""What a registered model is made of: artifacts, requirements and signature."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd
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


# A model's artifacts as files: artifact name -> (file name, contents). As bytes they
# travel between steps as Metaflow artifacts, so the step that registers a model
# needs neither Keras nor scikit-learn to write them (seconds of imports each).
ArtifactFiles = dict[str, tuple[str, bytes]]


def model_files(
    model: Any, export_forward: Callable[[Any, str], bool] | None = None
) -> ArtifactFiles:
    """The Keras model as `model.keras`, and as `forward.npz` when `export_forward` can.

    `export_forward` (`inference.forward.export_dense`, passed in because `common`
    does not import `inference`) writes the weights as numpy, so the server and the
    pipelines that score can skip importing Keras (seconds per process).
    """
    with tempfile.TemporaryDirectory() as directory:
        saved = {"model": os.path.join(directory, "model.keras")}
        model.save(saved["model"])
        forward = os.path.join(directory, "forward.npz")
        if export_forward is not None and export_forward(model, forward):
            saved["forward"] = forward
        return {
            name: (os.path.basename(path), Path(path).read_bytes()) for name, path in saved.items()
        }


def transformer_files(
    features_transformer: Any,
    target_transformer: Any,
    export_transform: Callable[[Any, Any, str], bool] | None = None,
) -> ArtifactFiles:
    """The fitted transformers as pickles, and as `transform.json` when `export_transform` can.

    `export_transform` (`inference.features.export_transform`) writes the features
    transformer compiled to numpy and the class names, as JSON, so the model can load
    without unpickling the transformers, which imports scikit-learn (seconds too).
    """
    files = {
        "features_transformer": ("features.pkl", pickle.dumps(features_transformer)),
        "target_transformer": ("target.pkl", pickle.dumps(target_transformer)),
    }
    with tempfile.TemporaryDirectory() as directory:
        transform = os.path.join(directory, "transform.json")
        if export_transform is not None and export_transform(
            features_transformer, target_transformer, transform
        ):
            files["transform"] = ("transform.json", Path(transform).read_bytes())
    return files


def servable_files(
    model: Any,
    features_transformer: Any,
    target_transformer: Any,
    export_forward: Callable[[Any, str], bool] | None = None,
    export_transform: Callable[[Any, Any, str], bool] | None = None,
) -> ArtifactFiles:
    """Every artifact of a servable model: `model_files` and `transformer_files`."""
    return {
        **model_files(model, export_forward),
        **transformer_files(features_transformer, target_transformer, export_transform),
    }


def write_files(directory: str, files: ArtifactFiles) -> dict[str, str]:
    """Write `files` into `directory`; return their paths by artifact name."""
    paths = {}
    for name, (file_name, contents) in files.items():
        paths[name] = os.path.join(directory, file_name)
        Path(paths[name]).write_bytes(contents)
    return paths


def save_artifacts(
    directory: str,
    model: Any,
    features_transformer: Any,
    target_transformer: Any,
    export_forward: Callable[[Any, str], bool] | None = None,
    export_transform: Callable[[Any, Any, str], bool] | None = None,
) -> dict[str, str]:
    """Write the model's artifacts into `directory`; return their paths by name."""
    files = servable_files(
        model, features_transformer, target_transformer, export_forward, export_transform
    )
    return write_files(directory, files)


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

    Found, not imported: `common` never imports the serving code.
    """
    spec = importlib.util.find_spec("inference")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "The `inference` package is not importable: run from the repository with src/ "
            "on the path (`uv run` does it), or ship it in the flow's code package."
        )
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def quiet_downloads() -> Iterator[None]:
    """No tqdm progress bars while MLflow downloads a model (they would fill the logs).

    MLflow reads the switch at every use.
    """
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


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
    packages it requires (by default the one `common.modeling.import_keras` uses).
    """
    import mlflow

    from common.modeling import keras_backend as configured_backend

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


CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"


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


# --- The deployment audit trail ------------------------------------------------------------
#
# Each decision the deployment pipeline takes (promoted, refused, forced, rollback,
# redeployed, shadow) is one event, written as model-version tags on every version it
# involves: `audit.<event id>.<field>`. The event id starts with the UTC time to the
# microsecond, so tags sort by time and no event ever overwrites another: a version can
# be refused, then forced, then rolled back, and all three stay readable in MLflow.

AUDIT_PREFIX = "audit."
AUDIT_FIELDS = (
    "decision", "reason", "figures", "when", "target", "version", "champion", "shadow",
    "evidence", "run", "role",
)  # fmt: skip


@dataclass(frozen=True)
class DeploymentEvent:
    """One decision about deploying `version` of a model, as the audit trail keeps it.

    `champion`: the version it was compared with or replaced (None: there was none);
    `evidence`: what the decision rests on (`production`, `cross-validation`, `none`);
    `figures`: the numbers behind it (JSON-ready); `run`: the Metaflow run pathspec.
    """

    decision: str
    reason: str
    version: str
    when: str
    target: str
    champion: str | None = None
    shadow: str | None = None
    evidence: str = "none"
    figures: dict[str, Any] | None = None
    run: str | None = None


def event_id(when: datetime) -> str:
    """A sortable, unique-enough key for an event at `when` (UTC, microseconds)."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def audit_tags(identifier: str, event: DeploymentEvent, role: str) -> dict[str, str]:
    """The tags one version gets for `event`; `role` is its part in it (e.g. challenger)."""
    import json

    values = {
        "decision": event.decision,
        "reason": event.reason,
        "figures": json.dumps(event.figures or {}, sort_keys=True),
        "when": event.when,
        "target": event.target,
        "version": event.version,
        "champion": event.champion or "",
        "shadow": event.shadow or "",
        "evidence": event.evidence,
        "run": event.run or "",
        "role": role,
    }
    return {f"{AUDIT_PREFIX}{identifier}.{name}": value for name, value in values.items()}


def record_event(
    client: Any, name: str, event: DeploymentEvent, roles: dict[str, str], when: datetime
) -> str:
    """Write `event` on each version of `roles` (version -> its role); return the event id."""
    identifier = event_id(when)
    for version, role in roles.items():
        for key, value in audit_tags(identifier, event, role).items():
            client.set_model_version_tag(name, version, key, value)
    return identifier


def deployment_history(client: Any, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every recorded deployment decision about model `name`, newest first.

    One dict per event: `id`, the fields of `DeploymentEvent` (`figures` parsed back
    from JSON) and `roles` (version -> its part in the event).
    """
    import json

    events: dict[str, dict[str, Any]] = {}
    for version in client.search_model_versions(f"name = '{name}'"):
        fields: dict[str, dict[str, str]] = {}
        for key, value in (version.tags or {}).items():
            if not key.startswith(AUDIT_PREFIX):
                continue
            identifier, _, field_name = key.removeprefix(AUDIT_PREFIX).rpartition(".")
            if identifier and field_name in AUDIT_FIELDS:
                fields.setdefault(identifier, {})[field_name] = value
        for identifier, values in fields.items():
            event = events.setdefault(identifier, {"id": identifier, "roles": {}})
            event["roles"][str(version.version)] = values.pop("role", "")
            for field_name, value in values.items():
                event[field_name] = value or None
    for event in events.values():
        # A value written by hand, not by the pipeline, stays the text it is.
        with contextlib.suppress(json.JSONDecodeError):
            event["figures"] = json.loads(event.get("figures") or "{}")
    history = sorted(events.values(), key=lambda event: event["id"], reverse=True)
    return history if limit is None else history[:limit]


def retire_challenger(client: Any, name: str, version: str) -> bool:
    """Drop the `challenger` alias from `version` once it is the champion; True if it had it.

    A challenger is a candidate for the champion's place: left on the champion, the
    alias would make `--shadow challenger` name the model that serves.
    """
    if alias_version(client, name, CHALLENGER) != version:
        return False
    client.delete_registered_model_alias(name, CHALLENGER)
    return True
