"""Benchmark the model server: latency, throughput, capture integrity and labelling.

    uv run python -m bench.serving [--workers 2] [--requests 1000] [--concurrent 4000]
                                   [--batch-requests 200] [--epochs 30] [--keep]
    uv run python -m bench.serving --model-uri models:/penguins/3 --tracking-uri sqlite:///mlflow.db
    uv run python -m bench.serving --model-uri /path/to/a/logged/model --model-version x

Everything happens in a temporary directory and on 127.0.0.1 only:

1. Without `--model-uri`, a model is trained in this process with the project's own
   functions and registered as `penguins` exactly as the training pipeline's `register`
   step does it, in a fresh SQLite tracking store (`<tmp>/mlflow.db`).
2. `ModelServer` of tests/support/places.py (the tests' own, through
   `backends.local_server.LocalServer`) starts `mlflow models serve` on a free port with
   a capture database in the temporary directory, and is always stopped at the end.
3. The load generator below (http.client keep-alive connections, one thread per
   client) measures one-row latency, throughput with 8 and 16 clients, capture
   integrity (captured rows == rows answered with 200), 100-row latency, then the time
   to label captured predictions with `CaptureStore.label` and `Local.label`.
4. What the server's front door (the HTTP guard and the connection limits, issue 21)
   adds to a one-row request: `bench/guard_overhead.py` serves the model before and
   after, side by side, in alternating rounds (`--overhead-rounds`, 0 to skip).
5. What the Prometheus metrics (`inference.metrics`, issue 23) add to a one-row request:
   the model served by the Local backend (one worker each, multiprocess mode) with
   `SERVING_METRICS=off` twice (before, and the machine's noise) and with metrics
   (after), in alternating rounds (`--metrics-rounds`, 0 to skip); then the counting
   alone, in process.

The load generator runs on the same cores as the server (2 here), and its threads share
one interpreter: the client takes CPU from the server, so throughput is lower, and
latencies higher, than the server alone on those cores would give. The load average
before and after is printed because the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config" / "local.yml"
DATASET = ROOT / "data" / "penguins.csv"
REQUEST_TIMEOUT = 30.0  # seconds; a request slower than this counts as an error

# Targets printed beside the figures.
TARGET_ONE_ROW_P50_MS = 6.0
TARGET_ONE_ROW_P99_MS = 15.0
TARGET_METRICS_OVERHEAD_MS = 0.05
TARGET_RPS_8_CLIENTS = 250.0
TARGET_BATCH_P50_MS = 20.0
TARGET_LABEL_SECONDS = 1.0


# --- small helpers -------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


MISSED: list[str] = []  # the targets this run missed


def verdict(ok: bool, target: str) -> str:
    if not ok:
        MISSED.append(target)
    return "ok" if ok else "MISSED"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min, {os.cpu_count()} cores)"


def captured_rows(database: Path) -> int:
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def captured_ids_since(database: Path, rowid: int) -> set[str]:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        rows = connection.execute("SELECT id FROM predictions WHERE rowid > ?", (rowid,))
        return {row[0] for row in rows}


def last_rowid(database: Path) -> int:
    if not database.exists():
        return 0
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute("SELECT COALESCE(MAX(rowid), 0) FROM predictions").fetchone()[0]


# --- the model -----------------------------------------------------------------------


def dataset_rows() -> tuple[list[dict[str, Any]], Any]:
    """The dataset's feature rows as JSON-ready dicts (missing values as None)."""
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset

    project = load_project_configuration(CONFIG)
    schema = DatasetSchema.from_config(project["dataset"])
    data = load_dataset(DATASET, schema, seed=42)
    rows = [
        {
            name: (None if isinstance(value, float) and math.isnan(value) else value)
            for name, value in row.items()
        }
        for row in data[schema.features].to_dict("records")
    ]
    return rows, (project, schema, data)


def train_and_register(directory: Path, epochs: int, loaded: Any) -> tuple[str, str]:
    """Train a model in-process and register it like the training pipeline; return
    (model URI, version)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    project, schema, data = loaded

    from model_training.network import train_model
    from model_training.packaging import log_servable_model, servable_files
    from model_training.preprocessing import fit_transform

    started = time.perf_counter()
    features_transformer, target_transformer, x, y = fit_transform(data, schema)
    model, history = train_model(
        x, y, classes=len(target_transformer.categories_[0]), epochs=epochs, batch_size=32, seed=42
    )
    trained = time.perf_counter()

    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    uri = os.environ["MLFLOW_TRACKING_URI"]
    SqlAlchemyStore(uri, str(directory / "mlartifacts")).engine.dispose()
    client = mlflow.MlflowClient(uri)
    name = project["project"]
    if client.get_experiment_by_name(name) is None:
        client.create_experiment(name, artifact_location=str(directory / "mlartifacts" / name))
    mlflow.set_experiment(name)

    with mlflow.start_run(run_name="bench-serving"):
        mlflow.log_metrics({f"training_{key}": values[-1] for key, values in history.items()})
        logged = log_servable_model(
            servable_files(model, features_transformer, target_transformer),
            schema,
            registered_model_name=project["model"]["name"],
            input_example=data[schema.features].head(3),
        )
    version = str(logged.version)
    accuracy = history.get("accuracy", [math.nan])[-1]
    print(
        f"  trained {epochs} epochs in {trained - started:.1f} s (training accuracy "
        f"{accuracy:.3f}); registered {project['model']['name']} version {version} in "
        f"{time.perf_counter() - trained:.1f} s"
    )
    return f"models:/{project['model']['name']}/{version}", version


# --- the load generator --------------------------------------------------------------


@dataclass
class Results:
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    answered_rows: int = 0
    ids: list[str] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def merge(self, other: Results) -> None:
        self.latencies_ms += other.latencies_ms
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        self.answered_rows += other.answered_rows
        self.ids += other.ids

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Client:
    """One keep-alive connection to the server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def post(self, body: bytes, results: Results, record: bool = True) -> None:
        """POST one body; record its latency (200 only) or its error."""
        if self.connection is None:
            self.connection = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=REQUEST_TIMEOUT
            )
        headers = {"Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            self.connection.request("POST", "/invocations", body, headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            results.error(type(error).__name__)
            self.close()  # Reconnect on the next request.
            return
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            results.error(f"HTTP {response.status}")
            return
        if not record:
            return
        predictions = json.loads(payload)["predictions"]
        results.latencies_ms.append(elapsed)
        results.answered_rows += len(predictions)
        results.ids.extend(p["id"] for p in predictions)


def body(rows: list[dict[str, Any]]) -> bytes:
    return json.dumps({"inputs": rows}).encode()


def sequential(port: int, bodies: list[bytes], count: int, warmup: int) -> Results:
    client, results, ignored = Client(port), Results(), Results()
    try:
        for index in range(warmup):
            client.post(bodies[index % len(bodies)], ignored, record=False)
        for index in range(count):
            client.post(bodies[index % len(bodies)], results)
    finally:
        client.close()
    return results


def concurrent(
    port: int, bodies: list[bytes], clients: int, total: int, on_ready: Callable[[], Any]
) -> tuple[Results, float, Any]:
    """`clients` threads, each with its own connection, send `total` requests in all.

    Each thread first sends one unrecorded request (connect, warm up); `on_ready` runs
    once all have, before the measured requests start. Returns the merged results, the
    wall time from the first measured request to the last, and what `on_ready` returned.
    """
    shares = [total // clients + (1 if i < total % clients else 0) for i in range(clients)]
    per_thread = [Results() for _ in range(clients)]
    ready, go = threading.Barrier(clients + 1), threading.Barrier(clients + 1)
    wait = REQUEST_TIMEOUT * 2

    def work(index: int) -> None:
        client = Client(port)
        try:
            client.post(bodies[index % len(bodies)], Results(), record=False)
            ready.wait(timeout=wait)
            go.wait(timeout=wait)
            for n in range(shares[index]):
                client.post(bodies[(index * 7919 + n) % len(bodies)], per_thread[index])
        except threading.BrokenBarrierError:
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=wait)
        snapshot = on_ready()
        go.wait(timeout=wait)
    except BaseException:
        ready.abort()
        go.abort()
        raise
    began = time.perf_counter()
    deadline = time.monotonic() + REQUEST_TIMEOUT * (total / clients + 1)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    elapsed = time.perf_counter() - began
    if any(thread.is_alive() for thread in threads):
        raise RuntimeError("Load generator threads did not finish in time.")
    merged = Results()
    for results in per_thread:
        merged.merge(results)
    return merged, elapsed, snapshot


# --- phases --------------------------------------------------------------------------


def report_latency(results: Results, label: str) -> dict[str, float]:
    values = results.latencies_ms
    figures = {
        "p50": median(values),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }
    print(
        f"  {label}: n={len(values)} p50 {figures['p50']:.2f} ms, p90 {figures['p90']:.2f} ms, "
        f"p99 {figures['p99']:.2f} ms, max {figures['max']:.2f} ms, errors {results.error_count}"
        + (f" {results.errors}" if results.errors else "")
    )
    return figures


def throughput_phase(
    port: int, bodies: list[bytes], clients: int, total: int, database: Path
) -> tuple[Results, float, int, int]:
    """Send `total` one-row requests from `clients` threads; return the results, the
    rate of 200s, the rows captured meanwhile and the returned ids not captured."""

    def snapshot() -> tuple[int, int]:
        return captured_rows(database), last_rowid(database)

    results, elapsed, (before, rowid) = concurrent(port, bodies, clients, total, snapshot)
    captured = captured_rows(database) - before
    done = len(results.latencies_ms)
    print(
        f"  {clients} clients, {total} requests in {elapsed:.2f} s: "
        f"{total / elapsed:.0f} req/s, {done / elapsed:.0f} answered with 200 per s; "
        f"p50 {median(results.latencies_ms):.2f} ms, "
        f"p99 {percentile(results.latencies_ms, 99):.2f} ms (200s); "
        f"errors {results.error_count}" + (f" {results.errors}" if results.errors else "")
    )
    missing = len(set(results.ids) - captured_ids_since(database, rowid))
    if missing:
        print(f"  {missing} returned ids are not in the capture database")
    return results, done / elapsed, captured, missing


def labelling(directory: Path, rows: list[dict[str, Any]], count: int, simulated: int) -> None:
    from backends.local import Local
    from inference.capture import CaptureStore

    classes = ["Adelie", "Chinstrap", "Gentoo"]
    rng = random.Random(7)

    def fill(store: CaptureStore, total: int) -> tuple[list[str], float]:
        ids: list[str] = []
        started = time.perf_counter()
        for offset in range(0, total, 1000):
            size = min(1000, total - offset)
            batch = [uuid.uuid4().hex for _ in range(size)]
            inputs = [rows[(offset + i) % len(rows)] for i in range(size)]
            predictions = [rng.choice(classes) for _ in range(size)]
            confidences = [rng.uniform(0.34, 1.0) for _ in range(size)]
            store.save(batch, inputs, predictions, confidences, "bench")
            ids += batch
        return ids, time.perf_counter() - started

    path = directory / "labels.db"
    store = CaptureStore(str(path))
    try:
        ids, filled = fill(store, count)
        truth = {id_: rng.choice(classes) for id_ in ids}
        started = time.perf_counter()
        updated = store.label(truth)
        elapsed = time.perf_counter() - started
    finally:
        store.close()
    print(f"  inserted {count} captured rows in batches of 1000 in {filled:.2f} s")
    print(
        f"  CaptureStore.label({count} ids): {elapsed:.3f} s, {updated} rows updated   "
        f"target <= {TARGET_LABEL_SECONDS:.0f} s: "
        f"{verdict(elapsed <= TARGET_LABEL_SECONDS and updated == count, 'labelling')}"
    )

    path = directory / "simulated.db"
    store = CaptureStore(str(path))
    try:
        fill(store, simulated)
    finally:
        store.close()
    started = time.perf_counter()
    labelled = Local(config={"database": str(path)}).label(0.8)
    elapsed = time.perf_counter() - started
    print(f"  Local.label(0.8) on {simulated} unlabeled rows: {elapsed:.3f} s, {labelled} labelled")


# --- main ----------------------------------------------------------------------------


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2)")
    parser.add_argument("--requests", type=int, default=1000, help="sequential one-row requests")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests (not measured)")
    parser.add_argument(
        "--concurrent", type=int, default=4000, help="requests per concurrent phase"
    )
    parser.add_argument("--batch-requests", type=int, default=200, help="100-row requests")
    parser.add_argument("--batch-size", type=int, default=100, help="rows per batch request")
    parser.add_argument("--label-rows", type=int, default=30000, help="rows labelled by id")
    parser.add_argument("--simulated-rows", type=int, default=10000, help="rows for Local.label")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the in-process model")
    parser.add_argument("--model-uri", help="benchmark this model instead of training one")
    parser.add_argument("--tracking-uri", help="MLflow tracking/registry URI of --model-uri")
    parser.add_argument("--model-version", default=None, help="version recorded in captures")
    parser.add_argument(
        "--overhead-rounds", type=int, default=20,
        help="rounds of 100 one-row requests to the servers with and without the front "
        "door (0: skip)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-rounds", type=int, default=20,
        help="rounds of 100 one-row requests to servers with and without metrics (0: skip)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    arguments = parser.parse_args(argv)
    registry_uri = (arguments.model_uri or "").startswith(("models:/", "runs:/"))
    if registry_uri and not arguments.tracking_uri:
        parser.error("A models:/ or runs:/ --model-uri needs --tracking-uri (the registry).")
    return arguments


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    # Ctrl-C and SIGTERM both unwind through the finally blocks: the server always stops.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    directory = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    database = directory / "capture.db"  # where tests.support.places.ModelServer captures
    if arguments.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = arguments.tracking_uri
    else:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ.setdefault("KERAS_BACKEND", "jax")

    print(f"load average before: {load_average()}")
    print(f"temporary directory: {directory}")
    failed = True
    try:
        model = serve_and_measure(arguments, directory, database)
        if arguments.overhead_rounds:
            overhead_phase(arguments, model)
        if arguments.metrics_rounds:
            metrics_phase(arguments, model, directory)
        print("labelling (in this process, no server)")
        rows, _ = dataset_rows()
        labelling(directory, rows, arguments.label_rows, arguments.simulated_rows)
        failed = False
    finally:
        print(f"load average after: {load_average()}")
        if MISSED:
            print(f"targets missed: {', '.join(MISSED)}")
        if arguments.keep or failed or MISSED:
            print(f"kept {directory} (server log under serving/)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 1 if MISSED else 0


def serve_and_measure(
    arguments: argparse.Namespace, directory: Path, database: Path
) -> tuple[str, str, list[bytes]]:
    """Register or find the model, serve it, run the HTTP phases, stop the server; return
    the model's URI and version, and the one-row bodies sent."""
    from tests.support.places import ModelServer

    server = None
    try:
        started = time.perf_counter()
        rows, loaded = dataset_rows()
        print("setup")
        model_uri, version = model_to_serve(arguments, directory, loaded)
        server = ModelServer(
            directory,
            model_uri=model_uri,
            version=str(version),
            workers=arguments.workers,
            max_batch_size=1000,
        )
        assert server.database == database, (server.database, database)
        launched = time.perf_counter()
        state = server.start()
        print(
            f"  server {model_uri} at {server.url}, {arguments.workers} workers, pid "
            f"{state.pid}, healthy after {time.perf_counter() - launched:.1f} s (setup "
            f"{time.perf_counter() - started:.1f} s); log {state.log}"
        )
        one_row = [body([row]) for row in rows]
        rng = random.Random(11)
        batches = [body(rng.sample(rows, min(arguments.batch_size, len(rows)))) for _ in range(50)]
        latency_phases(server.port, one_row, batches, arguments, database)
        return model_uri, str(version), one_row
    finally:
        if server is not None:
            # A second Ctrl-C must not interrupt the stop itself.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                stopped = server.stop()
            finally:
                signal.signal(signal.SIGINT, previous)
            print(f"server stopped (pid {stopped.pid})" if stopped else "server was not running")


def model_to_serve(arguments: argparse.Namespace, directory: Path, loaded: Any) -> tuple:
    """`--model-uri` and its version, or a model trained and registered here."""
    if not arguments.model_uri:
        return train_and_register(directory, arguments.epochs, loaded)
    version = arguments.model_version or arguments.model_uri.rstrip("/").rsplit("/", 1)[-1]
    return arguments.model_uri, version


def latency_phases(
    port: int,
    one_row: list[bytes],
    batches: list[bytes],
    arguments: argparse.Namespace,
    database: Path,
) -> None:
    """One-row latency, throughput with 8 and 16 clients, 100-row latency, then errors."""
    print(f"one-row requests, sequential, one keep-alive connection, {arguments.warmup} warm-up")
    results = sequential(port, one_row, arguments.requests, arguments.warmup)
    one = report_latency(results, "latency")
    print(
        f"  target p50 <= {TARGET_ONE_ROW_P50_MS:.0f} ms: "
        f"{verdict(one['p50'] <= TARGET_ONE_ROW_P50_MS, 'one-row p50')}, "
        f"p99 <= {TARGET_ONE_ROW_P99_MS:.0f} ms: "
        f"{verdict(one['p99'] <= TARGET_ONE_ROW_P99_MS, 'one-row p99')}"
    )
    throughput_phases(port, one_row, arguments, database)
    print(f"{arguments.batch_size}-row requests, sequential, one keep-alive connection")
    results = sequential(port, batches, arguments.batch_requests, 5)
    batch = report_latency(results, "latency")
    print(f"  target p50 <= {TARGET_BATCH_P50_MS:.0f} ms: "
          f"{verdict(batch['p50'] <= TARGET_BATCH_P50_MS, '100-row p50')}")  # fmt: skip
    after = sequential(port, one_row, 20, 0)
    print(
        f"one-row requests after the load, sequential: {after.error_count} errors in 20"
        + (f" {after.errors}" if after.errors else "")
    )
    verdict(after.error_count == 0, "no errors after the load")
    print(f"  captured rows in total: {captured_rows(database)}")


def throughput_phases(
    port: int, one_row: list[bytes], arguments: argparse.Namespace, database: Path
) -> None:
    print("one-row requests, 8 concurrent clients (client threads share the server's cores)")
    results, rate, _, _ = throughput_phase(port, one_row, 8, arguments.concurrent, database)
    print(
        f"  target >= {TARGET_RPS_8_CLIENTS:.0f} req/s with zero errors: "
        f"{verdict(rate >= TARGET_RPS_8_CLIENTS and results.error_count == 0, '8 clients')}"
    )
    print("one-row requests, 16 concurrent clients, capture check")
    results, rate, captured, missing = throughput_phase(
        port, one_row, 16, arguments.concurrent, database
    )
    match = captured == results.answered_rows and missing == 0
    verdict(match, "captured == answered")
    print(
        f"  captured rows {captured}, rows answered with 200 {results.answered_rows}: "
        f"{'OK' if match else 'MISMATCH'}"
    )


def overhead_phase(arguments: argparse.Namespace, model: tuple[str, str, list[bytes]]) -> None:
    """The front door's cost, once the main server has stopped (bench/guard_overhead.py)."""
    from bench import guard_overhead

    print("the front door's cost: the same model served without and with it, one worker each")
    model_uri, version, one_row = model
    met = guard_overhead.run(model_uri, version, one_row, arguments.overhead_rounds, 100)
    verdict(met, "front door overhead")


def metrics_phase(
    arguments: argparse.Namespace, model: tuple[str, str, list[bytes]], directory: Path
) -> None:
    """The metrics' cost: Local servers of the same model with them off and on, in turns."""
    from bench import guard_overhead
    from tests.support.places import ModelServer

    print("the metrics' cost: the same model served without (twice) and with them, 1 worker each")
    model_uri, version, one_row = model
    servers: dict[str, ModelServer] = {}
    try:
        for kind in ("before", "before2", "after"):
            os.environ["SERVING_METRICS"] = "on" if kind == "after" else "off"
            server = ModelServer(directory / f"metrics-{kind}", model_uri=model_uri,
                                 version=version, workers=1, max_batch_size=1000)  # fmt: skip
            server.start()
            servers[kind] = server
        os.environ.pop("SERVING_METRICS")
        served = {kind: guard_overhead.Server(s.port, s.stop) for kind, s in servers.items()}
        figures = guard_overhead.compare(served, one_row, arguments.metrics_rounds, 100)
    finally:
        for server in servers.values():
            server.stop()
    metrics_report(figures, arguments.metrics_rounds)


def metrics_report(figures: dict, rounds: int) -> None:
    from bench import guard_overhead

    p50 = {name: statistics.median(times) for name, times in figures["times"].items()}
    print(f"  one-row p50, {rounds} rounds of 100 requests to each: "
          + ", ".join(f"{name} {value:.3f} ms" for name, value in p50.items()))  # fmt: skip
    noise, noise_rounds = guard_overhead.added_ms(figures, "before2")
    added, added_rounds = guard_overhead.added_ms(figures, "after")
    print(f"  with - without metrics: {added * 1000:+.0f} µs (rounds' median "
          f"{added_rounds * 1000:+.0f} µs); without twice: {noise * 1000:+.0f} µs (rounds' "
          f"median {noise_rounds * 1000:+.0f} µs); load average {load_average()}")  # fmt: skip
    counting_us = metrics_in_process_cost()
    print(f"  in process: counting a one-row request {counting_us:.1f} µs (multiprocess mode)")
    met = added_rounds <= TARGET_METRICS_OVERHEAD_MS
    verdict(met, f"metrics overhead <= {TARGET_METRICS_OVERHEAD_MS} ms at p50")
    print(f"  target <= {TARGET_METRICS_OVERHEAD_MS} ms added at p50: {'ok' if met else 'MISSED'}")


def metrics_in_process_cost(iterations: int = 20000) -> float:
    """Microseconds the metrics add to a one-row request, counted in a process of its own
    in multiprocess mode (the variable must be set before prometheus_client loads)."""
    import subprocess

    code = (
        "import time; from inference.metrics import ServerMetrics as M\n"
        "m = M('1', ['Adelie', 'Gentoo'], multiprocess_directory=__import__('os').environ"
        "['PROMETHEUS_MULTIPROC_DIR'])\n"
        f"n = {iterations}; t = time.perf_counter()\n"
        "for _ in range(n):\n    m.request(200, 0.002); m.answered(['Gentoo'], [0.93])\n"
        "print((time.perf_counter() - t) / n * 1e6)\n"
    )
    with tempfile.TemporaryDirectory() as directory:
        environment = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": directory,
                       "PYTHONPATH": str(ROOT / "src")}  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], env=environment, check=True,
                              capture_output=True, text=True)  # fmt: skip
    return float(done.stdout)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted; the server was stopped.", file=sys.stderr)
        sys.exit(130)
