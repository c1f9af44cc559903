"""Benchmark the monitoring pipeline and the capture store it reads.

    uv run python -m bench.monitoring [--rows 2000 50000] [--store-rows 1000000]
                                      [--samples N] [--verbose]

1. For each `--rows` size, a fresh temporary directory gets a SQLite capture database
   of that many labelled predictions, filled through the project's own `CaptureStore`
   (rows drawn from the dataset), and an MLflow store (`sqlite:///<tmp>/mlflow.db`)
   where version 1 of `penguins` is the champion with its training data recorded, as
   the training pipeline leaves it (the version points at no servable model: monitoring
   only reads its training data). Then `src/pipelines/monitoring.py run --samples
   <rows>` runs against it; the wall time, the seconds before Metaflow starts the
   first task and the time per step are printed.
2. With `--store-rows` (0 skips it), a store of that many predictions, the newest
   100,000 of them without ground truth, is timed through the Local backend: loading
   the newest 5,000 labelled rows as a DataFrame, labelling the 100,000 by id, then
   the monitoring pipeline over it with `--samples 50000`.

Each figure is printed beside its target, with the load average before and after:
on a busy 2-core machine the times are not comparable. Loopback only.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench.machine import machine_line
from bench.training import (
    ROOT,
    TIME_FORMAT,
    WORKFLOW_LINE,
    pipeline_environment,
    task_durations,
)

CONFIG = """
project: penguins
backend:
  module: backend.Local
  target: http://127.0.0.1:9/invocations
  database: {database}
  state_dir: {state}
dataset:
  target: species
  numeric_features: [culmen_length_mm, culmen_depth_mm, flipper_length_mm, body_mass_g]
  categorical_features: [island, sex]
"""
MODEL_NAME = "penguins"
BATCH = 10_000
UNLABELLED = 100_000
NEWEST_LABELLED = 5_000
STORE_SAMPLES = 50_000
TARGETS = {2_000: 12.0, 50_000: 20.0}


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def penguins():
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset

    schema = DatasetSchema.from_config(load_project_configuration("config/local.yml")["dataset"])
    return load_dataset(ROOT / "data" / "penguins.csv", schema, seed=1), schema


def seed_captures(database: Path, rows: int, unlabelled: int = 0) -> list[str]:
    """Fill the store with `rows` predictions drawn from the dataset, in requests of
    `BATCH` rows; all but the newest `unlabelled` get ground truth. Return those ids."""
    from common.traffic import sample_requests
    from inference.capture import CaptureStore

    data, schema = penguins()
    classes = sorted(data[schema.target].unique())
    rng = random.Random(0)
    store = CaptureStore(str(database))
    pending: list[str] = []
    try:
        for start in range(0, rows, BATCH):
            count = min(BATCH, rows - start)
            inputs = sample_requests(data, schema, count, drift=False, seed=start)
            ids = [uuid.uuid4().hex for _ in range(count)]
            predictions = [rng.choice(classes) for _ in range(count)]
            store.save(ids, inputs, predictions, [0.9] * count, "1")
            labelled = max(0, min(count, rows - unlabelled - start))
            store.label(
                {
                    i: p if rng.random() < 0.8 else rng.choice(classes)
                    for i, p in zip(ids[:labelled], predictions[:labelled], strict=True)
                }
            )
            pending += ids[labelled:]
    finally:
        store.close()
    return pending


def prepare_tracking(workdir: Path) -> None:
    """An MLflow store as training leaves it: migrated, a champion with training data.

    A fresh SQLite store takes seconds to migrate on first use; a user who monitors a
    model has trained it, so that is not the monitoring pipeline's cost.
    """
    import mlflow

    from common.registry import CHAMPION
    from model_training.tracking import log_training_data

    data, schema = penguins()
    mlflow.set_tracking_uri(f"sqlite:///{workdir}/mlflow.db")
    client = mlflow.MlflowClient()
    with mlflow.start_run(run_name="bench-training") as run:
        log_training_data(data, "data/penguins.csv", schema.target)
    client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(
        MODEL_NAME, f"runs:/{run.info.run_id}/model", run.info.run_id
    )
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version.version)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pipeline(workdir: Path, database: Path, samples: int, verbose: bool) -> float:
    """Run the monitoring pipeline over `database`; print and return its wall time.

    Also printed: the CPU seconds of the whole process tree (every task and card
    subprocess is waited for), which a busy machine inflates less than the wall time.
    """
    config = workdir / "config.yml"
    config.write_text(CONFIG.format(database=database, state=workdir / "serving"))
    (workdir / "metaflow-home").mkdir(exist_ok=True)
    command = [
        sys.executable, "src/pipelines/monitoring.py", "--config", "project", str(config),
        "run", "--samples", str(samples),
    ]  # fmt: skip
    launched = datetime.now()
    started, cpu = time.perf_counter(), children_cpu()
    result = subprocess.run(
        command, cwd=ROOT, env=pipeline_environment(workdir), capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu
    lines = (result.stdout + result.stderr).splitlines()
    if verbose or result.returncode != 0:
        print("\n".join(lines if verbose else lines[-30:]))
    if result.returncode != 0:
        raise SystemExit(f"monitoring failed with exit code {result.returncode}")
    for line in lines:
        if match := WORKFLOW_LINE.match(line):
            first = (datetime.strptime(match["time"], TIME_FORMAT) - launched).total_seconds()
            print(f"    {'before the first task':<24} {first:6.1f} s")
            break
    for step, durations in task_durations(lines).items():
        print(f"    {step:<24} {max(durations):6.1f} s")
    print(f"    CPU, all processes       {cpu:6.1f} s")
    return wall


def pipeline_bench(rows: int, samples: int | None, verbose: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as directory:
        workdir = Path(directory)
        database = workdir / "captures.db"
        started = time.perf_counter()
        seed_captures(database, rows)
        prepare_tracking(workdir)
        prepared = time.perf_counter() - started
        print(
            f"\n{rows:,} labelled rows, --samples {samples or rows} (prepared in {prepared:.1f} s)"
        )
        wall = run_pipeline(workdir, database, samples or rows, verbose)
        target = TARGETS.get(rows)
        print(
            f"  pipeline wall time: {wall:.1f} s"
            + (f"   (target <= {target:.0f} s)" if target else "")
        )
        print(f"  load average: {load()}")


def timed(action: Callable[[], object], repeat: int = 1) -> tuple[str, object]:
    """The median wall (and CPU) seconds of `repeat` calls of `action`, and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        result = action()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    return f"{statistics.median(walls):.3f} s (CPU {statistics.median(cpus):.3f} s)", result


def store_bench(rows: int, verbose: bool) -> None:
    from backends.local import Local

    with tempfile.TemporaryDirectory(prefix="bench-capture-") as directory:
        workdir = Path(directory)
        database = workdir / "captures.db"
        started = time.perf_counter()
        pending = seed_captures(database, rows, unlabelled=UNLABELLED)
        prepare_tracking(workdir)
        print(
            f"\nCapture store of {rows:,} predictions, the newest {len(pending):,} unlabelled "
            f"(seeded in {time.perf_counter() - started:.1f} s; "
            f"{database.stat().st_size / 2**20:.0f} MiB)"
        )
        local = Local({"database": str(database), "state_dir": str(workdir / "serving")})
        seconds, frame = timed(lambda: local.load(NEWEST_LABELLED, labeled_only=True), repeat=5)
        assert frame is not None and len(frame) == NEWEST_LABELLED
        assert frame["ground_truth"].notna().all()
        print(f"  load newest {NEWEST_LABELLED:,} labelled rows: {seconds}   (target <= 0.3 s)")
        truth = {id_: "Adelie" for id_ in pending}
        seconds, updated = timed(lambda: local.label_by_id(truth))
        assert updated == len(pending), updated
        print(f"  label {len(pending):,} rows by id:          {seconds}   (target <= 2 s)")
        seconds, frame = timed(lambda: local.load(NEWEST_LABELLED, labeled_only=True), repeat=5)
        print(f"  load newest {NEWEST_LABELLED:,} labelled, all labelled: {seconds}")
        print(f"  load average: {load()}")
        print(f"  monitoring pipeline, --samples {STORE_SAMPLES:,}:")
        wall = run_pipeline(workdir, database, STORE_SAMPLES, verbose)
        print(f"  pipeline wall time: {wall:.1f} s   (target <= 20 s)")
        print(f"  load average: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="*", default=[2000, 50000])
    parser.add_argument("--store-rows", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--samples", type=int, default=None, help="default: all rows")
    parser.add_argument("--verbose", action="store_true", help="print the pipelines' logs")
    options = parser.parse_args()
    os.chdir(ROOT)
    print(f"before: {machine_line()}")
    for rows in options.rows:
        pipeline_bench(rows, options.samples, options.verbose)
    if options.store_rows:
        store_bench(options.store_rows, options.verbose)
    print(f"\nafter: {machine_line()}")


if __name__ == "__main__":
    main()
