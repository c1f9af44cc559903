"""The deployment pipeline's `start` card: this run's decision beside the model's history.

The decision with its figures first, then, with `--shadow`, which version shadows
which (`shadow_section`), then the newest recorded deployment decisions
(`promotion.audit.deployment_history`), one row each, so that a refusal can be read
next to what was promoted, forced or rolled back before.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from promotion.decision import Decision
    from promotion.evidence import CrossValidated

HISTORY_COLUMNS = ("when", "decision", "version", "champion", "shadow", "evidence", "target")


def history_card(
    decision: Decision, history: list[dict[str, Any]], shadow: list[Any] | None = None
) -> list[Any]:
    """This run's decision with its figures, the shadow's section (`shadow_section`) when
    there is one, then the model's deployment history."""
    from metaflow.cards import Markdown, Table

    components: list[Any] = [
        Markdown(f"## Decision: {decision.decision}\n{decision.reason}."),
        Markdown(f"Evidence: **{decision.evidence}**."),
    ]
    if decision.figures:
        rows = [[name, _cell(value)] for name, value in sorted(decision.figures.items())]
        components.append(Table(rows, headers=["figure", "value"]))
    components += shadow or []
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


def shadow_section(
    shadow: str, served: str, scores: dict[str, CrossValidated | None], refused: bool
) -> list[Any]:
    """Which version shadows which, and the two versions' cross-validated accuracy
    (`scores`, by version; None where nothing recorded it) until monitoring compares
    them on the same production rows."""
    from metaflow.cards import Markdown, Table

    if refused:
        what = f"Version {shadow} was to score every request in shadow beside version "
        what += f"{served}; the decision above refused the run, so nothing changed."
    else:
        what = (
            f"Version **{shadow}** scores every request in shadow beside version **{served}**, "
            f"which answers: clients never see the shadow's answers. Both are captured; once "
            "labels come, the monitoring pipeline compares the two on the same rows "
            "(accuracy of each, McNemar's test) and the promotion rule decides on them."
        )
    rows = [
        [f"v{version} ({role})", "not recorded" if score is None else score.describe()]
        for version, role in ((served, "served"), (shadow, "shadow"))
        for score in [scores.get(version)]
    ]
    return [
        Markdown(f"## Shadow: version {shadow}\n{what}"),
        Markdown("Until then, their training figures:"),
        Table(rows, headers=["version", "cross-validated accuracy"]),
    ]


def _cell(value: Any) -> str:
    """A figure or history field as a table shows it: short numbers, JSON for the rest."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 0.001 else f"{value:.3f}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
