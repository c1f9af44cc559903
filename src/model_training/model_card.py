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

from common.calibration import ECE_BINS

if TYPE_CHECKING:
    import pandas as pd

    from common.data import DatasetSchema

MISSING = "(missing)"
IMPORTANCE_REPEATS = 5
# Rows of one fold scored per permutation: enough for a stable estimate, few enough
# that every permuted copy fits in one forward call (a few MB at 60 input columns).
IMPORTANCE_MAX_ROWS = 2000
CARD_ARTIFACT = "model_card.md"
# Points of the calibration map the card lists at most (evenly spaced, both ends kept).
MAX_CARD_POINTS = 20


def training_data_digest(data: pd.DataFrame) -> str:
    """sha256 (hex) of the data's values, whatever the order of its rows and columns.

    Each column, in name order, is reduced to arrays: a numeric one to its values as
    little-endian float64 (181 and 181.0 are one value, every NaN is one NaN); any
    other to its distinct values as text, sorted, and each row's index among them
    (int64, -1 where missing). The rows are put in one canonical order first, sorted by
    a 64-bit mix of each row's values, so a shuffle (production runs shuffle without a
    seed) leaves the digest alone while a changed value, row or column changes it.
    Numpy work throughout: a fraction of a second at a million rows, where sorting by
    every column in turn (np.lexsort) takes seconds.
    """
    columns = sorted(data.columns, key=str)
    encoded = [_digest_arrays(data[column]) for column in columns]
    order = np.argsort(_row_keys([values for _, values in encoded], len(data)), kind="stable")
    digest = hashlib.sha256(f"{len(data)} rows\n".encode())
    for column, (distinct, values) in zip(columns, encoded, strict=True):
        digest.update(f"\ncolumn {column}\n".encode())
        if distinct is not None:
            digest.update(("\n".join(distinct) + "\n").encode("utf-8"))
        digest.update(values[order].tobytes())
    return digest.hexdigest()


def _row_keys(columns: Sequence[np.ndarray], rows: int) -> np.ndarray:
    """One uint64 per row mixing the bits of its values (splitmix64's finaliser).

    Equal rows get equal keys; distinct rows collide with odds of about 2**-64 a pair,
    and only then could two orders of the same rows give two digests.
    """
    keys = np.zeros(rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for values in columns:
            keys = (keys ^ values.view(np.uint64)) + np.uint64(0x9E3779B97F4A7C15)
            keys = (keys ^ (keys >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            keys = (keys ^ (keys >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            keys ^= keys >> np.uint64(31)
    return keys


def _digest_arrays(values: pd.Series) -> tuple[list[str] | None, np.ndarray]:
    """A column as (sorted distinct texts, int64 codes) or (None, float64 values)."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numbers = values.to_numpy(dtype="<f8", na_value=np.nan)
        return None, np.where(np.isnan(numbers), np.nan, numbers).astype("<f8")
    present = values.notna().to_numpy()
    codes = np.full(len(values), -1, dtype="<i8")
    found, distinct = pd.factorize(values[present].astype(str), sort=True)
    codes[present] = found
    return [str(text) for text in distinct], codes


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


def _counted(feature: str, name: str, rows: int, hits: float) -> dict[str, Any]:
    return {"feature": feature, "slice": name, "rows": int(rows), "accuracy": float(hits / rows)}


def _slice(feature: str, name: str, correct: np.ndarray) -> dict[str, Any]:
    return _counted(feature, name, len(correct), correct.sum())


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
    import pandas as pd

    correct = np.asarray(correct, dtype=bool).reshape(-1)
    if len(correct) != len(data):
        raise ValueError(
            f"Expected one prediction outcome per row: {len(correct)} for {len(data)} rows."
        )
    slices: list[dict[str, Any]] = []
    for feature in schema.categorical_features:
        # Codes and counts, not one comparison of every row per value: 50 levels of a
        # million rows would take seconds.
        codes, values = pd.factorize(data[feature].astype(object), use_na_sentinel=True)
        names = [str(value) for value in values]
        rows = np.bincount(codes + 1, minlength=len(values) + 1)
        hits = np.bincount(codes + 1, weights=correct, minlength=len(values) + 1)
        for code in sorted(range(len(values)), key=names.__getitem__):
            slices.append(_counted(feature, names[code], rows[code + 1], hits[code + 1]))
        if rows[0]:
            slices.append(_counted(feature, MISSING, rows[0], hits[0]))
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
    # `common.calibration.Calibration.as_dict()`: None for a card made without one.
    calibration: dict[str, Any] | None = None
    # `common.calibration.InputSupport.as_dict()`: None for a card made without one.
    input_support: dict[str, Any] | None = None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.3f}" if isinstance(value, float) else str(value)
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
    created = f" Created {card.created}." if card.created else ""
    sections = [
        f"# Model card: {title}",
        f"{_outcome(card)}{created} Metaflow run `{card.metaflow_run}`, MLflow run "
        f"`{card.mlflow_run_id}`.",
        "## Intended use",
        card.intended_use,
        "## Limitations",
        card.limitations,
        *_training_data_section(card),
        *_cross_validation_section(card),
        *_slices_section(card),
        *_importance_section(card),
        *_calibration_section(card),
    ]
    return "\n\n".join(sections) + "\n"


def _outcome(card: ModelCard) -> str:
    """Whether the model was registered, and why (not)."""
    if card.version:
        return (
            f"Registered as **{card.model_name} version {card.version}**: its cross-validated "
            f"accuracy reached the threshold {card.accuracy_threshold:.3f}."
        )
    return (
        f"**Not registered**: cross-validated accuracy {card.accuracy:.3f} is below the "
        f"threshold {card.accuracy_threshold:.3f}."
    )


def _training_data_section(card: ModelCard) -> list[str]:
    total = sum(card.class_balance.values()) or 1
    balance = [[name, rows, f"{rows / total:.1%}"] for name, rows in card.class_balance.items()]
    return [
        "## Training data",
        f"{card.training_rows} rows from `{card.dataset}`; digest (sha256 of the rows as "
        f"CSV, columns by name, rows sorted) `{card.training_data_digest}`.",
        "### Class balance",
        _table(["class", "rows", "share"], balance),
    ]


def _cross_validation_section(card: ModelCard) -> list[str]:
    folds = [
        [fold["fold"], fold["accuracy"], fold["loss"], fold["train"], fold["test"]]
        for fold in card.folds
    ]
    return [
        "## Cross-validation",
        f"Accuracy **{card.accuracy:.3f}** ± {card.accuracy_std:.3f} over {len(card.folds)} "
        "folds; each fold's model is scored on the rows it did not train on.",
        _table(["fold", "accuracy", "loss", "training rows", "test rows"], folds),
    ]


def _slices_section(card: ModelCard) -> list[str]:
    slices = [[s["feature"], s["slice"], s["rows"], s["accuracy"]] for s in card.slices]
    weakest = weakest_slice(card.slices)
    weakest_line = (
        f"Weakest slice: `{weakest['feature']}` {weakest['slice']}, accuracy "
        f"{weakest['accuracy']:.3f} on {weakest['rows']} rows."
        if weakest
        else "No slices: the dataset has no features."
    )
    return [
        "## Accuracy per slice",
        "Out-of-fold predictions: every row scored by the fold model that did not see it. "
        "Categorical features per value, numeric ones per quartile. " + weakest_line,
        _table(["feature", "slice", "rows", "accuracy"], slices),
    ]


def _importance_section(card: ModelCard) -> list[str]:
    importance = [
        [rank, row["feature"], row["accuracy_drop"], row["std"]]
        for rank, row in enumerate(card.importance, start=1)
    ]
    return [
        "## Permutation feature importance",
        "Accuracy lost when one feature's values are shuffled across rows, scored with "
        "the model server's forward pass on each fold's unseen rows; mean and std over "
        "folds and repeats. Near zero: the model does not rely on the feature.",
        _table(["rank", "feature", "accuracy drop", "std"], importance),
    ]


def _calibration_section(card: ModelCard) -> list[str]:
    """How far the confidences are from the accuracy they announce, and the map that
    monitoring applies to them to estimate accuracy before labels."""
    calibration = card.calibration
    if calibration is None:
        return []
    after = calibration["ece"]
    cross_fitted = (
        f"calibrated, **{after:.3f}** (each fold's rows mapped by the other folds' fit)"
        if after is not None
        else "calibrated: not measured (a single fold)"
    )
    pairs = list(zip(calibration["confidences"], calibration["probabilities"], strict=True))
    shown = np.unique(np.linspace(0, len(pairs) - 1, MAX_CARD_POINTS).round().astype(int))
    points = [list(pairs[index]) for index in shown]
    if len(points) < len(pairs):
        points.append([f"({len(pairs)} points, {len(points)} shown)", ""])
    return [
        "## Confidence calibration",
        f"Fitted on the {calibration['rows']} out-of-fold predictions (accuracy "
        f"{calibration['accuracy']:.3f}) by {calibration['method']} regression of being right "
        "on the top-class confidence; stored with the version as `calibration.json`. "
        f"Expected calibration error ({ECE_BINS} bins): raw confidences "
        f"{calibration['ece_raw']:.3f}; "
        f"{cross_fitted}. Monitoring maps each captured confidence through it and reports "
        "their mean as the estimated accuracy, before any label arrives.",
        _table(["confidence", "P(correct)"], points),
        *_support_line(card.input_support),
    ]


def _support_line(support: dict[str, Any] | None) -> list[str]:
    """Where monitoring stops trusting the confidences (`common.calibration.InputSupport`)."""
    if support is None:
        return []
    return [
        f"Input support (`input_support.json`): a captured row farther than "
        f"**{support['threshold']:.3f}** (Mahalanobis, to the nearest class in the model's "
        f"feature space; the {support['quantile']:.0%} quantile of the {support['rows']} "
        "out-of-fold rows) is outside it; monitoring counts its answer as a guess, right "
        "as often as the class occurs in training, whatever its confidence."
    ]
