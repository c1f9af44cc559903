"""Tests for backends.sagemaker.settings: the `backend:` settings, checked once, each
refusal naming its key."""

from __future__ import annotations

import pytest
from support.sagemaker_setup import REQUIRED_SETTINGS

from backends.base import BackendError, SettingsError
from backends.sagemaker import Sagemaker


def test_an_unset_placeholder_is_named() -> None:
    with pytest.raises(BackendError, match=r"\$\{BUCKET\}.*BUCKET is not set.*export BUCKET="):
        Sagemaker({**REQUIRED_SETTINGS, "data_capture_uri": "s3://${BUCKET}/datastore"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": ""}, r"^backend\.target: missing"),
        ({"region": None}, r"^backend\.region: missing"),
        ({"target": "bad_name!"}, r"^backend\.target: 'bad_name!' is not a valid endpoint name"),
        ({"ground_truth_uri": "/tmp/labels"}, r"^backend\.ground_truth_uri: '/tmp/labels' is not"),
        ({"model_artifacts_uri": "s3://"}, r"^backend\.model_artifacts_uri: 's3://' is not an"),
        ({"instance_count": "two"}, r"^backend\.instance_count: expected int, got str 'two'"),
        ({"instance_count": True}, r"^backend\.instance_count: expected int, got bool"),
        ({"wait_seconds": 0}, r"^backend\.wait_seconds: must be a positive integer, got 0"),
        ({"image": 3}, r"^backend\.image: expected str, got int 3"),
        (
            {"instance_typ": "ml.t2.medium"},
            r"^backend\.instance_typ: unknown setting, did you mean instance_type\?",
        ),
        (
            {"data_capture": "s3://bucket/x"},
            r"^backend\.data_capture: unknown setting, did you mean data_capture_uri\?",
        ),
        ({"database": "penguins.db"}, r"^backend\.database: unknown setting\. Valid settings:"),
    ],
)
def test_wrong_settings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Sagemaker({**REQUIRED_SETTINGS, **change})


def test_a_bad_setting_is_one_error_for_every_caller() -> None:
    """A BackendError for the backends' callers, a ValueError (the project's SettingsError)
    for `build_backend`, which reports it as one line."""
    from common import settings_loader as settings
    from common.pipeline import PipelineError, build_backend

    with pytest.raises(settings.SettingsError) as info:
        Sagemaker({**REQUIRED_SETTINGS, "wait_second": 60})
    assert isinstance(info.value, BackendError) and isinstance(info.value, ValueError)
    with pytest.raises(PipelineError) as info:
        build_backend("backend.Sagemaker", {**REQUIRED_SETTINGS, "wait_second": 60})
    assert str(info.value).startswith(
        "Backend backend.Sagemaker: backend.wait_second: unknown setting, did you mean "
        "wait_seconds?"
    )


def test_hyphenated_settings_still_load_with_a_warning() -> None:
    old = {**REQUIRED_SETTINGS, "instance-count": 2}
    old["data-capture-uri"] = old.pop("data_capture_uri")
    with pytest.warns(
        FutureWarning, match="backend.data-capture-uri: write it as data_capture_uri"
    ):
        backend = Sagemaker(old)
    assert backend.settings.capture_location == ("bucket", "datastore")
    assert backend.instance_count == 2


def test_settings_are_frozen() -> None:
    import dataclasses

    backend = Sagemaker(REQUIRED_SETTINGS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        backend.settings.target = "other"  # type: ignore[misc]
