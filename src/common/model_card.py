"""The model card of a registered version: its data, scores, weak spots and uses.

Plain functions on numpy and pandas, so the training pipeline's steps compute the
card's contents from what they already hold (the cross-validation's out-of-fold
predictions, each fold model's numpy weights) without another import or model call.

Slices and permutation importance are measured on the out-of-fold predictions of
cross-validation: every row is scored by a model that never saw it, and every row
counts. A held-out split would leave a fifth of a small dataset, a few rows per
slice; the final model scored on its own training rows would flatter every slice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from common.data import DatasetSchema

MISSING = "(missing)"
IMPORTANCE_REPEATS = 5
# Rows of one fold scored per permutation: enough for a stable estimate, few enough
# that every permuted copy fits in one forward call (a few MB at 60 input columns).
IMPORTANCE_MAX_ROWS = 2000
CARD_ARTIFACT = "model_card.md"


def training_data_digest(data: pd.DataFrame) -> str:
    """sha256 (hex) of the rows as CSV, columns in name order and rows sorted.

    The same rows give the same digest whatever their order (production runs shuffle
    without a seed) and whatever the column order; a changed value, row or column
    gives another. Values are written as pandas writes CSV (floats at full precision).
    """
    columns = sorted(data.columns, key=str)
    header = ",".join(str(column) for column in columns)
    lines = data[columns].to_csv(index=False, header=False, lineterminator="\n").split("\n")
    digest = hashlib.sha256(header.encode("utf-8"))
    for line in sorted(line for line in lines if line):
        digest.update(b"\n" + line.encode("utf-8"))
    return digest.hexdigest()


def class_balance(labels: pd.Series) -> dict[str, int]:
    """Rows per class, largest first."""
    return {str(name): int(rows) for name, rows in labels.value_counts().items()}


def feature_columns(features_transformer: Any, schema: DatasetSchema) -> dict[str, list[int]]:
    """The transformed columns each raw feature becomes, from a fitted features transformer.

    A numeric feature is one column; a categorical one is as many one-hot columns as
    categories its transformer saw. Permuting a raw feature's values across rows is
    permuting these columns together: every part of the transformer works row by row.
    """
    columns: dict[str, list[int]] = {}
    slices = features_transformer.output_indices_
    if schema.numeric_features:
        start = slices["numeric"].start
        for offset, name in enumerate(schema.numeric_features):
            columns[name] = [start + offset]
    if schema.categorical_features:
        start = slices["categorical"].start
        encoder = features_transformer.named_transformers_["categorical"][-1]
        for name, categories in zip(schema.categorical_features, encoder.categories_, strict=True):
            columns[name] = list(range(start, start + len(categories)))
            start += len(categories)
    return columns


def permutation_importance(
    forward: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    columns: Mapping[str, Sequence[int]],
    repeats: int = IMPORTANCE_REPEATS,
    seed: int | None = None,
    max_rows: int = IMPORTANCE_MAX_ROWS,
) -> dict[str, list[float]]:
    """Accuracy lost when each feature's values are shuffled across rows, per repeat.

    `forward` maps transformed rows to class probabilities (the server's numpy forward
    pass). Every permuted copy of `x` is stacked into one batch and scored in a single
    call, so even a Keras fallback is called once, not once per feature and repeat.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype="float32")
    y = np.asarray(y, dtype=int).reshape(-1)
    if len(x) > max_rows:
        chosen = rng.choice(len(x), max_rows, replace=False)
        x, y = x[chosen], y[chosen]
    names = list(columns)
    if not len(x) or not names:
        return {name: [0.0] * repeats for name in names}
    copies = np.repeat(x[np.newaxis], len(names) * repeats + 1, axis=0)
    for index, name in enumerate(names):
        group = list(columns[name])
        for repeat in range(repeats):
            copy = copies[1 + index * repeats + repeat]
            copy[:, group] = copy[rng.permutation(len(x))][:, group]
    probabilities = np.asarray(forward(copies.reshape(-1, x.shape[1])))
    correct = probabilities.argmax(axis=1).reshape(len(copies), len(x)) == y
    accuracies = correct.mean(axis=1)
    drops = (accuracies[0] - accuracies[1:]).reshape(len(names), repeats)
    return {name: [float(drop) for drop in drops[i]] for i, name in enumerate(names)}


def summarize_importance(per_fold: Sequence[Mapping[str, Sequence[float]]]) -> list[dict[str, Any]]:
    """Mean and std of each feature's accuracy drop over all folds and repeats, largest first."""
    names = list(per_fold[0]) if per_fold else []
    summary = []
    for name in names:
        drops = np.concatenate([np.asarray(fold[name], dtype=float) for fold in per_fold])
        summary.append(
            {
                "feature": name,
                "accuracy_drop": float(drops.mean()),
                "std": float(drops.std()),
            }
        )
    return sorted(summary, key=lambda row: -row["accuracy_drop"])


def _slice(feature: str, name: str, correct: np.ndarray) -> dict[str, Any]:
    return {
        "feature": feature,
        "slice": name,
        "rows": len(correct),
        "accuracy": float(correct.mean()),
    }


def _quartile_slices(feature: str, values: np.ndarray, correct: np.ndarray) -> list[dict]:
    """Slices at the quartiles; tied values can merge quartiles, then fewer slices."""
    present = ~np.isnan(values)
    slices = []
    if present.any():
        known = values[present]
        edges = np.unique(np.quantile(known, [0.25, 0.5, 0.75]))
        # side="left": a value equal to an edge belongs to the slice below it.
        bins = np.searchsorted(edges, known, side="left")
        bounds = [known.min(), *edges, known.max()]
        numbered = len(edges) == 3
        for index in range(len(edges) + 1):
            inside = bins == index
            if not inside.any():
                continue
            low, high = bounds[index], bounds[index + 1]
            interval = f"{'[' if index == 0 else '('}{low:.4g}, {high:.4g}]"
            name = f"Q{index + 1} {interval}" if numbered else interval
            slices.append(_slice(feature, name, correct[present][inside]))
    if not present.all():
        slices.append(_slice(feature, MISSING, correct[~present]))
    return slices


def slice_accuracy(
    data: pd.DataFrame, schema: DatasetSchema, correct: np.ndarray
) -> list[dict[str, Any]]:
    """Accuracy per value of each categorical feature and per quartile of each numeric one.

    `correct[i]` says whether row `i` of `data` was predicted right (by a model that
    did not train on it). Missing values are a slice of their own.
    """
    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if len(correct) != len(data):
        raise ValueError(
            f"Expected one prediction outcome per row: {len(correct)} for {len(data)} rows."
        )
    slices: list[dict[str, Any]] = []
    for feature in schema.categorical_features:
        values = data[feature]
        missing = values.isna().to_numpy()
        labels = values.astype(str).to_numpy()
        for value in sorted(set(labels[~missing].tolist())):
            slices.append(_slice(feature, value, correct[~missing & (labels == value)]))
        if missing.any():
            slices.append(_slice(feature, MISSING, correct[missing]))
    for feature in schema.numeric_features:
        values = data[feature].to_numpy(dtype=float, na_value=np.nan)
        slices.extend(_quartile_slices(feature, values, correct))
    return slices


@dataclass(frozen=True)
class ModelCard:
    """Everything a model card shows. `version` is None when nothing was registered."""

    model_name: str
    version: str | None
    metaflow_run: str
    mlflow_run_id: str
    dataset: str
    training_rows: int
    class_balance: dict[str, int]
    training_data_digest: str
    folds: list[dict[str, Any]]
    accuracy: float
    accuracy_std: float
    accuracy_threshold: float
    slices: list[dict[str, Any]]
    importance: list[dict[str, Any]]
    intended_use: str
    limitations: str
    created: str = ""


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def weakest_slice(slices: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The slice with the lowest accuracy (the larger one on a tie), or None."""
    return min(slices, key=lambda s: (s["accuracy"], -s["rows"]), default=None)


def render_markdown(card: ModelCard) -> str:
    """The card as one Markdown document: the MLflow artifact and the Metaflow card."""
    title = f"{card.model_name} version {card.version}" if card.version else card.model_name
    if card.version:
        outcome = (
            f"Registered as **{card.model_name} version {card.version}**: its cross-validated "
            f"accuracy reached the threshold {card.accuracy_threshold:.4f}."
        )
    else:
        outcome = (
            f"**Not registered**: cross-validated accuracy {card.accuracy:.4f} is below the "
            f"threshold {card.accuracy_threshold:.4f}."
        )
    total = sum(card.class_balance.values()) or 1
    balance = [[name, rows, f"{rows / total:.1%}"] for name, rows in card.class_balance.items()]
    folds = [
        [fold["fold"], fold["accuracy"], fold["loss"], fold["train"], fold["test"]]
        for fold in card.folds
    ]
    slices = [[s["feature"], s["slice"], s["rows"], s["accuracy"]] for s in card.slices]
    importance = [
        [rank, row["feature"], row["accuracy_drop"], row["std"]]
        for rank, row in enumerate(card.importance, start=1)
    ]
    weakest = weakest_slice(card.slices)
    weakest_line = (
        f"Weakest slice: `{weakest['feature']}` {weakest['slice']}, accuracy "
        f"{weakest['accuracy']:.4f} on {weakest['rows']} rows."
        if weakest
        else "No slices: the dataset has no features."
    )
    created = f" Created {card.created}." if card.created else ""
    sections = [
        f"# Model card: {title}",
        f"{outcome}{created} Metaflow run `{card.metaflow_run}`, MLflow run "
        f"`{card.mlflow_run_id}`.",
        "## Intended use",
        card.intended_use,
        "## Limitations",
        card.limitations,
        "## Training data",
        f"{card.training_rows} rows from `{card.dataset}`; digest (sha256 of the rows as "
        f"CSV, columns by name, rows sorted) `{card.training_data_digest}`.",
        "### Class balance",
        _table(["class", "rows", "share"], balance),
        "## Cross-validation",
        f"Accuracy **{card.accuracy:.4f}** ± {card.accuracy_std:.4f} over {len(card.folds)} "
        "folds; each fold's model is scored on the rows it did not train on.",
        _table(["fold", "accuracy", "loss", "training rows", "test rows"], folds),
        "## Accuracy per slice",
        "Out-of-fold predictions: every row scored by the fold model that did not see it. "
        "Categorical features per value, numeric ones per quartile. " + weakest_line,
        _table(["feature", "slice", "rows", "accuracy"], slices),
        "## Permutation feature importance",
        "Accuracy lost when one feature's values are shuffled across rows, scored with "
        "the model server's forward pass on each fold's unseen rows; mean and std over "
        "folds and repeats. Near zero: the model does not rely on the feature.",
        _table(["rank", "feature", "accuracy drop", "std"], importance),
    ]
    return "\n\n".join(sections) + "\n"
