"""The training pipeline's Metaflow card components: the dataset's summary and where
the run's other cards are, the folds' scores, the cross-validated confusion matrix and
the final model's training curves.

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
    from metaflow.cards import Markdown

    balance = data[target].value_counts().rename_axis(target).reset_index(name="rows")
    missing = data.isna().sum().rename_axis("column").reset_index(name="missing values")
    return [
        Markdown(f"## Dataset\n{len(data)} rows, {data.shape[1]} columns, target `{target}`."),
        Markdown("### Class balance"),
        frame_table(balance),
        Markdown("### Missing values"),
        frame_table(missing),
    ]


def frame_table(frame: pd.DataFrame) -> Any:
    """A card table of every row of `frame`, its columns as headers.

    Not Metaflow's `Table.from_dataframe`, which adds the pandas index as an unnamed
    first column and shows only the first five rows.
    """
    from metaflow.cards import Table

    split = frame.to_dict(orient="split", index=False)
    return Table(split["data"], headers=[str(column) for column in split["columns"]])


TRAINING_FLOW = "src/pipelines/training.py"  # as the README runs it, from the repository


def cards_guide() -> list[Any]:
    """Where the training run's results are, for the `start` card: the card server opens
    on the first step's card (its viewer lists cards from the first step on)."""
    from metaflow.cards import Markdown

    flow_file = TRAINING_FLOW
    return [
        Markdown(
            "## This run's cards\n"
            "- **Model card** of the registered version (data, scores, slices, feature "
            "importance, calibration): step `register`, card id `model_card`.\n"
            "- Cross-validation scores and confusion matrix: step `average_scores`.\n"
            "- Training curves of the final model: step `train`.\n\n"
            f"Open one with `uv run {flow_file} card view <step>`, or write it to a file "
            f"with `uv run {flow_file} card get <step> <file>.html` on a machine without a "
            "desktop browser; the card server lists them all."
        )
    ]


def fold_scores(rows: list[dict[str, Any]], summary: dict[str, float]) -> list[Any]:
    """A table of per-fold metrics and their mean and standard deviation."""
    from metaflow.cards import Markdown, Table

    header = ["fold", "test accuracy", "test loss", "training rows", "test rows"]
    body = [[row[key] for key in ("fold", "accuracy", "loss", "train", "test")] for row in rows]
    body = [[cell if not isinstance(cell, float) else f"{cell:.3f}" for cell in r] for r in body]
    return [
        Markdown(
            f"## Cross-validation\nAccuracy **{summary['accuracy']:.3f}** "
            f"± {summary['accuracy_std']:.3f}; loss {summary['loss']:.3f} "
            f"± {summary['loss_std']:.3f}."
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
