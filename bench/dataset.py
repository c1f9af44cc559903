"""Generate a synthetic classification dataset of N rows, with a project config for it.

    uv run python -m bench.dataset --rows 100000 --directory /tmp/synthetic

writes `synthetic.csv` and `synthetic.yml` into the directory, then prints their paths.
The pipelines read them as they read the penguins:

    uv run src/pipelines/training.py --config project /tmp/synthetic/synthetic.yml \
        run --dataset /tmp/synthetic/synthetic.csv --training-batch-size 256

The data: 10 feature columns, 6 numeric (two on large scales) and 4 categorical (one with
50 levels), about 2% missing values in five of them plus a placeholder value ("?")
configured as extraneous, and a 3-class target that depends on most features and
some noise, so a model has something to learn but not everything. `--seed` makes the
file repeatable; nothing here touches the network.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
LOCAL_CONFIG = ROOT / "config" / "local.yml"
NAME = "synthetic"
CLASSES = np.array(["alpha", "beta", "gamma"], dtype=object)
NUMERIC = ["x1", "x2", "x3", "x4", "amount", "duration"]
CATEGORICAL = ["region", "channel", "tier", "flag"]
REGIONS = np.array([f"region-{index:02d}" for index in range(50)], dtype=object)
CHANNELS = np.array(["web", "store", "phone", "partner"], dtype=object)
TIERS = np.array(["bronze", "silver", "gold"], dtype=object)
FLAGS = np.array(["yes", "no"], dtype=object)
MISSING = {"x2": 0.02, "x4": 0.02, "amount": 0.02, "region": 0.02, "channel": 0.02}


def generate(rows: int, seed: int = 0) -> pd.DataFrame:
    """`rows` rows of features and a `label` column; see the module docstring."""
    if rows < 10:
        raise ValueError(f"--rows must be at least 10, got {rows}.")
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(rows, 4))
    amount = rng.lognormal(mean=6.0, sigma=1.0, size=rows)
    duration = rng.gamma(shape=2.0, scale=300.0, size=rows)
    region = rng.integers(0, len(REGIONS), rows)
    channel = rng.integers(0, len(CHANNELS), rows)
    tier = rng.integers(0, len(TIERS), rows)
    flag = rng.integers(0, len(FLAGS), rows)

    # Each class scores the rows; the best score, plus noise, is the label.
    weights = rng.normal(size=(4, len(CLASSES)))
    region_effect = rng.normal(scale=0.8, size=(len(REGIONS), len(CLASSES)))
    channel_effect = rng.normal(scale=0.5, size=(len(CHANNELS), len(CLASSES)))
    tier_effect = rng.normal(scale=0.5, size=(len(TIERS), len(CLASSES)))
    scores = (
        numeric @ weights
        + np.log(amount)[:, None] * np.array([0.4, -0.2, -0.2])
        + (duration / 600.0)[:, None] * np.array([-0.3, 0.5, -0.2])
        + region_effect[region]
        + channel_effect[channel]
        + tier_effect[tier]
        + rng.gumbel(scale=0.3, size=(rows, len(CLASSES)))
    )
    data = pd.DataFrame(
        {
            "x1": numeric[:, 0],
            "x2": numeric[:, 1],
            "x3": numeric[:, 2],
            "x4": numeric[:, 3],
            "amount": amount.round(2),
            "duration": duration.round(0),
            "region": REGIONS[region],
            "channel": CHANNELS[channel],
            "tier": TIERS[tier],
            "flag": FLAGS[flag],
            "label": CLASSES[scores.argmax(axis=1)],
        }
    )
    for column, share in MISSING.items():
        data.loc[rng.random(rows) < share, column] = np.nan
    # A placeholder the config lists under `extraneous_values`, as the penguins' ".".
    data.loc[rng.random(rows) < 0.005, "tier"] = "?"
    return data


def project_config(model_name: str = NAME) -> dict:
    """config/local.yml with this dataset's `dataset` section and its own model name."""
    local = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    return {
        "project": NAME,
        "backend": local["backend"],
        "dataset": {
            "target": "label",
            "numeric_features": NUMERIC,
            "categorical_features": CATEGORICAL,
            "extraneous_values": {"tier": ["?"]},
        },
        "model": {"name": model_name},
    }


def write(directory: Path, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """Write the dataset and its config into `directory`; return (csv, config)."""
    directory.mkdir(parents=True, exist_ok=True)
    csv, config = directory / f"{NAME}.csv", directory / f"{NAME}.yml"
    generate(rows, seed).to_csv(csv, index=False)
    config.write_text(yaml.safe_dump(project_config(), sort_keys=False), encoding="utf-8")
    return csv, config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows (default 100000)")
    parser.add_argument("--directory", type=Path, required=True, help="where to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        csv, config = write(args.directory, args.rows, args.seed)
    except ValueError as error:
        parser.error(str(error))
    print(f"{args.rows} rows in {time.perf_counter() - started:.1f} s")
    print(f"dataset: {csv} ({csv.stat().st_size / 2**20:.1f} MiB)")
    print(f"config:  {config}")


if __name__ == "__main__":
    main()
