"""Which registered model version a monitoring run watches, and the data it was trained on.

The monitored version is the one asked for, else the one serving, else the champion
(a version number or an alias, resolved in the registry). Its reference, what the
production rows are compared with, is the training data the training pipeline
recorded with that version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


def monitored_version(model_name: str, requested: str) -> str | None:
    """The registry version `requested` (a version or an alias) names; None when
    nothing is registered under it."""
    import mlflow

    from common.registry import resolve_version

    try:
        return resolve_version(mlflow.MlflowClient(), model_name, requested)
    except LookupError:
        return None


def training_reference(model_name: str, version: str | None) -> pd.DataFrame | None:
    """The training data recorded with `version`; None without a version or without
    recorded data (a model registered some other way)."""
    if version is None:
        return None
    from common.tracking import training_data

    return training_data(model_name, version)
