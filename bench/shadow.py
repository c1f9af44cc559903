"""Benchmark shadow scoring: what a shadow model adds to a request, and lost captures.

    uv run python -m bench.shadow [--requests 2000] [--concurrent 4000] [--keep]

Target (issue 11): shadow scoring adds <= 0.5 ms to a one-row request at p50 and
<= 2 ms at p99 on the Local server, with 0 lost captures at 16 concurrent clients.

Everything happens in a temporary directory and on 127.0.0.1 only:

1. Two models are trained in this process (30 and 10 epochs, so they disagree on
   some rows) and registered as versions of `penguins` in a fresh SQLite store, as
   bench/serving.py does it.
2. Two real servers (`tests.support.places.ModelServer`, 2 workers each) start side by side:
   one serving the first version alone, one serving it with the second in shadow
   (`SERVING_SHADOW_MODEL_PATH`, as the Local backend sets it).
3. One-row requests, sequential on one keep-alive connection per server, alternating
   between the two servers in blocks so both see the same machine load; the
   difference of their p50 and p99 is what the shadow adds.
4. 16 concurrent clients against each server in turn: latency, then capture integrity
   (rows answered with 200 against rows stored, and returned ids missing from the
   store) and, for the shadowed server, how many stored rows lack a shadow answer.
5. In process, without HTTP: the champion's scoring and the shadow's (`ShadowScorer`)
   for one row, medians of many calls.

The load generator shares the cores with both servers; the load average before and
after is printed because the machine may be shared.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import serving

TARGET_P50_ADDED_MS = 0.5
TARGET_P99_ADDED_MS = 2.0
BLOCK = 50  # sequential requests per server before switching to the other


def shadow_missing(database: Path, since_rowid: int) -> tuple[int, int]:
    """(rows stored since `since_rowid`, of which without a shadow answer)."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return connection.execute(
            "SELECT COUNT(*), COALESCE(SUM(shadow_prediction IS NULL), 0) FROM predictions "
            "WHERE rowid > ?",
            (since_rowid,),
        ).fetchone()


def alternating(
    servers: list[Any], bodies: list[bytes], count: int, warmup: int
) -> list[serving.Results]:
    """`count` sequential requests to each server, alternating in blocks of `BLOCK`."""
    clients = [serving.Client(server.port) for server in servers]
    results = [serving.Results() for _ in servers]
    try:
        for client in clients:
            for index in range(warmup):
                client.post(bodies[index % len(bodies)], serving.Results(), record=False)
        for start in range(0, count, BLOCK):
            for client, result in zip(clients, results, strict=True):
                for index in range(start, min(start + BLOCK, count)):
                    client.post(bodies[index % len(bodies)], result)
    finally:
        for client in clients:
            client.close()
    return results


def in_process(champion_dir: str, shadow_dir: str, rows: list[dict[str, Any]]) -> None:
    """Medians of one-row scoring in this process: the champion, and the shadow's call."""
    import statistics

    from inference.model import load_scorer
    from inference.shadow import ShadowScorer

    champion, shadow_model = load_scorer(champion_dir), load_scorer(shadow_dir)
    shadow = ShadowScorer(shadow_model.score, "bench")
    columns = [champion.features.validate([row]) for row in rows[:200]]
    timings: dict[str, list[float]] = {"champion": [], "shadow": []}
    for _ in range(10):
        for one in columns:
            started = time.perf_counter()
            champion.score(one)
            middle = time.perf_counter()
            shadow.answer(one, 1, middle - started)
            timings["champion"].append(middle - started)
            timings["shadow"].append(time.perf_counter() - middle)
    for name, values in timings.items():
        print(
            f"  {name}: median {statistics.median(values) * 1e6:.0f} µs, "
            f"p99 {serving.percentile(values, 99) * 1e6:.0f} µs per one-row call"
        )
    print(f"  shadow counts: {shadow.counts()}")


@dataclass
class Served:
    label: str
    server: Any


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per server")
    parser.add_argument("--concurrent", type=int, default=4000, help="16-client requests")
    parser.add_argument("--workers", type=int, default=2, help="processes per server")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    directory = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{directory / 'mlflow.db'}"
    os.environ.setdefault("KERAS_BACKEND", "jax")
    print(f"load average before: {serving.load_average()}")
    print(f"temporary directory: {directory}")
    failed = True
    try:
        measure(arguments, directory)
        failed = False
    finally:
        print(f"load average after: {serving.load_average()}")
        if serving.MISSED:
            print(f"targets missed: {', '.join(serving.MISSED)}")
        if arguments.keep or failed:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 1 if serving.MISSED else 0


def measure(arguments: argparse.Namespace, directory: Path) -> None:
    import mlflow.artifacts

    from tests.support.places import ModelServer

    rows, loaded = serving.dataset_rows()
    print("setup")
    champion_uri, champion = serving.train_and_register(directory, 30, loaded)
    shadow_uri, shadow = serving.train_and_register(directory, 10, loaded)
    shadow_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=shadow_uri, dst_path=str(directory / "shadow-model")
    )
    champion_dir = mlflow.artifacts.download_artifacts(
        artifact_uri=champion_uri, dst_path=str(directory / "champion-model")
    )

    class ShadowedServer(ModelServer):
        def environment(self) -> dict[str, str]:
            return {
                **super().environment(),
                "SERVING_SHADOW_MODEL_PATH": shadow_dir,
                "SERVING_SHADOW_VERSION": shadow,
            }

    alone = ModelServer(
        directory / "alone", model_uri=champion_uri, version=champion, workers=arguments.workers
    )
    shadowed = ShadowedServer(
        directory / "shadowed", model_uri=champion_uri, version=champion, workers=arguments.workers
    )
    servers = [Served("without shadow", alone), Served(f"with shadow v{shadow}", shadowed)]
    try:
        for served in servers:
            state = served.server.start()
            print(f"  {served.label}: {served.server.url}, pid {state.pid}")
        one_row = [serving.body([row]) for row in rows]

        print(
            f"one-row requests, sequential, {arguments.requests} per server, alternating in "
            f"blocks of {BLOCK}"
        )
        results = alternating([s.server for s in servers], one_row, arguments.requests, 50)
        figures = [
            serving.report_latency(r, s.label) for r, s in zip(results, servers, strict=True)
        ]
        added_p50 = figures[1]["p50"] - figures[0]["p50"]
        added_p99 = figures[1]["p99"] - figures[0]["p99"]
        p50_ok = serving.verdict(added_p50 <= TARGET_P50_ADDED_MS, "shadow p50")
        p99_ok = serving.verdict(added_p99 <= TARGET_P99_ADDED_MS, "shadow p99")
        print(
            f"  added by the shadow: p50 {added_p50:+.3f} ms (target <= {TARGET_P50_ADDED_MS} "
            f"ms: {p50_ok}), p99 {added_p99:+.3f} ms (target <= {TARGET_P99_ADDED_MS} ms: "
            f"{p99_ok})"
        )

        print("one-row requests, 16 concurrent clients, capture check")
        for served in servers:
            database = served.server.database
            since = serving.last_rowid(database)
            print(f"  {served.label}:")
            result, _, captured, missing = serving.throughput_phase(
                served.server.port, one_row, 16, arguments.concurrent, database
            )
            lost = result.answered_rows - captured
            serving.verdict(lost == 0 and missing == 0, f"lost captures {served.label}")
            stored, unanswered = shadow_missing(database, since)
            print(
                f"    answered {result.answered_rows} rows, stored {captured}: lost captures "
                f"{lost}, returned ids not stored {missing}"
                + (
                    f"; stored rows without a shadow answer {unanswered} of {stored}"
                    if served.server is shadowed
                    else ""
                )
            )
        print("in process, no HTTP (one-row calls)")
        in_process(champion_dir, shadow_dir, rows)
    finally:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for served in servers:
                served.server.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
        print("servers stopped")


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted; the servers were stopped.", file=sys.stderr)
        sys.exit(130)
