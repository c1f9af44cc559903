"""The model a run scores with: which registered version, and its files for the tasks.

`start` downloads the version once, reads its feature checks (without its network) and
packs the few files scoring needs into an artifact of the run; each chunk task unpacks
them and loads the scorer (`inference.scorer`), needing neither the registry nor MLflow
and, for a model with its `transform` and `forward` artifacts, neither scikit-learn
nor Keras: seconds saved in every task.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from batch_scoring.errors import ScoringError

if TYPE_CHECKING:
    from inference.features import FeatureTransform
    from inference.scorer import Scorer


def resolve_scored_version(name: str, requested: str) -> str:
    """The registry version `--model-version` names (a number or an alias)."""
    import mlflow

    from common.registry import resolve_version

    try:
        return resolve_version(mlflow.MlflowClient(), name, requested)
    except LookupError as error:
        raise ScoringError(f"--model-version {requested}: {error}") from None


def download_scoring_model(
    name: str, version: str, directory: str
) -> tuple[FeatureTransform, dict[str, bytes]]:
    """The version's own feature checks (`inference.features`) and its packed files
    (`pack_model`), from a download into `directory`."""
    from common.registry import download_model, model_uri
    from inference.scorer import load_features, model_artifacts

    model = download_model(model_uri(name, version), os.path.join(directory, "model"))
    try:
        artifacts = model_artifacts(model)
        features = load_features(artifacts)
    except ValueError as error:
        raise ScoringError(str(error)) from None
    return features, pack_model(str(model), list(artifacts.values()))


def pack_model(model_directory: str, artifact_paths: Sequence[str]) -> dict[str, bytes]:
    """The files scoring needs of a downloaded model (`MLmodel` and its artifacts), by
    path relative to the directory: small (tens of kilobytes), so they travel as an
    artifact of the run, and the chunk tasks need neither the registry nor MLflow."""
    root = Path(model_directory)
    paths = [root / "MLmodel", *(Path(path) for path in artifact_paths)]
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in paths}


def unpack_model(files: dict[str, bytes], directory: str) -> str:
    """Write `pack_model`'s files under `directory`/model; return that model directory."""
    root = Path(directory) / "model"
    for relative, content in files.items():
        path = root / relative
        if root.resolve() not in path.resolve().parents:
            raise ScoringError(f"A staged model file lies outside its directory: {relative!r}.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return str(root)


def load_packed_scorer(files: dict[str, bytes], directory: str) -> Scorer:
    """The scorer of `pack_model`'s files, unpacked under `directory`."""
    from inference.scorer import load_scorer

    return load_scorer(unpack_model(files, directory))
