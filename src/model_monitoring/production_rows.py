"""Which production rows a monitoring run examines: those the monitored version answered.

A run reads two windows of the monitored version's captures: the newest `--samples`
with ground truth (the reports, the realised accuracy, the shadow comparison) and the
newest `--samples` with or without it (the accuracy estimate, which needs no label).
Rows another version answered are left out, so each version's figures are its own;
a deployment's smoke-test rows never come back from a backend's `load`.
`describe_rows` says what a window holds, for the card and the log: version, count,
time range and sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Windows:
    """The labelled rows and the estimate's rows (labelled or not) of one version."""

    labelled: pd.DataFrame | None
    recent: pd.DataFrame | None


def version_windows(backend: Any, samples: int, version: str | None) -> Windows:
    """The newest `samples` labelled rows and newest `samples` rows `version` answered
    (every version's when it is None: nothing is registered under the name), from the
    pipeline's backend (a `backends.base.Backend`, which a stage does not import)."""
    return Windows(
        labelled=backend.load(limit=samples, labeled_only=True, model_version=version),
        recent=backend.load(limit=samples, labeled_only=False, model_version=version),
    )


def describe_rows(frame: pd.DataFrame | None, version: str | None) -> dict[str, Any]:
    """What a window holds: {version, rows, first, last (ISO times, UTC), sources}."""
    if frame is None or not len(frame):
        return {"version": version, "rows": 0, "first": None, "last": None, "sources": {}}
    times = frame["created_at"]
    sources = frame["source"].fillna("online").value_counts()
    return {
        "version": version,
        "rows": len(frame),
        "first": times.min().isoformat(timespec="seconds"),
        "last": times.max().isoformat(timespec="seconds"),
        "sources": {str(name): int(count) for name, count in sources.items()},
    }


def rows_sentence(description: dict[str, Any], what: str) -> str:
    """One line saying which rows `what` used."""
    if not description["rows"]:
        return f"{what}: no rows of version {description['version']}."
    sources = ", ".join(f"{count} {name}" for name, count in description["sources"].items())
    return (
        f"{what}: {description['rows']} rows answered by version {description['version']}, "
        f"{description['first']} to {description['last']} ({sources})."
    )
