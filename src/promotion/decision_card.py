"""The deployment pipeline's `start` card: this run's decision beside the model's history.

The decision with its figures first, then the newest recorded deployment decisions
(`promotion.audit.deployment_history`), one row each, so that a refusal can be read
next to what was promoted, forced or rolled back before.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promotion.decision import Decision

HISTORY_COLUMNS = ("when", "decision", "version", "champion", "shadow", "evidence", "target")


def history_card(decision: Decision, history: list[dict[str, Any]]) -> list[Any]:
    """This run's decision with its figures, then the model's deployment history."""
    from metaflow.cards import Markdown, Table

    components: list[Any] = [
        Markdown(f"## Decision: {decision.decision}\n{decision.reason}."),
        Markdown(f"Evidence: **{decision.evidence}**."),
    ]
    if decision.figures:
        rows = [[name, _cell(value)] for name, value in sorted(decision.figures.items())]
        components.append(Table(rows, headers=["figure", "value"]))
    components.append(Markdown(f"## Deployment history ({len(history)} newest events)"))
    if history:
        rows = [
            [*(_cell(event.get(name)) for name in HISTORY_COLUMNS), event.get("reason") or ""]
            for event in history
        ]
        components.append(Table(rows, headers=[*HISTORY_COLUMNS, "reason"]))
    else:
        components.append(Markdown("Nothing recorded yet."))
    return components


def _cell(value: Any) -> str:
    """A figure or history field as a table shows it: short numbers, JSON for the rest."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
