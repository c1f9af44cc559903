"""The `Sagemaker` backend: the `Backend` interface over the modules of this package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from backends.base import Backend, ShadowModel
from backends.sagemaker import data, deployment, endpoint, teardown
from backends.sagemaker.connection import Connection
from backends.sagemaker.settings import SagemakerSettings, parse_settings

if TYPE_CHECKING:
    import pandas as pd


class Sagemaker(Backend):
    """Deploy to a SageMaker endpoint; read what it captured from S3.

    See `backends.sagemaker` for the settings. Refuses bad ones (a `SettingsError`,
    which is a ValueError) before any AWS call.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(dict(config or {}))
        self.settings: SagemakerSettings = parse_settings(self.config)
        self.aws = Connection(self.settings)

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    @property
    def instance_type(self) -> str:
        return self.settings.instance_type

    @property
    def instance_count(self) -> int:
        return self.settings.instance_count

    def client(self, service: str) -> Any:
        return self.aws.client(service)

    def describe_endpoint(self) -> dict[str, Any] | None:
        """The endpoint's description, or None when it does not exist."""
        return endpoint.describe_endpoint(self.aws)

    def deployed_version(self) -> str | None:
        return endpoint.deployed_version(self.aws)

    def deployed_shadow_version(self) -> str | None:
        """The version of the endpoint's shadow variant, if it has one in service."""
        return endpoint.deployed_version(self.aws, "shadow")

    def deploy(self, model_uri: str, model_version: str, shadow: ShadowModel | None = None) -> bool:
        """Create the endpoint, or update it blue/green to `model_version`, with `shadow`
        as its shadow variant (none without)."""
        return deployment.deploy(self.aws, model_uri, model_version, shadow)

    def stop(self) -> None:
        """Delete the endpoint, its configs, models and model archives (the billed parts).

        Captured data and ground truth stay in S3: they are the monitoring history.
        """
        teardown.delete_everything(self.aws)

    def invoke(self, payload: list[dict[str, Any]], source: str = "online") -> dict[str, Any]:
        return data.invoke(self.aws, payload, source)

    def save(
        self, model_input: pd.DataFrame, model_output: pd.DataFrame, source: str = "online"
    ) -> None:
        """Write `batch` predictions to S3 as the endpoint's data capture writes its own.

        `online` ones are not written: the endpoint's data capture already stored them.
        """
        data.save(self.aws, model_input, model_output, source)

    def load(
        self, limit: int = 100, labeled_only: bool = False, model_version: str | None = None
    ) -> pd.DataFrame | None:
        return data.load(self.aws, limit, labeled_only, model_version)

    def ground_truth(self) -> dict[str, list[str | None]]:
        return data.ground_truth(self.aws)

    def label(self, ground_truth_quality: float = 0.8) -> int:
        return data.label(self.aws, ground_truth_quality)

    def label_by_id(self, ground_truth: dict[str, str]) -> int:
        return data.label_by_id(self.aws, ground_truth)
