"""Tests for backends.sagemaker.backend: the `Sagemaker` backend as the pipelines build
it, from config/sagemaker.yml, without contacting AWS."""

from __future__ import annotations

import pytest
from support.paths import SAGEMAKER_CONFIG
from support.sagemaker_setup import REQUIRED_SETTINGS

from backends.sagemaker import Sagemaker


def test_building_the_backend_contacts_no_aws() -> None:
    backend = Sagemaker(REQUIRED_SETTINGS)
    assert backend.aws.clients == {} and backend.aws.session is None
    assert backend.settings.capture_location == ("bucket", "datastore")
    assert backend.settings.artifacts_location == ("bucket", "models")


def test_config_sagemaker_yml_builds_this_backend(monkeypatch: pytest.MonkeyPatch) -> None:

    from common.config import load_project_configuration
    from common.pipeline import build_backend

    monkeypatch.setenv("BUCKET", "my-bucket")
    monkeypatch.delenv("ENDPOINT_NAME", raising=False)
    config = SAGEMAKER_CONFIG
    settings = load_project_configuration(config)["backend"]

    backend = build_backend(settings["module"], settings)

    assert isinstance(backend, Sagemaker)
    assert backend.endpoint == "penguins"
    assert backend.settings.capture_location == ("my-bucket", "datastore")
    assert backend.settings.truth_location == ("my-bucket", "ground-truth")
    assert backend.settings.assume_role is None  # ${SAGEMAKER_ROLE:-} unset: no role to assume
