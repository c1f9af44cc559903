"""Tests for promotion.audit (the deployment audit trail), on a SQLite registry of its own.

The last test is of common.registry.retire_challenger, which the deployment pipeline
calls when it records a promotion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common.registry import retire_challenger
from promotion.audit import DeploymentEvent, deployment_history, record_event


def event(decision: str, version: str, champion: str | None, **figures: Any) -> DeploymentEvent:
    return DeploymentEvent(
        decision=decision, reason=f"{decision} {version}", version=version, when="t",
        target="http://x", champion=champion, evidence="production", figures=figures,
        run="Deployment/1",
    )  # fmt: skip


def test_every_event_is_kept_newest_first(client: Any) -> None:
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    roles = {"2": "challenger", "1": "champion"}
    record_event(client, "m", event("refused", "2", "1", rows=480), roles, start)
    record_event(client, "m", event("forced", "2", "1"), roles, start + timedelta(seconds=1))
    record_event(
        client, "m", event("rollback", "1", "2"), {"1": "restored", "2": "replaced"},
        start + timedelta(seconds=2),
    )  # fmt: skip

    history = deployment_history(client, "m")

    assert [e["decision"] for e in history] == ["rollback", "forced", "refused"]
    rollback, _, refused = history
    assert rollback["roles"] == {"1": "restored", "2": "replaced"}
    assert refused["roles"] == {"2": "challenger", "1": "champion"}
    assert refused["figures"] == {"rows": 480}
    assert refused["champion"] == "1" and refused["shadow"] is None
    assert refused["run"] == "Deployment/1" and refused["target"] == "http://x"
    assert refused["id"] == "20261201T120000000000Z"
    # Nothing overwritten: version 2 holds all three events in its own tags.
    tags = client.get_model_version("m", "2").tags
    assert sorted(v for k, v in tags.items() if k.endswith(".decision")) == [
        "forced",
        "refused",
        "rollback",
    ]
    assert deployment_history(client, "m", limit=1) == history[:1]
    assert deployment_history(client, "no-such-model") == []


def test_a_promoted_challenger_is_no_longer_the_challenger(client: Any) -> None:
    client.set_registered_model_alias("m", "challenger", "3")
    assert retire_challenger(client, "m", "2") is False
    assert str(client.get_model_version_by_alias("m", "challenger").version) == "3"
    assert retire_challenger(client, "m", "3") is True
    assert "challenger" not in client.get_registered_model("m").aliases
