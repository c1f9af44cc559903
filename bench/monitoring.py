"""Benchmark the monitoring pipeline on a capture database of a given size.

    uv run python bench/monitoring.py [--rows 2000 50000] [--samples N]

For each size, a fresh temporary directory gets a SQLite capture database filled
through the Local backend's own store (rows drawn from the dataset, predictions and
ground truth attached), then `src/pipelines/monitoring.py run --samples <rows>` runs
against it, and the wall time per step is printed. No model is registered, so the
reference is the dataset file (the pipeline's fallback). Loopback only.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from training import ROOT, pipeline_environment, task_durations

CONFIG = """
project: penguins
backend:
  module: backend.Local
  target: http://127.0.0.1:9/invocations
  database: {database}
  state-dir: {state}
dataset:
  target: species
  numeric_features: [culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g]
  categorical_features: [island, sex]
"""


def seed_captures(database: Path, rows: int) -> None:
    """Fill the capture store with `rows` labelled predictions drawn from the dataset."""
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset
    from common.traffic import sample_requests
    from inference.capture import CaptureStore

    schema = DatasetSchema.from_config(load_project_configuration("config/local.yml")["dataset"])
    data = load_dataset(ROOT / "data" / "penguins.csv", schema, seed=1)
    classes = sorted(data[schema.target].unique())
    store = CaptureStore(str(database))
    rng = random.Random(0)
    try:
        for start in range(0, rows, 1000):
            count = min(1000, rows - start)
            inputs = sample_requests(data, schema, count, drift=False, seed=start)
            ids = [uuid.uuid4().hex for _ in range(count)]
            predictions = [rng.choice(classes) for _ in range(count)]
            store.save(ids, inputs, predictions, [0.9] * count, "1")
            store.label(
                {
                    i: p if rng.random() < 0.8 else rng.choice(classes)
                    for i, p in zip(ids, predictions, strict=True)
                }
            )
    finally:
        store.close()


def run(rows: int, samples: int | None, verbose: bool = False) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as directory:
        workdir = Path(directory)
        database = workdir / "captures.db"
        started = time.perf_counter()
        seed_captures(database, rows)
        seeded = time.perf_counter() - started
        config = workdir / "config.yml"
        config.write_text(CONFIG.format(database=database, state=workdir / "serving"))
        (workdir / "metaflow-home").mkdir()
        command = [
            sys.executable, "src/pipelines/monitoring.py", "--config", "project", str(config),
            "run", "--samples", str(samples or rows),
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(
            command, cwd=ROOT, env=pipeline_environment(workdir), capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        lines = (result.stdout + result.stderr).splitlines()
        if result.returncode != 0:
            print("\n".join(lines[-30:]))
            raise SystemExit(f"monitoring failed with exit code {result.returncode}")
        print(f"\n{rows} captured rows (seeded in {seeded:.1f} s), --samples {samples or rows}")
        print(f"  pipeline wall time: {wall:.1f} s   (target: <= 15 s at 2,000, <= 40 s at 50,000)")
        if verbose:
            print("\n".join(lines))
        for step, durations in task_durations(lines).items():
            print(f"  {step:<24} {max(durations):6.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2000, 50000])
    parser.add_argument("--samples", type=int, default=None, help="default: all rows")
    parser.add_argument("--verbose", action="store_true", help="print the pipeline's log")
    options = parser.parse_args()
    os.chdir(ROOT)
    print(f"load average before: {os.getloadavg()}")
    for rows in options.rows:
        run(rows, options.samples, options.verbose)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
