"""Tests for promotion.audit (the deployment audit trail), on a SQLite registry of its own.

The last test is of common.registry.retire_challenger, which the deployment pipeline
calls when it records a promotion.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from common.registry import retire_challenger
from promotion.audit import AUDIT_FIELDS, DeploymentEvent, deployment_history, record_event


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
    # Nothing overwritten: version 2 holds all three events, one tag each.
    tags = client.get_model_version("m", "2").tags
    audit = {k: v for k, v in tags.items() if k.startswith("audit.")}
    assert sorted(audit) == [
        "audit.20261201T120000000000Z",
        "audit.20261201T120001000000Z",
        "audit.20261201T120002000000Z",
    ]
    assert deployment_history(client, "m", limit=1) == history[:1]
    assert deployment_history(client, "no-such-model") == []


def test_each_version_reads_the_decision_in_one_sentence(client: Any) -> None:
    when = datetime(2026, 12, 7, 23, 10, 5, tzinfo=UTC)
    promoted = DeploymentEvent(
        decision="promoted", reason="challenger v3 0.940 vs champion v2 0.910 on 500 rows",
        version="3", when=when.isoformat(), target="http://x", champion="2",
        figures={"rows": 500},
    )  # fmt: skip
    record_event(client, "m", promoted, {"3": "challenger", "2": "replaced"}, when)

    for version, role in (("3", "challenger"), ("2", "replaced")):
        tags = client.get_model_version("m", version).tags
        audit = [value for key, value in tags.items() if key.startswith("audit.")]
        assert len(audit) == 1, tags
        first_line = audit[0].splitlines()[0]
        assert first_line == (
            f"2026-12-07 23:10:05 UTC promoted v3 (this version: {role}): "
            "challenger v3 0.940 vs champion v2 0.910 on 500 rows"
        )


def test_the_older_tag_per_field_trail_is_still_read(client: Any) -> None:
    """Versions audited before the one-tag form keep `audit.<id>.<field>` tags."""
    old = {"decision": "refused", "reason": "too few rows", "figures": '{"rows": 12}',
           "when": "2026-12-01T12:00:00+00:00", "target": "http://x", "version": "2",
           "champion": "1", "shadow": "", "evidence": "none", "run": "Deployment/4"}  # fmt: skip
    for field_name, value in {**old, "role": "challenger"}.items():
        client.set_model_version_tag("m", "2", f"audit.20261201T120000000000Z.{field_name}", value)
    client.set_model_version_tag("m", "1", "audit.20261201T120000000000Z.role", "champion")
    newer = event("forced", "2", "1", rows=12)
    record_event(client, "m", newer, {"2": "challenger"}, datetime(2026, 12, 2, tzinfo=UTC))

    forced, refused = deployment_history(client, "m")

    assert forced["decision"] == "forced" and forced["figures"] == {"rows": 12}
    assert refused["roles"] == {"2": "challenger", "1": "champion"}
    assert refused["figures"] == {"rows": 12} and refused["shadow"] is None
    assert {name: refused[name] for name in old if name not in ("figures", "shadow")} == {
        name: value for name, value in old.items() if name not in ("figures", "shadow")
    }
    assert set(AUDIT_FIELDS) - {"role"} <= set(forced)


def test_a_hand_written_audit_tag_reads_as_its_text(client: Any) -> None:
    client.set_model_version_tag("m", "1", "audit.20261203T000000000000Z", "checked by hand")

    (note,) = deployment_history(client, "m")

    assert note["reason"] == "checked by hand" and note["roles"] == {"1": ""}


def test_a_promoted_challenger_is_no_longer_the_challenger(client: Any) -> None:
    client.set_registered_model_alias("m", "challenger", "3")
    assert retire_challenger(client, "m", "2") is False
    assert str(client.get_model_version_by_alias("m", "challenger").version) == "3"
    assert retire_challenger(client, "m", "3") is True
    assert "challenger" not in client.get_registered_model("m").aliases
