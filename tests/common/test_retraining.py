"""Tests for common.retraining: when monitoring asks for retraining, and what it sends.

Publishing goes to a real HTTP server on 127.0.0.1 standing in for the Argo Events
webhook; nothing is mocked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from metaflow import Parameter
from support.webhook import Webhook, serving_webhook

from common.retraining import (
    configured_event,
    request_retraining,
    retraining_decision,
    retraining_payload,
)

ON_ARGO = {"ARGO_WORKFLOW_TEMPLATE": "penguins.prod.monitoring"}
ALERTS = ["Drift detected in culmen_length_mm."]


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with serving_webhook() as hook:
        yield hook


def project(event: str | None) -> dict[str, Any]:
    return {"project": "penguins", "retraining": {"event": event}}


def request(hook: Webhook, event: str | None, alerts: list[str], environ: dict[str, str]) -> Any:
    return request_retraining(
        alerts,
        project(event),
        "penguins",
        "3",
        "Monitoring/42",
        logging.getLogger("test"),
        environ=environ,
        url=hook.url,
    )


# --- decisions ------------------------------------------------------------------------


def test_configured_event() -> None:
    assert configured_event(project("retrain")) == "retrain"
    assert configured_event(project(None)) is None
    assert configured_event({"project": "penguins"}) is None


@pytest.mark.parametrize(
    ("alerts", "event", "on_argo", "publish", "reason"),
    [
        ([], "retrain", True, False, "no alert"),
        (ALERTS, None, True, False, "set `retraining.event`"),
        (ALERTS, "retrain", False, False, "Argo Workflows only"),
        (ALERTS, "retrain", True, True, "publishing event 'retrain'"),
    ],
)
def test_retraining_decision(
    alerts: list[str], event: str | None, on_argo: bool, publish: bool, reason: str
) -> None:
    decided, why = retraining_decision(alerts, event, on_argo)
    assert decided is publish
    assert reason in why


def test_payload_sets_no_training_parameter() -> None:
    """Metaflow maps payload fields named like a parameter onto it: none may collide."""
    from pipelines.training import Training

    flow = getattr(Training, "_flow_cls", Training)  # A FlowMutator wraps the class.
    parameters = {
        value.name.replace("-", "_")
        for value in (getattr(flow, name) for name in dir(flow) if not name.startswith("__"))
        if isinstance(value, Parameter)
    }
    assert {"dataset", "training_epochs", "backend"} <= parameters
    payload = retraining_payload(ALERTS, "penguins", "3", "Monitoring/42")
    assert not set(payload) & parameters
    assert all(isinstance(value, str) for value in payload.values())


# --- publishing -------------------------------------------------------------------------


def test_alert_on_argo_publishes_the_namespaced_event(webhook: Webhook) -> None:
    event_id = request(webhook, "retrain", ALERTS, ON_ARGO)

    assert event_id
    [body] = webhook.bodies
    # Outside a run there is no @project branch: the name has only Metaflow's prefix.
    assert body["name"] == "mfns.retrain"
    payload = body["payload"]
    assert payload["id"] == event_id
    assert payload["alerts"] == ALERTS[0]
    assert payload["monitored_model"] == "penguins"
    assert payload["monitored_version"] == "3"
    assert payload["monitoring_run"] == "Monitoring/42"


@pytest.mark.parametrize(
    ("event", "alerts", "environ"),
    [("retrain", ALERTS, {}), (None, ALERTS, ON_ARGO), ("retrain", [], ON_ARGO)],
    ids=["local run", "retraining off", "no alert"],
)
def test_nothing_is_published_unless_all_conditions_hold(
    webhook: Webhook, event: str | None, alerts: list[str], environ: dict[str, str]
) -> None:
    assert request(webhook, event, alerts, environ) is None
    assert webhook.bodies == []


def test_a_refused_event_is_logged_not_raised(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.status = 500
    with caplog.at_level(logging.INFO, logger="test"):
        assert request(webhook, "retrain", ALERTS, ON_ARGO) is None
    assert len(webhook.bodies) == 1
    assert "could not be published" in caplog.text
