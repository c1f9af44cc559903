"""Benchmark the model server against what an exposed server gets: request bombs and slow clients.

    uv run python -m bench.exposure [--slow 100] [--clients 8] [--requests 2000]
                                    [--timeout 3] [--model-uri URI --tracking-uri URI]

Everything happens in a temporary directory and on 127.0.0.1 only, against the Local
backend's server (`tests.support.places.ModelServer`, two workers, 1,000 rows a request):

1. Bombs (issue 21, items 1 and 2): a Parquet body of a few kilobytes that decodes to
   3,000,000 rows, and a 42 MB JSON body of 300,000 rows. Each is sent 20 times; the
   time to the answer and the workers' memory (VmRSS, and the peak VmHWM) before and
   after are printed. Targets: a 413 and < 10 MB more memory for both; the Parquet bomb
   answered in <= 50 ms (p50, once a small Parquet request has warmed the workers up).
2. Slow clients (item 3): `--clients` threads send one-row requests on keep-alive
   connections, first alone, then while a process of its own holds `--slow`
   connections that send a header line every 0.5 s and never finish (each reconnects
   when the server closes it, as an attacker would). The server's header deadline is set
   to `--timeout` seconds (3 here instead of the default 30, to keep the run short; the
   server checks it every tenth of that). Alone and beside alternate, `--rounds` times,
   so that the rest of the machine's load falls on both alike. Targets: the normal
   clients' p99 with the slow connections open is within 2x of their p99 alone, and
   every slow connection is closed within the deadline (+1 s).

A model is trained in process and registered in a fresh SQLite store unless
`--model-uri` names one. The load average is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.serving import (
    body,
    concurrent,
    dataset_rows,
    load_average,
    percentile,
    train_and_register,
)

TARGET_BOMB_MS = 50.0
TARGET_EXTRA_MB = 10.0
TARGET_P99_RATIO = 2.0
DRIP_SECONDS = 0.5
MISSED: list[str] = []


def verdict(ok: bool, target: str) -> str:
    if not ok:
        MISSED.append(target)
    return "ok" if ok else "MISSED"


# --- memory of the server's workers ----------------------------------------------------


def workers(pid: int) -> list[int]:
    """The worker processes of the launcher `pid` (its children, from Linux's /proc)."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def memory_mb(pids: list[int]) -> dict[int, tuple[float, float]]:
    """(VmRSS, VmHWM) in MB of each process."""
    figures = {}
    for pid in pids:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
        figures[pid] = tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
    return figures


# --- bombs -----------------------------------------------------------------------------


def timed_posts(port: int, payload: bytes, content_type: str, times: int) -> tuple[list, set]:
    """Milliseconds of `times` POSTs of `payload`, each on a new connection; the statuses."""
    elapsed, statuses = [], set()
    for _ in range(times):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        started = time.perf_counter()
        connection.request("POST", "/invocations", payload, {"Content-Type": content_type})
        response = connection.getresponse()
        response.read()
        elapsed.append((time.perf_counter() - started) * 1000)
        statuses.add(response.status)
        connection.close()
    return elapsed, statuses


def bomb(
    port: int, pid: int, name: str, payload: bytes, content_type: str, timed: bool = True
) -> None:
    """Send `payload` 20 times; print the times, statuses and the workers' memory. `timed`:
    hold the time to the target (a 42 MB body takes longer than that to send)."""
    pids = workers(pid)
    before = memory_mb(pids)
    elapsed, statuses = timed_posts(port, payload, content_type, 20)
    after = memory_mb(pids)
    grown = max(after[p][0] - before[p][0] for p in pids)
    peak = max(after[p][1] - before[p][1] for p in pids)
    p50 = statistics.median(elapsed)
    print(
        f"  {name} ({len(payload) / 1e3:,.1f} KB): statuses {sorted(statuses)}, first "
        f"{elapsed[0]:.1f} ms, p50 {p50:.1f} ms, max {max(elapsed):.1f} ms; worker memory "
        f"+{grown:.1f} MB (RSS), peak +{peak:.1f} MB (HWM)"
    )
    ok_memory = verdict(max(grown, peak) < TARGET_EXTRA_MB and statuses == {413}, name)
    ok_time = verdict(p50 <= TARGET_BOMB_MS, name + " time") if timed else "not a target"
    print(f"    targets: 413 and < {TARGET_EXTRA_MB:.0f} MB more: {ok_memory}; "
          f"p50 <= {TARGET_BOMB_MS:.0f} ms: {ok_time}")  # fmt: skip


def bombs(port: int, pid: int, rows: list[dict]) -> None:
    from tests.support.request_bodies import parquet_body, parquet_rows

    parquet = "application/vnd.apache.parquet"
    warm, statuses = timed_posts(port, parquet_rows(rows[:5]), parquet, 4)
    print(f"  warm-up, a 5-row Parquet body 4 times: {statuses}, {warm[0]:.0f} ms the first")
    bomb(port, pid, "Parquet bomb, 3,000,000 rows", parquet_body(3_000_000), parquet)
    big = json.dumps({"inputs": [rows[i % len(rows)] for i in range(300_000)]}).encode()
    bomb(port, pid, "JSON body, 300,000 rows", big, "application/json", timed=False)


# --- slow clients ----------------------------------------------------------------------


async def _hold(port: int, stop_at: float, state: dict) -> None:
    """One slow client: send a header line now and then, reconnect when closed."""
    while time.time() < stop_at:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        opened, closed = time.monotonic(), False
        state["open"] += 1
        writer.write(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        try:
            while time.time() < stop_at and not closed:
                try:
                    closed = not await asyncio.wait_for(reader.read(1024), DRIP_SECONDS)
                except TimeoutError:
                    writer.write(b"X-Slow: 1\r\n")
                    await writer.drain()
        except ConnectionError:
            closed = True
        finally:
            state["open"] -= 1
            writer.close()
        if closed:
            state["lifetimes"].append(time.monotonic() - opened)


async def _hold_many(port: int, count: int, seconds: float) -> dict:
    state: dict = {"open": 0, "lifetimes": [], "samples": []}
    stop_at = time.time() + seconds

    async def sample() -> None:
        while time.time() < stop_at:
            state["samples"].append((time.time(), state["open"]))
            await asyncio.sleep(0.1)

    await asyncio.gather(sample(), *(_hold(port, stop_at, state) for _ in range(count)))
    return {"lifetimes": state["lifetimes"], "samples": state["samples"]}


def hold_slow_connections(port: int, count: int, seconds: float) -> None:
    """`--hold` (run in a process of its own): print what happened, as JSON."""
    print(json.dumps(asyncio.run(_hold_many(port, count, seconds))))


def normal_clients(port: int, bodies: list[bytes], clients: int, total: int) -> tuple:
    """The latencies (ms) of `clients` threads sending `total` one-row requests; errors; the
    time window they were sent in."""
    began = time.time()
    results, _, _ = concurrent(port, bodies, clients, total, lambda: None)
    return results.latencies_ms, results.error_count, began, time.time()


def slow_clients(port: int, bodies: list[bytes], arguments: argparse.Namespace) -> None:
    """Rounds of the normal clients alone, then beside the slow connections: whatever else
    the machine does falls on both alike."""
    clients, requests = arguments.clients, arguments.requests
    alone: list[float] = []
    beside: list[float] = []
    errors, during, lifetimes = 0, [], []
    for _ in range(arguments.rounds):
        alone += normal_clients(port, bodies, clients, requests)[0]
        seconds = 4 + requests / 50  # time enough for the measurement, bounded
        holder = subprocess.Popen(
            [sys.executable, "-m", "bench.exposure", "--hold", str(port), str(arguments.slow),
             str(seconds)], stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2)  # all of them connected
        latencies, failed, began, ended = normal_clients(port, bodies, clients, requests)
        beside, errors = beside + latencies, errors + failed
        report = json.loads(holder.communicate(timeout=seconds + 60)[0])
        during += [count for at, count in report["samples"] if began <= at <= ended]
        lifetimes += report["lifetimes"]
    report_slow_clients(alone, beside, errors, during or [0], lifetimes, arguments)


def report_slow_clients(
    alone: list[float],
    beside: list[float],
    errors: int,
    during: list[int],
    lifetimes: list[float],
    arguments: argparse.Namespace,
) -> None:
    timeout = arguments.timeout
    for name, latencies in (("alone", alone), (f"beside {arguments.slow} slow", beside)):
        p50, p99 = statistics.median(latencies), percentile(latencies, 99)
        print(f"    {arguments.clients} clients {name}: {len(latencies)} answers, "
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms")  # fmt: skip
    print(f"    errors beside the slow connections: {errors}")
    print(
        f"    slow connections open meanwhile: {min(during)}-{max(during)}; {len(lifetimes)} "
        f"closed by the server after {statistics.median(lifetimes):.2f} s (median), "
        f"{max(lifetimes):.2f} s (max); header deadline {timeout:g} s"
    )
    ratio = percentile(beside, 99) / percentile(alone, 99)
    within = verdict(ratio <= TARGET_P99_RATIO and errors == 0, "p99 beside slow clients")
    closed = verdict(max(lifetimes) <= timeout + 1, "slow connections closed")
    print(f"    p99 ratio {ratio:.2f}, target <= {TARGET_P99_RATIO:g}x: {within}; "
          f"closed within the deadline + 1 s: {closed}")  # fmt: skip


# --- main ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if argv[:1] == ["--hold"]:
        hold_slow_connections(int(argv[1]), int(argv[2]), float(argv[3]))
        return 0
    arguments = parse_arguments(argv)
    directory = Path(tempfile.mkdtemp(prefix="bench-exposure-"))
    os.environ["MLFLOW_TRACKING_URI"] = arguments.tracking_uri or f"sqlite:///{directory}/mlflow.db"
    os.environ.setdefault("KERAS_BACKEND", "jax")
    print(f"load average before: {load_average()}")
    try:
        measure(arguments, directory)
    finally:
        print(f"load average after: {load_average()}")
        if MISSED:
            print(f"targets missed: {', '.join(MISSED)}")
        shutil.rmtree(directory, ignore_errors=True)
    return 1 if MISSED else 0


def measure(arguments: argparse.Namespace, directory: Path) -> None:
    from tests.support.places import ModelServer

    rows, loaded = dataset_rows()
    if arguments.model_uri:
        model_uri, version = arguments.model_uri, arguments.model_uri.rsplit("/", 1)[-1]
    else:
        model_uri, version = train_and_register(directory, 30, loaded)
    timeout = str(arguments.timeout)

    class Server(ModelServer):
        def environment(self) -> dict[str, str]:
            return {**super().environment(), "SERVING_HEADER_TIMEOUT": timeout}

    server = Server(directory, model_uri=model_uri, version=str(version), workers=2,
                    max_batch_size=1000)  # fmt: skip
    state = server.start()
    try:
        print(f"bombs (server pid {state.pid}, workers {workers(state.pid)})")
        bombs(server.port, state.pid, rows)
        print(f"slow clients (header deadline {arguments.timeout:g} s, for a short run)")
        slow_clients(server.port, [body([row]) for row in rows], arguments)
    finally:
        server.stop()


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=100, help="slow connections held open")
    parser.add_argument("--clients", type=int, default=8, help="normal client threads")
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds: alone, then beside")
    parser.add_argument("--timeout", type=float, default=3.0, help="the header deadline, s")
    parser.add_argument("--model-uri", help="benchmark this model instead of training one")
    parser.add_argument("--tracking-uri", help="MLflow tracking/registry URI of --model-uri")
    arguments = parser.parse_args(argv)
    if arguments.model_uri and not arguments.tracking_uri:
        parser.error("--model-uri needs --tracking-uri (the registry).")
    return arguments


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
