"""The monitoring pipeline's `end` card: the verdict, the history, champion and shadow.

`monitoring_summary` shows the alerts and this run's figures, `estimate_section` the
accuracy estimated before labels and which rows each figure used, `history_chart`
draws the figures of past runs, the estimates beside the realised accuracy (drawn in
`start`, where the history is read: `end` then needs neither Matplotlib nor pandas),
`estimate_history` the same as a table, `shadow_section` the comparison of the served
model with its shadow. Each returns Metaflow card components, or the chart's PNG.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import MonitoringSettings


# Figures the card shows as yes/no (MLflow keeps them as 0/1), and those that count
# something (rows, columns, tests) and are shown as whole numbers.
FLAGS = frozenset({"drift_detected", "challenger_better"})
COUNTS = ("rows", "columns", "tests", "missing")


def monitoring_summary(
    alerts: list[str],
    metrics: dict[str, float],
    history_chart: bytes | None,
    failed_tests: list[dict[str, str]] | None = None,
) -> list[Any]:
    """The verdict (alerts, and which Evidently tests failed), this run's figures, and
    the history of accuracy and drift (a PNG). `failed_tests` is
    `reports.failed_tests`: each with its report, name and what it measured."""
    from metaflow.cards import Image, Markdown, Table

    failed_tests = failed_tests or []
    components: list[Any] = [Markdown("## Monitoring"), Markdown(verdict(alerts, failed_tests))]
    if failed_tests:
        rows = [[test["report"], test["name"], test["description"]] for test in failed_tests]
        components += [
            Markdown(f"### Failed tests ({len(failed_tests)})"),
            Table(rows, headers=["report", "test", "measured against the condition"]),
        ]
    figures = [[name, shown_figure(name, value)] for name, value in metrics.items()]
    components.append(Table(figures, headers=["figure", "value"]))
    if history_chart:
        components += [Markdown("## History"), Image(history_chart)]
    return components


def verdict(alerts: list[str], failed_tests: list[dict[str, str]]) -> str:
    """The alerts, or that there are none; a failed test that raised no alert is named
    as such, so "no alerts" never sits beside a failure it does not explain."""
    if alerts:
        return "### ALERTS\n" + "\n".join(f"- **{alert}**" for alert in alerts)
    if not failed_tests:
        return "No alerts."
    names = "; ".join(f"{test['name']} ({test['report']})" for test in failed_tests)
    tests = "test" if len(failed_tests) == 1 else "tests"
    return (
        f"No alerts, but **{len(failed_tests)} Evidently {tests} failed**: {names}. "
        "Only drift and accuracy under the threshold raise alerts; what each failed "
        "test measured is below, and its report card has the details."
    )


def shown_figure(name: str, value: float) -> str:
    """A figure as the card shows it: yes/no, a whole count, a p-value to three
    significant figures, anything else to three decimals."""
    if name in FLAGS:
        return "yes" if value else "no"
    if name.endswith(COUNTS) and float(value).is_integer():
        return str(int(value))
    if name.endswith("p_value"):
        return f"{value:.3g}"
    return f"{value:.3f}"


def history_chart(history: pd.DataFrame, settings: MonitoringSettings) -> bytes | None:
    """Accuracy against its threshold and drifted columns per monitoring run, as a PNG;
    None without history. Drawn where the history is read, so the step that shows it
    needs neither matplotlib nor pandas."""
    if not len(history):
        return None
    from matplotlib import pyplot as plt

    figure = history_figure(history, settings)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def history_figure(history: pd.DataFrame, settings: MonitoringSettings) -> Any:
    """The Matplotlib figure of `history_chart`: runs numbered from 1 on whole-number
    axes, half a run of room each side (one run is one point, not a 0.95-1.05 axis)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = range(1, len(history) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    _estimates(left, runs, history)
    if "metrics.accuracy" in history:
        left.plot(runs, history["metrics.accuracy"], marker="o", label="realised (labels)")
    left.axhline(settings.accuracy_threshold, color="red", linestyle="--", label="threshold")
    left.set_title("production accuracy")
    left.set_ylim(0, 1.05)
    left.legend(loc="lower left")
    if "metrics.drifted_columns" in history:
        right.bar(runs, history["metrics.drifted_columns"], color="tab:orange")
    right.set_title("drifted columns (alert when > 0)")
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (left, right):
        axis.set_xlim(0.5, len(history) + 0.5)
        # Whole runs even when the axis holds a single one (by default Matplotlib then
        # falls back to fractions).
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        axis.set_xlabel("monitoring run")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def _estimates(axis: Any, runs: range, history: pd.DataFrame) -> None:
    """Each run's estimated accuracy with its band, beside where the realised one goes."""
    if "metrics.estimated_accuracy" not in history:
        return
    estimated = history["metrics.estimated_accuracy"].astype(float)
    low = history.get("metrics.estimated_accuracy_low", estimated).astype(float)
    high = history.get("metrics.estimated_accuracy_high", estimated).astype(float)
    axis.errorbar(
        runs,
        estimated,
        yerr=[(estimated - low).clip(lower=0), (high - estimated).clip(lower=0)],
        fmt="s--",
        color="tab:gray",
        capsize=3,
        label="estimated (before labels)",
    )


def estimate_section(
    estimate: dict[str, Any] | None, rows_used: dict[str, dict[str, Any]], threshold: float
) -> list[Any]:
    """The accuracy estimated from the confidences, and which rows each figure used."""
    from metaflow.cards import Markdown

    from model_monitoring.production_rows import rows_sentence

    if estimate is None:
        line = "No recent answers of this version: nothing to estimate."
    else:
        how = "calibrated at registration" if estimate["calibrated"] else "raw: no calibration"
        line = (
            f"**{estimate['accuracy']:.3f}**, 95% band [{estimate['low']:.3f}, "
            f"{estimate['high']:.3f}], on {estimate['rows']} recent answers, labelled or not "
            f"(confidences {how}); threshold {threshold:.3f}. {_support_sentence(estimate)}."
        )
    return [
        Markdown("## Accuracy estimated before labels\n" + line),
        Markdown(
            "### Rows used\n"
            f"- {rows_sentence(rows_used['labelled'], 'Reports and realised accuracy')}\n"
            f"- {rows_sentence(rows_used['recent'], 'Estimate')}"
        ),
    ]


def _support_sentence(estimate: dict[str, Any]) -> str:
    """The estimate's inputs against the training support (none known to older runs)."""
    from model_monitoring.performance_estimate import Estimate

    sentence = Estimate(**estimate).support_sentence()
    return sentence[0].upper() + sentence[1:]


def estimate_history(runs: list[dict[str, Any]]) -> list[Any]:
    """Past runs' estimates beside the accuracy realised once labels came, as a table
    (`history.estimates_beside_accuracy`); nothing without runs."""
    from metaflow.cards import Markdown, Table

    if not runs:
        return []

    def shown(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    rows = [
        [
            run["when"][:19],
            run["version"],
            shown(run["estimated"]),
            "-" if run["low"] is None else f"[{run['low']:.3f}, {run['high']:.3f}]",
            shown(run["accuracy"]),
        ]
        for run in runs
    ]
    headers = ["run started", "version", "estimated", "band", "realised"]
    return [Markdown("### Estimated and realised accuracy"), Table(rows, headers=headers)]


def import_plotting() -> None:
    """Import Matplotlib as `history_chart` uses it.

    Half a second, spent by the monitoring pipeline while its reports run elsewhere.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot


def shadow_section(comparison: dict[str, Any] | None, finding: dict[str, Any] | None) -> list:
    """Card components: both models' figures, the finding, the confusion matrices side
    by side. `comparison` is `ShadowComparison.as_dict()`; nothing without one."""
    if comparison is None:
        return []
    components: list[Any] = [_pair_heading(comparison)]
    if comparison["paired"]:
        components += _paired_figures(comparison)
    if finding is not None:
        components.append(_finding_note(finding))
    if comparison["classes"]:
        components += _confusion_matrices(comparison)
    return components


def _pair_heading(comparison: dict[str, Any]) -> Any:
    from metaflow.cards import Markdown

    champion, shadow = comparison["champion_version"], comparison["shadow_version"]
    return Markdown(
        f"## Champion v{champion} and shadow v{shadow}\n"
        f"{comparison['rows']} labelled rows answered by both; the shadow failed on "
        f"{comparison['missing']} of them."
        + (
            f" {comparison['left_out']} labelled rows of earlier pairs are left out."
            if comparison["left_out"]
            else ""
        )
    )


def _paired_figures(comparison: dict[str, Any]) -> list[Any]:
    """Each model's accuracy and the rows only it got right; the difference and McNemar."""
    from metaflow.cards import Markdown, Table

    champion, shadow = comparison["champion_version"], comparison["shadow_version"]
    paired = comparison["paired"]
    rows = [
        [f"champion v{champion}", f"{paired['champion_accuracy']:.3f}", paired["champion_only"]],
        [f"shadow v{shadow}", f"{paired['challenger_accuracy']:.3f}", paired["challenger_only"]],
    ]
    return [
        Table(rows, headers=["model", "accuracy", "rows only this model got right"]),
        Markdown(
            f"Difference (shadow - champion) **{paired['difference']:+.3f}** on "
            f"{paired['rows']} paired rows; McNemar's exact p-value "
            f"**{paired['p_value']:.3g}**."
        ),
    ]


def _finding_note(finding: dict[str, Any]) -> Any:
    from metaflow.cards import Markdown

    title = (
        "### FINDING: the challenger is better"
        if finding["challenger_better"]
        else "### Finding: the challenger is not better"
    )
    return Markdown(f"{title}\n{finding['summary']}")


def _confusion_matrices(comparison: dict[str, Any]) -> list[Any]:
    """Both models' confusion matrices in one table, the champion's left of the shadow's."""
    from metaflow.cards import Markdown, Table

    classes = comparison["classes"]
    rows = [
        [name, *champion_counts, "|", *shadow_counts]
        for name, champion_counts, shadow_counts in zip(
            classes, comparison["champion_confusion"], comparison["shadow_confusion"], strict=True
        )
    ]
    headers = [
        "actual",
        *(f"champion: {name}" for name in classes),
        "",
        *(f"shadow: {name}" for name in classes),
    ]
    return [
        Markdown("### Confusion matrices (rows: actual; columns: predicted)"),
        Table(rows, headers=headers),
    ]
