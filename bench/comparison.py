"""Benchmark the deployment pipeline's offline comparison: champion against challenger.

    uv run python -m bench.comparison [--rows 5000] [--runs 3] [--keep]

Everything happens in a temporary directory:

1. Two versions of `penguins` are trained in this process and registered as the
   training pipeline registers them (bench/serving.py's `train_and_register`): a weak
   one (1 epoch) and a strong one (30 epochs), in a fresh SQLite store.
2. A capture store gets `--rows` predictions of dataset rows (drawn with replacement),
   every one labelled with its true species, as the server and `label_by_id` write them.
3. `--runs` times, in a fresh process (as the pipeline's `start` task is one), the
   comparison exactly as `src/pipelines/deployment.py` runs it: import the serving code
   (`inference.model`, and scikit-learn by `promotion.evidence.prepare_scoring`), read the
   newest labelled captures through the Local backend, then
   `promotion.evidence.compare_on_captures`: download both versions, load both scorers,
   score every row with each, compare pair by pair (McNemar).

Target: the comparison of 5,000 labelled rows takes <= 3 s inside the pipeline. The
import is printed apart: a fresh task pays it once whatever it then does. The load
average before and after is printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.serving import dataset_rows, load_average, train_and_register

ROOT = Path(__file__).resolve().parent.parent

TARGET_SECONDS = 3.0
PHASES = ("read captures", "download", "load", "score", "compare")


def build(directory: Path, rows: int) -> dict[str, str]:
    """Two registered versions and a store of `rows` labelled captures; their places."""
    from common.tracking import prepare_tracking_store
    from inference.capture import CaptureStore

    uri = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    prepare_tracking_store(uri)
    features, loaded = dataset_rows()
    _, schema, data = loaded
    champion = train_and_register(directory, 1, loaded)[1]
    challenger = train_and_register(directory, 30, loaded)[1]

    drawn = data.sample(n=rows, replace=True, random_state=7)
    requests = [features[data.index.get_loc(index)] for index in drawn.index]
    ids = [uuid.uuid4().hex for _ in range(rows)]
    store = CaptureStore(str(directory / "captures.db"))
    try:
        # The champion served them: its version on every row; what it said matters not.
        store.save(ids, requests, ["Adelie"] * rows, [0.5] * rows, champion)
        store.label(dict(zip(ids, drawn[schema.target].astype(str), strict=True)))
    finally:
        store.close()
    return {"tracking_uri": uri, "champion": champion, "challenger": challenger}


def measure(directory: Path, places: dict[str, str], rows: int) -> dict[str, float]:
    """One comparison as the pipeline's `start` runs it, in this (fresh) process."""
    os.environ["MLFLOW_TRACKING_URI"] = places["tracking_uri"]
    os.environ.setdefault("KERAS_BACKEND", "jax")
    started = time.perf_counter()
    # The step has imported MLflow and asked the registry for both versions already.
    import mlflow

    from backends.local import Local
    from promotion.evidence import compare_on_captures

    client = mlflow.MlflowClient()
    for role in ("champion", "challenger"):
        client.get_model_version("penguins", places[role])

    seconds = {}
    mark = time.perf_counter()
    import inference.model  # noqa: F401
    from promotion.evidence import prepare_scoring

    prepare_scoring()

    seconds["import"] = time.perf_counter() - mark
    mark = time.perf_counter()
    backend = Local({"database": str(directory / "captures.db")})
    captures = backend.load(limit=rows, labeled_only=True)
    seconds["read captures"] = time.perf_counter() - mark
    assert captures is not None and len(captures) == rows, "the captures are not all there"
    with tempfile.TemporaryDirectory() as models:
        paired = compare_on_captures(
            f"models:/penguins/{places['champion']}",
            f"models:/penguins/{places['challenger']}",
            captures,
            models,
        )
    seconds.update(paired.seconds)
    seconds["total"] = sum(seconds[phase] for phase in PHASES)
    seconds["process"] = time.perf_counter() - started
    figures = paired.comparison.figures()
    print(f"  comparison: {json.dumps({k: round(v, 4) for k, v in figures.items()})}")
    return seconds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000, help="labelled captures compared")
    parser.add_argument("--runs", type=int, default=3, help="comparisons, each a new process")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # one run, in a child process
    arguments = parser.parse_args(argv)
    if arguments.measure:
        directory = Path(arguments.measure)
        places = json.loads((directory / "places.json").read_text())
        print("SECONDS=" + json.dumps(measure(directory, places, arguments.rows)))
        return 0

    directory = Path(tempfile.mkdtemp(prefix="bench-comparison-"))
    print(f"load average before: {load_average()}")
    failed = True
    try:
        print(f"setup: two registered versions, {arguments.rows} labelled captures")
        places = build(directory, arguments.rows)
        (directory / "places.json").write_text(json.dumps(places))
        runs = []
        for run in range(arguments.runs):
            child = subprocess.run(
                [sys.executable, "-m", "bench.comparison", "--measure", str(directory),
                 "--rows", str(arguments.rows)],
                cwd=ROOT, capture_output=True, text=True, check=False,
            )  # fmt: skip
            if child.returncode != 0:
                print(child.stderr[-3000:], file=sys.stderr)
                raise SystemExit("the comparison failed")
            lines = child.stdout.splitlines()
            print("\n".join(line for line in lines if not line.startswith("SECONDS=")))
            seconds = json.loads(next(x for x in lines if x.startswith("SECONDS="))[8:])
            runs.append(seconds)
            split = ", ".join(f"{phase} {seconds[phase]:.2f}" for phase in PHASES)
            print(
                f"  run {run + 1}: comparison {seconds['total']:.2f} s ({split}); "
                f"importing the serving code before it {seconds['import']:.2f} s"
            )
        best, worst = min(r["total"] for r in runs), max(r["total"] for r in runs)
        verdict = "ok" if worst <= TARGET_SECONDS else "MISSED"
        print(
            f"comparison of {arguments.rows} labelled rows: {best:.2f}-{worst:.2f} s over "
            f"{len(runs)} runs (target <= {TARGET_SECONDS:.0f} s: {verdict}); with the "
            f"import: {min(r['total'] + r['import'] for r in runs):.2f}-"
            f"{max(r['total'] + r['import'] for r in runs):.2f} s"
        )
        failed = False
    finally:
        print(f"load average after: {load_average()}")
        if arguments.keep or failed:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
