"""promotion.promotion_event: the promotion event's settings and payload, and where the
deployment pipeline may deploy. The trigger itself is compiled for Argo Workflows in
tests/pipelines/test_scheduling.py."""

from __future__ import annotations

import pytest

from common.settings_loader import SettingsError
from promotion.promotion_event import (
    VERSION_FIELD,
    configured_event,
    deploying_here_error,
    promotion_payload,
)


def test_the_promotion_event_is_off_unless_named() -> None:
    assert configured_event({"project": "penguins"}) is None
    assert configured_event({"promotion": {"event": ""}}) is None  # `${VAR:-}` unset
    assert configured_event({"promotion": {"auto": True, "event": "promote"}}) == "promote"


def test_a_malformed_promotion_event_is_refused_naming_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"promotion\.event") as raised:
        configured_event({"promotion": {"event": "promote me!"}})
    assert "no promotion by event" in str(raised.value)


def test_the_payload_maps_only_the_version_onto_a_deployment_parameter() -> None:
    from metaflow import Parameter

    from pipelines.deployment import Deployment

    flow = getattr(Deployment, "_flow_cls", Deployment)  # A FlowMutator wraps the class.
    parameters = {
        value.name.replace("-", "_")
        for value in (getattr(flow, name) for name in dir(flow) if not name.startswith("__"))
        if isinstance(value, Parameter)
    }
    payload = promotion_payload("7", "Monitoring/12", "better")
    assert set(payload) & parameters == {VERSION_FIELD}
    assert payload[VERSION_FIELD] == "7"


@pytest.mark.parametrize(
    ("platform", "local_server", "refused"),
    [
        ("local", True, False),
        ("argo-workflows", False, False),  # SageMaker deploys through AWS's API
        ("argo-workflows", True, True),
        ("aws-batch", True, True),
        ("kubernetes", True, True),
        ("step-functions", False, False),
    ],
)
def test_a_worker_never_deploys_a_server_on_itself(
    platform: str, local_server: bool, refused: bool
) -> None:
    error = deploying_here_error(platform, local_server)
    assert (error is not None) is refused
    if refused:
        assert platform in error and "--model-version" in error
