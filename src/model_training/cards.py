"""The training pipeline's Metaflow card components: the dataset's summary, the folds'
scores, the cross-validated confusion matrix and the final model's training curves.

Each function returns the components one step adds to its card; Metaflow's card
classes (and pandas, through the data given) are imported inside them. The model card
is `model_training.model_card`'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


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
