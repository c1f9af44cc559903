"""Project configurations for the tests of common.config and common.settings: a minimal
one, parsing it, the message it is refused with, and what only tests read of settings."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from common.config import parse_project_configuration
from common.settings import ConfigurationError, ProjectSettings

# The variables the config files (and these tests' own) refer to.
PLACEHOLDER_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "ENDPOINT_NAME",
    "BUCKET",
    "AWS_REGION",
    "SAGEMAKER_ROLE",
    "CFG_TEST_VALUE",
    "CFG_TEST_UNSET",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the variables the config files refer to.

    Autouse in every test module that imports it.
    """
    for name in PLACEHOLDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def minimal() -> dict[str, Any]:
    """The smallest valid configuration, as YAML data."""
    return {
        "project": "demo",
        "dataset": {
            "target": "label",
            "numeric_features": ["width", "height"],
            "categorical_features": ["color"],
        },
    }


def parse(config: Any) -> dict[str, Any]:
    """`config` (YAML data) through the parser Metaflow calls."""
    return parse_project_configuration(yaml.safe_dump(config))


def error_message(config_text: str) -> str:
    """What the parser refuses `config_text` with."""
    with pytest.raises(ConfigurationError) as info:
        parse_project_configuration(config_text)
    return str(info.value)


def backend_module(settings: ProjectSettings) -> str:
    """The backend class's name: a `common.pipeline.BACKENDS` name or `module.Class`."""
    return str(settings.backend["module"])
