"""Card components for the pipelines' Metaflow cards (`uv run <flow> card view <step>`)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from common.config import MonitoringSettings


def dataset_summary(data: pd.DataFrame, target: str) -> list[Any]:
    """Size, class balance and missing values of a dataset."""
    from metaflow.cards import Markdown, Table

    balance = data[target].value_counts().rename_axis(target).reset_index(name="rows")
    missing = data.isna().sum().rename_axis("column").reset_index(name="missing values")
    return [
        Markdown(f"## Dataset\n{len(data)} rows, {data.shape[1]} columns, target `{target}`."),
        Markdown("### Class balance"),
        Table.from_dataframe(balance),
        Markdown("### Missing values"),
        Table.from_dataframe(missing),
    ]


def fold_scores(rows: list[dict[str, Any]], summary: dict[str, float]) -> list[Any]:
    """A table of per-fold metrics and their mean and standard deviation."""
    from metaflow.cards import Markdown, Table

    header = ["fold", "test accuracy", "test loss", "training rows", "test rows"]
    body = [[row[key] for key in ("fold", "accuracy", "loss", "train", "test")] for row in rows]
    body = [[cell if not isinstance(cell, float) else f"{cell:.4f}" for cell in r] for r in body]
    return [
        Markdown(
            f"## Cross-validation\nAccuracy **{summary['accuracy']:.4f}** "
            f"± {summary['accuracy_std']:.4f}; loss {summary['loss']:.4f} "
            f"± {summary['loss_std']:.4f}."
        ),
        Table(body, headers=header),
    ]


def confusion_table(matrix: np.ndarray, classes: list[str]) -> list[Any]:
    """The confusion matrix of the cross-validated predictions."""
    from metaflow.cards import Markdown, Table

    rows = [[name, *map(int, counts)] for name, counts in zip(classes, matrix, strict=True)]
    return [
        Markdown("### Confusion matrix (rows: actual, columns: predicted)"),
        Table(rows, headers=["actual \\ predicted", *classes]),
    ]


def training_curves(history: dict[str, list[float]]) -> list[Any]:
    """Loss and accuracy per epoch, drawn as an SVG (no Matplotlib in the training task)."""
    from metaflow.cards import Image, Markdown

    from common.charts import Panel, chart_svg, svg_data_uri

    panels = [
        Panel(f"training {metric}", history[metric], x_label="epoch")
        for metric in ("loss", "accuracy")
    ]
    return [Markdown("## Training curves"), Image(svg_data_uri(chart_svg(panels)))]


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
