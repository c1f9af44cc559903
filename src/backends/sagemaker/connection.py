"""AWS clients for one endpoint's settings, made on first use.

Building a backend contacts no AWS: pipelines that only read their settings, and the
tests of settings, need no credentials.
"""

from __future__ import annotations

from typing import Any

from backends.aws import client_config, session
from backends.sagemaker.settings import SagemakerSettings


class Connection:
    """The settings of one endpoint and the AWS clients that act on it."""

    def __init__(self, settings: SagemakerSettings) -> None:
        self.settings = settings
        self.session: Any = None
        self.clients: dict[str, Any] = {}

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    def client(self, service: str) -> Any:
        """The boto3 client of `service`, under `assume_role` when one is set."""
        if service not in self.clients:
            if self.session is None:
                self.session = session(
                    self.settings.region, self.settings.assume_role, f"{self.endpoint}-backend"
                )
            self.clients[service] = self.session.client(service, config=client_config())
        return self.clients[service]

    @property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @property
    def s3(self) -> Any:
        return self.client("s3")
