"""The model registry as every stage reads it: version look-ups, aliases, model URIs
and downloads, and the search filters that find them (`equals_filter`, quoted so that a
name cannot break the filter). What a registered model is made of is
model_training.packaging's; the deployment audit trail is promotion.audit's."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


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


def model_uri(name: str, version: str) -> str:
    """The registry URI of one version of a registered model: `models:/<name>/<version>`."""
    return f"models:/{name}/{version}"


def download_model(uri: str, directory: str | os.PathLike[str]) -> Path:
    """A registered model's files (`uri` from `model_uri`, or an alias URI), copied into
    `directory` without progress bars; returns the model's own directory."""
    import mlflow

    Path(directory).mkdir(parents=True, exist_ok=True)
    with quiet_downloads():
        path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(directory))
    return Path(path)


def equals_filter(key: str, value: str) -> str:
    """The MLflow search filter `key = 'value'` (model versions, runs), quoted so that
    a quote in `value` cannot end the string: MLflow's filter grammar has no escape, so
    a value holding both kinds of quote cannot be searched for (ValueError)."""
    if "'" not in value:
        return f"{key} = '{value}'"
    if '"' not in value:
        return f'{key} = "{value}"'
    raise ValueError(
        f"{value!r} holds both ' and \", which an MLflow search filter cannot quote: "
        "rename it (model.name in the project configuration) without quotes."
    )


CHAMPION = "champion"
PREVIOUS = "previous"
CHALLENGER = "challenger"


def resolve_version(client: Any, name: str, requested: str | None) -> str:
    """The registry version to deploy: newest, a number, or an alias such as `champion`."""
    from mlflow.exceptions import MlflowException

    if requested in (None, "", "latest"):
        try:
            versions = client.search_model_versions(equals_filter("name", name))
        except ValueError as error:
            raise LookupError(f"Model {name!r} cannot be looked up: {error}") from None
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


def retire_challenger(client: Any, name: str, version: str) -> bool:
    """Drop the `challenger` alias from `version` once it is the champion; True if it had it.

    A challenger is a candidate for the champion's place: left on the champion, the
    alias would make `--shadow challenger` name the model that serves.
    """
    if alias_version(client, name, CHALLENGER) != version:
        return False
    client.delete_registered_model_alias(name, CHALLENGER)
    return True
