"""Backends: where a model is deployed, how it is invoked, where predictions are kept.

A pipeline picks one with `backend.module` in the project config (or `--backend`);
`@backend` instantiates it as `self.backend_impl` with the config's `backend` settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


class Backend(ABC):
    """What every deployment target provides to the pipelines."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = dict(config or {})

    @abstractmethod
    def deploy(self, model_uri: str, model_version: str) -> None:
        """Serve `model_uri` (registry version `model_version`) at the configured target."""

    @abstractmethod
    def invoke(self, payload: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Send rows to the deployed model and return its predictions."""

    @abstractmethod
    def save(self, model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
        """Capture predictions (inputs and outputs) for monitoring."""

    @abstractmethod
    def load(self, limit: int = 100) -> pd.DataFrame | None:
        """Return the `limit` most recent captured predictions, with ground truth if any."""

    @abstractmethod
    def label(self, ground_truth_quality: float = 0.8) -> int:
        """Attach ground truth to unlabeled captured predictions; return how many."""


class Local(Backend):
    """Serve with `mlflow models serve` on this machine; capture predictions in SQLite.

    Settings: `target` (the invocations URL) and `database` (the SQLite file).
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.target = self.config.get("target", "http://127.0.0.1:8080/invocations")
        self.database = self.config.get("database", "penguins.db")

    def deploy(self, model_uri: str, model_version: str) -> None:
        raise NotImplementedError("Local deployment arrives with the serving work (issue 3).")

    def invoke(self, payload: list[dict[str, Any]]) -> dict[str, Any] | None:
        raise NotImplementedError("Local invocation arrives with the serving work (issue 3).")

    def save(self, model_input: pd.DataFrame, model_output: pd.DataFrame) -> None:
        raise NotImplementedError("Local capture arrives with the serving work (issue 3).")

    def load(self, limit: int = 100) -> pd.DataFrame | None:
        raise NotImplementedError("Local capture arrives with the serving work (issue 3).")

    def label(self, ground_truth_quality: float = 0.8) -> int:
        raise NotImplementedError("Local labelling arrives with the serving work (issue 3).")
