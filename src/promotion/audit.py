"""The deployment audit trail: every decision about deploying a model, kept in the registry.

Each decision the deployment pipeline takes (promoted, refused, forced, rollback,
redeployed, shadow) is one event, written as model-version tags on every version it
involves: `audit.<event id>.<field>`. The event id starts with the UTC time to the
microsecond, so tags sort by time and no event ever overwrites another: a version can
be refused, then forced, then rolled back, and all three stay readable in MLflow.
`deployment_history` reads them back, newest first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.registry import equals_filter
from promotion.decision import REDEPLOYED, ROLLBACK

AUDIT_PREFIX = "audit."


AUDIT_FIELDS = (
    "decision", "reason", "figures", "when", "target", "version", "champion", "shadow",
    "evidence", "run", "role",
)  # fmt: skip


@dataclass(frozen=True)
class DeploymentEvent:
    """One decision about deploying `version` of a model, as the audit trail keeps it.

    `champion`: the version it was compared with or replaced (None: there was none);
    `evidence`: what the decision rests on (`production`, `cross-validation`, `none`);
    `figures`: the numbers behind it (JSON-ready); `run`: the Metaflow run pathspec.
    """

    decision: str
    reason: str
    version: str
    when: str
    target: str
    champion: str | None = None
    shadow: str | None = None
    evidence: str = "none"
    figures: dict[str, Any] | None = None
    run: str | None = None


def promotion_roles(decision: str, version: str, previous: str | None) -> dict[str, str]:
    """Each version's part in `decision`, which made `version` the champion after `previous`."""
    role = {ROLLBACK: "restored", REDEPLOYED: "champion"}.get(decision, "challenger")
    replaced = {previous: "replaced"} if previous and previous != version else {}
    return {version: role, **replaced}


def event_id(when: datetime) -> str:
    """A sortable, unique-enough key for an event at `when` (UTC, microseconds)."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def audit_tags(identifier: str, event: DeploymentEvent, role: str) -> dict[str, str]:
    """The tags one version gets for `event`; `role` is its part in it (e.g. challenger)."""
    import json

    values = {
        "decision": event.decision,
        "reason": event.reason,
        "figures": json.dumps(event.figures or {}, sort_keys=True),
        "when": event.when,
        "target": event.target,
        "version": event.version,
        "champion": event.champion or "",
        "shadow": event.shadow or "",
        "evidence": event.evidence,
        "run": event.run or "",
        "role": role,
    }
    return {f"{AUDIT_PREFIX}{identifier}.{name}": value for name, value in values.items()}


def record_event(
    client: Any, name: str, event: DeploymentEvent, roles: dict[str, str], when: datetime
) -> str:
    """Write `event` on each version of `roles` (version -> its role); return the event id."""
    identifier = event_id(when)
    for version, role in roles.items():
        for key, value in audit_tags(identifier, event, role).items():
            client.set_model_version_tag(name, version, key, value)
    return identifier


def deployment_history(client: Any, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every recorded deployment decision about model `name`, newest first.

    One dict per event: `id`, the fields of `DeploymentEvent` (`figures` parsed back
    from JSON) and `roles` (version -> its part in the event).
    """
    import json

    events: dict[str, dict[str, Any]] = {}
    for version in client.search_model_versions(equals_filter("name", name)):
        fields: dict[str, dict[str, str]] = {}
        for key, value in (version.tags or {}).items():
            if not key.startswith(AUDIT_PREFIX):
                continue
            identifier, _, field_name = key.removeprefix(AUDIT_PREFIX).rpartition(".")
            if identifier and field_name in AUDIT_FIELDS:
                fields.setdefault(identifier, {})[field_name] = value
        for identifier, values in fields.items():
            event = events.setdefault(identifier, {"id": identifier, "roles": {}})
            event["roles"][str(version.version)] = values.pop("role", "")
            for field_name, value in values.items():
                event[field_name] = value or None
    for event in events.values():
        # A value written by hand, not by the pipeline, stays the text it is.
        with contextlib.suppress(json.JSONDecodeError):
            event["figures"] = json.loads(event.get("figures") or "{}")
    history = sorted(events.values(), key=lambda event: event["id"], reverse=True)
    return history if limit is None else history[:limit]
