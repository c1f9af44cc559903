"""Benchmark the batch scoring pipeline: wall time, per-step time, memory, capture cost.

    uv run python -m bench.scoring [--rows 10000 100000 1000000] [--chunk-rows 100000]
                                   [--training-rows 20000] [--no-capture] [--verbose]

1. A temporary directory gets an MLflow store (`sqlite:///<tmp>/mlflow.db`) where a
   model trained in this process on bench/dataset.py's synthetic data (10 columns,
   `--training-rows` rows, a few epochs: the figures are about scoring, not accuracy)
   is registered with its training data, as the training pipeline leaves it, and is
   the champion; a Local capture database; and one input CSV per `--rows` size, drawn
   from the same generator with another seed (the `label` column rides along).
2. For each size, `src/pipelines/scoring.py run --input <csv> --output <parquet>` runs
   as a subprocess, capture included unless `--no-capture`. Printed per size: wall time
   (launch to exit) and rows per second, CPU seconds of all its processes, the largest
   single process's peak resident memory (os.wait4) and each step's own figure (the
   `memory_mib` artifact, getrusage in the task), and the time per step.
3. `CaptureStore.save` alone at 100,000 rows per call (what one chunk task's capture
   costs), to say whether the capture is the bottleneck.

The load average is printed before and after: on a busy 2-core machine the times are
not comparable with a quiet one's. Nothing here leaves loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import dataset
from bench.machine import machine_line
from bench.training import ROOT, pipeline_environment, task_durations

PIPELINE = "src/pipelines/scoring.py"
TARGET_SECONDS = {1_000_000: 60.0}
MEMORY_TARGET_MIB = 1024
CAPTURE_ROWS = 100_000


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def register_model(workdir: Path, training_rows: int, config: dict) -> str:
    """Train a small model on synthetic data in a subprocess; register it as champion."""
    code = f"""
import mlflow
from common.config import validate_project_configuration
from common.data import DatasetSchema, clean_dataset
from model_training.preprocessing import fit_transform
from model_training.network import train_model
from model_training.packaging import log_servable_model, servable_files
from model_training.tracking import log_training_data
from bench import dataset

config = validate_project_configuration({config!r})
schema = DatasetSchema.from_config(config["dataset"])
data = clean_dataset(dataset.generate({training_rows}, seed=1), schema)
features, target, x, y = fit_transform(data, schema)
model, _ = train_model(x, y, classes=len(target.categories_[0]), epochs=3, batch_size=256, seed=1)
client = mlflow.MlflowClient()
client.create_experiment("bench", artifact_location={str(workdir / "mlartifacts")!r})
mlflow.set_experiment("bench")
with mlflow.start_run():
    log_training_data(data, "synthetic", schema.target)
    logged = log_servable_model(
        servable_files(model, features, target),
        schema, config["model"]["name"],
    )
client.set_registered_model_alias(config["model"]["name"], "champion", logged.version)
print("VERSION=" + logged.version)
"""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=pipeline_environment(workdir),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"Registering the model failed:\n{result.stderr[-4000:]}")
    return next(line for line in result.stdout.splitlines() if line.startswith("VERSION="))[8:]


def run_scoring(workdir: Path, config: Path, csv: Path, args: argparse.Namespace) -> dict:
    output = workdir / f"scored-{csv.stem}.parquet"
    run_id_file = workdir / f"run-id-{csv.stem}"
    command = [
        sys.executable, PIPELINE, "--config", "project", str(config), "run",
        "--run-id-file", str(run_id_file), "--input", str(csv), "--output", str(output),
        "--chunk-rows", str(args.chunk_rows),
    ]  # fmt: skip
    if args.no_capture:
        command.append("--no-capture")
    env = pipeline_environment(workdir)
    started = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, errors="replace",
    )  # fmt: skip
    lines = []
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if args.verbose:
            print(line, end="", flush=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        print("\n".join(lines[-40:]), file=sys.stderr)
        raise SystemExit(f"The scoring pipeline failed on {csv}.")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "largest_process_mib": usage.ru_maxrss / 1024,
        "steps": task_durations(lines),
        "artifacts": inspect_run(run_id_file.read_text().strip(), env),
    }


def inspect_run(run_id: str, env: dict[str, str]) -> dict:
    """The run's figures, read in a fresh process (Metaflow reads its sysroot at import)."""
    code = (
        "import json; from metaflow import Run, namespace; namespace(None); "
        f"data = Run('Scoring/{run_id}').data; "
        "print('FIGURES=' + json.dumps({'rows': data.scored_rows, "
        "'seconds': data.seconds, 'memory_mib': data.memory_mib}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("FIGURES=")), None)
    return json.loads(line[8:]) if line else {"error": result.stderr[-500:]}


def time_capture(workdir: Path, rows: int) -> float:
    """Seconds of one `CaptureStore.save` of `rows` synthetic predictions."""
    from inference.capture import CaptureStore

    frame = dataset.generate(rows, seed=3).drop(columns="label")
    records = frame.to_dict("records")
    ids = [uuid.uuid4().hex for _ in range(rows)]
    store = CaptureStore(str(workdir / "capture-timing.db"))
    try:
        started = time.perf_counter()
        store.save(ids, records, ["alpha"] * rows, [0.5] * rows, "1", source="batch")
        return time.perf_counter() - started
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--training-rows", type=int, default=20_000)
    parser.add_argument("--no-capture", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    print(f"before: {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as directory:
        workdir = Path(directory)
        config_data = dataset.project_config()
        config_data["backend"] = {
            "module": "backend.Local",
            "target": "http://127.0.0.1:9/invocations",
            "database": str(workdir / "capture.db"),
            "state_dir": str(workdir / "serving"),
        }
        config = workdir / "scoring.yml"
        import yaml

        config.write_text(yaml.safe_dump(config_data, sort_keys=False))
        started = time.perf_counter()
        version = register_model(workdir, args.training_rows, config_data)
        print(f"model version {version} registered in {time.perf_counter() - started:.1f} s")
        results = {}
        for rows in args.rows:
            csv = workdir / f"input-{rows}.csv"
            dataset.generate(rows, seed=2).to_csv(csv, index=False)
            results[rows] = run_scoring(workdir, config, csv, args)
            result = results[rows]
            target = TARGET_SECONDS.get(rows)
            verdict = "" if target is None else f" (target <= {target:.0f} s)"
            print(
                f"{rows:>9,} rows: wall {result['wall']:6.1f} s{verdict}, "
                f"{rows / result['wall']:8,.0f} rows/s, cpu {result['cpu']:6.1f} s, "
                f"largest process {result['largest_process_mib']:,.0f} MiB "
                f"(target < {MEMORY_TARGET_MIB}); load {load()}"
            )
            memory = result["artifacts"].get("memory_mib", {})
            print("           per-step peak memory (MiB): " + ", ".join(
                f"{step} {mib:,.0f}" for step, mib in memory.items()
            ))  # fmt: skip
            print("           per step (tasks, sum s, max s): " + ", ".join(
                f"{step} {len(d)}/{sum(d):.1f}/{max(d, default=0):.1f}"
                for step, d in result["steps"].items()
            ))  # fmt: skip
        seconds = time_capture(workdir, CAPTURE_ROWS)
        print(
            f"CaptureStore.save of {CAPTURE_ROWS:,} rows in one call: {seconds:.2f} s "
            f"({CAPTURE_ROWS / seconds:,.0f} rows/s)"
        )
    print(f"after: {machine_line()}")


if __name__ == "__main__":
    main()
