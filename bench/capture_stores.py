"""Benchmark the serving path with each capture store: SQLite (a file beside the server)
and PostgreSQL (the store every task of a team can reach).

    uv run python -m bench.capture_stores [--rounds 5] [--sequential 200] [--concurrent 1600]
                                          [--clients 16] [--workers 2] [--epochs 30] [--keep]

Everything happens in a temporary directory and on 127.0.0.1 only:

1. A model is trained in this process and registered in a fresh SQLite tracking store
   (`bench.serving.train_and_register`, as the training pipeline registers it).
2. A PostgreSQL cluster of its own (Debian's package, `team_stack.postgres.Cluster`,
   durable: fsync and synchronous commits on, as a team's server runs) with a capture
   user and database; the user's password reaches the server as the Local backend
   hands it over (CAPTURE_DATABASE_PASSWORD -> SERVING_CAPTURE_PASSWORD).
3. Two Local backend servers of that model, `--workers` each, one capturing in SQLite,
   one in PostgreSQL, deployed with `backends.local.Local` as the deployment pipeline
   does. In `--rounds` rounds, alternating which store goes first, each gets
   `--sequential` one-row requests on one keep-alive connection (latency), then
   `--concurrent` one-row requests from `--clients` clients at once.
4. Every id answered with HTTP 200 is looked up in its store: "lost" counts those not
   stored (must be 0: an answered prediction is a stored one).
5. In this process, with no server: a batch-scoring chunk of `--chunk-rows` saved into
   each store, saved again under the same ids (a retried chunk), then labelled by id.

The load generator (bench.serving's) shares the machine's cores with the servers and
the database: the figures are the serving path's on this machine, with the load average
printed before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.serving import (
    Results,
    body,
    concurrent,
    dataset_rows,
    load_average,
    percentile,
    sequential,
    train_and_register,
)

PASSWORD = "bench-capture-password"
STORES = ("sqlite", "postgresql")


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--sequential", type=int, default=200, help="one-row requests a round")
    parser.add_argument("--concurrent", type=int, default=1600, help="concurrent requests a round")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="server processes each")
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the model")
    parser.add_argument("--chunk-rows", type=int, default=100_000, help="rows of a chunk (0: skip)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


@contextlib.contextmanager
def postgres_database(directory: Path) -> Iterator[str]:
    """A durable cluster of its own with a `captures` database; its URL (no password)."""
    from team_stack.postgres import Cluster
    from tests.support.ports import free_port

    cluster = Cluster(directory / "postgres", free_port(), durable=True)
    try:
        cluster.start()
        cluster.create_user("penguins", PASSWORD)
        cluster.create_database("captures", owner="penguins")
        yield f"postgresql://penguins@127.0.0.1:{cluster.port}/captures"
    finally:
        cluster.stop()


def deploy(store: str, database: str, directory: Path, model: tuple[str, str], workers: int):
    """A Local backend serving `model`, capturing in `database`; deployed."""
    from backends.local import Local
    from tests.support.ports import unused_url

    backend = Local({
        "module": "backend.Local", "target": unused_url(), "database": database,
        "workers": workers, "state_dir": str(directory / f"serving-{store}"),
    })  # fmt: skip
    started = time.perf_counter()
    backend.deploy(*model)
    print(f"  {store}: {backend.target}, healthy after {time.perf_counter() - started:.1f} s")
    return backend


def stored_ids(database: str) -> set[str]:
    if database.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(database, password=PASSWORD) as connection:
            return {row[0] for row in connection.execute("SELECT id FROM predictions")}
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM predictions")}


def measure(arguments: argparse.Namespace, backends: dict, one_row: list[bytes]) -> dict:
    """The rounds: per store, the sequential and the concurrent requests' results."""
    figures = {store: {"sequential": Results(), "concurrent": Results()} for store in backends}
    for round_ in range(arguments.rounds):
        order = STORES if round_ % 2 == 0 else tuple(reversed(STORES))
        for store in order:
            port = int(backends[store].target.rsplit(":", 1)[1].split("/")[0])
            figures[store]["sequential"].merge(sequential(port, one_row, arguments.sequential, 20))
            results, _, _ = concurrent(
                port, one_row, arguments.clients, arguments.concurrent, lambda: None
            )
            figures[store]["concurrent"].merge(results)
        print(f"  round {round_ + 1}/{arguments.rounds} done, load {load_average()}")
    return figures


def report(figures: dict, backends: dict, clients: int) -> bool:
    """Print p50/p99 and lost rows per store; whether nothing was lost or refused."""
    good = True
    for store, phases in figures.items():
        stored = stored_ids(backends[store].database)
        for phase, results in phases.items():
            lost = sum(1 for id_ in results.ids if id_ not in stored)
            values = results.latencies_ms
            label = "1 client " if phase == "sequential" else f"{clients} clients"
            print(
                f"  {store:<10} one row, {label}: n={len(values)} p50 "
                f"{percentile(values, 50):.2f} ms, p99 {percentile(values, 99):.2f} ms, "
                f"errors {results.error_count}, lost {lost}"
            )
            good = good and lost == 0 and results.error_count == 0
    return good


def chunk_phase(databases: dict[str, str], rows: int) -> None:
    """Seconds to save a chunk of `rows`, to save it again under its ids, to label it."""
    from inference.capture import prediction_ids
    from inference.capture_stores import open_store

    ids = prediction_ids(rows)
    inputs = [f'{{"culmen_length_mm": {40 + i % 20}, "island": "Biscoe"}}' for i in range(rows)]
    labels = dict.fromkeys(ids[: rows * 3 // 10], "Gentoo")
    for store_name in STORES:
        store = open_store(databases[store_name], password=PASSWORD)
        try:
            timings = []
            for prediction in ("Adelie", "Chinstrap"):  # the first attempt, then its retry
                started = time.perf_counter()
                store.save_encoded(ids, inputs, [prediction] * rows, [0.9] * rows, "1", "batch")
                timings.append(time.perf_counter() - started)
            started = time.perf_counter()
            labelled = store.label(labels)
            timings.append(time.perf_counter() - started)
        finally:
            store.close()
        print(
            f"  {store_name:<10} {rows} rows saved in {timings[0]:.2f} s, saved again under "
            f"their ids in {timings[1]:.2f} s, {labelled} labelled by id in {timings[2]:.2f} s"
        )


def main(argv: list[str]) -> int:
    arguments = parse_arguments(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    directory = Path(tempfile.mkdtemp(prefix="bench-capture-stores-"))
    directory.chmod(0o711)  # PostgreSQL runs as its own user under root: let it through
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ["CAPTURE_DATABASE_PASSWORD"] = PASSWORD
    os.environ.setdefault("KERAS_BACKEND", "jax")
    print(f"load average before: {load_average()}")
    good, backends = False, {}
    try:
        rows, loaded = dataset_rows()
        model = train_and_register(directory, arguments.epochs, loaded)
        with postgres_database(directory) as url:
            databases = {"sqlite": str(directory / "captures.db"), "postgresql": url}
            for store in STORES:
                backends[store] = deploy(
                    store, databases[store], directory, model, arguments.workers
                )
            figures = measure(arguments, backends, [body([row]) for row in rows])
            good = report(figures, backends, arguments.clients)
            for backend in backends.values():
                backend.stop()
            if arguments.chunk_rows:
                print(f"a batch chunk, in process ({arguments.chunk_rows} rows)")
                chunk_phase(databases, arguments.chunk_rows)
    finally:
        for backend in backends.values():
            backend.stop()
        print(f"load average after: {load_average()}")
        if arguments.keep or not good:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
