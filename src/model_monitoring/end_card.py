"""TODO docstring."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import MonitoringSettings


def monitoring_summary(
    alerts: list[str], metrics: dict[str, float], history_chart: bytes | None
) -> list[Any]:
    """Alerts, this run's figures, and the history of accuracy and drift (a PNG)."""
    from metaflow.cards import Image, Markdown, Table

    components: list[Any] = [Markdown("## Monitoring")]
    if alerts:
        components.append(Markdown("### ALERTS\n" + "\n".join(f"- **{a}**" for a in alerts)))
    else:
        components.append(Markdown("No alerts."))
    components.append(
        Table(
            [[name, f"{value:.4g}"] for name, value in metrics.items()], headers=["figure", "value"]
        )
    )
    if history_chart:
        components += [Markdown("## History"), Image(history_chart)]
    return components


def history_chart(history: pd.DataFrame, settings: MonitoringSettings) -> bytes | None:
    """Accuracy against its threshold and drifted columns per monitoring run, as a PNG;
    None without history. Drawn where the history is read, so the step that shows it
    needs neither matplotlib nor pandas."""
    if not len(history):
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    runs = range(1, len(history) + 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    if "metrics.accuracy" in history:
        left.plot(runs, history["metrics.accuracy"], marker="o", label="accuracy")
    left.axhline(settings.accuracy_threshold, color="red", linestyle="--", label="threshold")
    left.set_title("production accuracy")
    left.set_ylim(0, 1.05)
    left.legend(loc="lower left")
    if "metrics.drifted_columns" in history:
        right.bar(runs, history["metrics.drifted_columns"], color="tab:orange")
    right.set_title("drifted columns (alert when > 0)")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_xlabel("monitoring run")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()
