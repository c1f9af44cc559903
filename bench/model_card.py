"""Time what the model card adds to the training pipeline's tasks, per piece.

    uv run python -m bench.model_card [--rows 344 100000 1000000] [--folds 5] [--repeats 5]

For each size: the penguins (344 rows, data/penguins.csv) or bench/dataset.py's
synthetic rows (10 features, one with 50 levels). Each piece runs as the step that owns
it does, with the project's Dense 16-8-softmax network (random weights) through the
server's numpy forward pass:

- transform: `training_data_digest` of the whole dataset;
- transform_fold: `feature_columns` of one fold's fitted features transformer;
- evaluate_fold: `permutation_importance` on one fold's test rows (one forward call);
- average_scores: `slice_accuracy` of the out-of-fold outcomes, `summarize_importance`;
- register: `render_markdown`.

Prints the median of `--repeats` timings of each, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common.data import DatasetSchema, clean_dataset
from inference.forward import dense_forward
from model_training.model_card import (
    ModelCard,
    feature_columns,
    permutation_importance,
    render_markdown,
    slice_accuracy,
    summarize_importance,
    training_data_digest,
)
from model_training.preprocessing import fit_transform

ROOT = Path(__file__).resolve().parent.parent

PENGUINS_ROWS = 344


def dataset(rows: int) -> tuple[pd.DataFrame, DatasetSchema]:
    import yaml

    from bench import dataset as synthetic

    if rows == PENGUINS_ROWS:
        config = yaml.safe_load((ROOT / "config" / "local.yml").read_text(encoding="utf-8"))
        schema = DatasetSchema.from_config(config["dataset"])
        data = pd.read_csv(ROOT / "data" / "penguins.csv")
    else:
        schema = DatasetSchema.from_config(synthetic.project_config()["dataset"])
        data = synthetic.generate(rows)
    return clean_dataset(data, schema), schema


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def bench(rows: int, folds: int, repeats: int) -> dict[str, float]:
    data, schema = dataset(rows)
    transformer, _, x, y = fit_transform(data, schema)
    rng = np.random.default_rng(0)
    sizes = [x.shape[1], 16, 8, int(y.max()) + 1]
    weights = [
        (rng.normal(size=(a, b)).astype("float32"), np.zeros(b, "float32"), activation)
        for a, b, activation in zip(sizes, sizes[1:], ["relu", "relu", "softmax"], strict=False)
    ]
    forward = dense_forward(weights)
    test = np.arange(len(x)) % folds == 0
    columns = feature_columns(transformer, schema)
    correct = forward(x).argmax(axis=1) == y.reshape(-1)
    importances = [permutation_importance(forward, x[test], y[test], columns)] * folds
    slices = slice_accuracy(data, schema, correct)
    card = ModelCard(
        model_name="bench",
        version="1",
        metaflow_run="Training/1",
        mlflow_run_id="0",
        dataset="bench",
        training_rows=len(data),
        class_balance={"a": len(data)},
        training_data_digest=training_data_digest(data),
        folds=[{"fold": f, "accuracy": 0.9, "loss": 0.3, "train": 1, "test": 1} for f in range(5)],
        accuracy=0.9,
        accuracy_std=0.01,
        accuracy_threshold=0.7,
        slices=slices,
        importance=summarize_importance(importances),
        intended_use="bench",
        limitations="bench",
    )
    return {
        "digest": median_seconds(lambda: training_data_digest(data), repeats),
        "feature_columns": median_seconds(lambda: feature_columns(transformer, schema), repeats),
        "importance/fold": median_seconds(
            lambda: permutation_importance(forward, x[test], y[test], columns), repeats
        ),
        "slices": median_seconds(lambda: slice_accuracy(data, schema, correct), repeats),
        "summarize": median_seconds(lambda: summarize_importance(importances), repeats),
        "render": median_seconds(lambda: render_markdown(card), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[PENGUINS_ROWS, 100_000])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; load average before: {' '.join(map(str, os.getloadavg()))}")
    results = {rows: bench(rows, args.folds, args.repeats) for rows in args.rows}
    pieces = list(next(iter(results.values())))
    print(f"{'rows':>10}  " + "  ".join(f"{name:>16}" for name in pieces) + "   (ms, median)")
    for rows, timings in results.items():
        cells = "  ".join(f"{timings[name] * 1000:16.2f}" for name in pieces)
        print(f"{rows:>10,}  {cells}")
    print(f"load average after: {' '.join(map(str, os.getloadavg()))}")


if __name__ == "__main__":
    main()
