"""The deployment audit trail: every decision about deploying a model, kept in the registry.

Each decision the deployment pipeline takes (promoted, refused, forced, rollback,
redeployed, shadow) is one event, written as one model-version tag on every version it
involves: `audit.<event id>`. Its value starts with a sentence a person reads in the
registry's tag column ("2026-12-07 23:10:05 UTC promoted v3 (this version: challenger):
..."); the line after it holds the whole event as JSON, which `deployment_history` reads
back, newest first, for the deployment card's table. The event id is the UTC time to
the microsecond, so tags sort by time and no event ever overwrites another: a version
can be refused, then forced, then rolled back, and all three stay readable in MLflow.
Versions audited before the one-tag form carry one tag per field,
`audit.<event id>.<field>`: `deployment_history` reads those too.
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


def audit_sentence(event: DeploymentEvent, role: str, when: datetime) -> str:
    """The decision in one line, as the version in `role` reads it in the registry."""
    moment = when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} {event.decision} v{event.version} (this version: {role}): {event.reason}"


def audit_tag(event: DeploymentEvent, role: str, when: datetime) -> str:
    """The value of one version's tag for `event`: the sentence, then the event as JSON."""
    import json

    record = {name: getattr(event, name) for name in AUDIT_FIELDS if name != "role"}
    record |= {"figures": event.figures or {}, "role": role}
    return f"{audit_sentence(event, role, when)}\n{json.dumps(record, sort_keys=True)}"


def record_event(
    client: Any, name: str, event: DeploymentEvent, roles: dict[str, str], when: datetime
) -> str:
    """Write `event` on each version of `roles` (version -> its role); return the event id."""
    identifier = event_id(when)
    for version, role in roles.items():
        value = audit_tag(event, role, when)
        client.set_model_version_tag(name, version, f"{AUDIT_PREFIX}{identifier}", value)
    return identifier


def deployment_history(client: Any, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Every recorded deployment decision about model `name`, newest first.

    One dict per event: `id`, the fields of `DeploymentEvent` (`figures` parsed back
    from JSON) and `roles` (version -> its part in the event).
    """
    import json

    events: dict[str, dict[str, Any]] = {}
    for version in client.search_model_versions(equals_filter("name", name)):
        for identifier, values in audit_records(version.tags or {}).items():
            event = events.setdefault(identifier, {"id": identifier, "roles": {}})
            event["roles"][str(version.version)] = values.pop("role", None) or ""
            for field_name, value in values.items():
                event[field_name] = value if value not in ("", None) else None
    for event in events.values():
        if isinstance(event.get("figures"), str):
            # A value written by hand, not by the pipeline, stays the text it is.
            with contextlib.suppress(json.JSONDecodeError):
                event["figures"] = json.loads(event["figures"] or "{}")
        event.setdefault("figures", {})
    history = sorted(events.values(), key=lambda event: event["id"], reverse=True)
    return history if limit is None else history[:limit]


def audit_records(tags: dict[str, str]) -> dict[str, dict[str, Any]]:
    """One version's audit events, by event id: each its fields, this version's `role`
    among them. Reads both the one-tag form and the older tag-per-field form."""
    records: dict[str, dict[str, Any]] = {}
    for key, value in tags.items():
        if not key.startswith(AUDIT_PREFIX):
            continue
        identifier, _, field_name = key.removeprefix(AUDIT_PREFIX).partition(".")
        if not field_name:
            records.setdefault(identifier, {}).update(_parse_audit_tag(value))
        elif field_name in AUDIT_FIELDS:
            records.setdefault(identifier, {})[field_name] = value
    return records


def _parse_audit_tag(value: str) -> dict[str, Any]:
    """The fields of a one-tag event; a tag edited by hand keeps its text as the reason."""
    import json

    record = value.rpartition("\n")[2]  # the sentence before it is for people
    try:
        fields = json.loads(record)
    except json.JSONDecodeError:
        fields = None
    if not isinstance(fields, dict):
        return {"reason": value}
    return {name: fields.get(name) for name in AUDIT_FIELDS if name in fields}
