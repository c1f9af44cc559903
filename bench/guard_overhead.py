"""What the model server's front door costs a one-row request: before and after, in one run.

    uv run python -m bench.guard_overhead --model-uri models:/penguins/3 --tracking-uri sqlite:///mlflow.db
    (or through bench/serving.py, which runs it on the model it trained: --overhead-rounds)

Both servers are started here the same way (`python -m bench.guard_overhead --serve`),
one uvicorn process each, access log on as in the Local server, the same downloaded
model, on 127.0.0.1; they differ in what issue 21 added and nothing else. "Before" is
what served before: MLflow's scoring app, with the request guard, on uvicorn's httptools
protocol (the model is loaded outside MLflow's app module, so it adds no HTTP guard).
"After" is the same app behind the HTTP guard (token check, content type, body and row
limits), on `backends.local_connections`' protocol (header and body deadlines,
connection cap), with a token that every request carries.

They answer one-row requests in turn, `--round` requests at a time on one keep-alive
connection each, for `--rounds` rounds, so that whatever else the machine does falls on
both alike; a second "before" server beside them shows how far two servers running the
same code differ on this machine. The p50 of each and the median of the rounds'
differences are printed (the target is read on the latter, which drift over the run
disturbs least). Then, in process, without the network and the scheduling noise: the
guard around an app that answers at once, and the connection deadlines' bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TOKEN = "bench-token-0123456789abcdefghijklmnop"
TARGET_OVERHEAD_MS = 0.05


@dataclass
class Server:
    """A server process (group) answering on `port`."""

    port: int
    stop: object  # a callable that stops it

    def latencies(self, bodies: list[bytes], count: int, headers: dict[str, str]) -> list[float]:
        """Milliseconds of `count` one-row requests on one keep-alive connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        times = []
        try:
            for index in range(count):
                started = time.perf_counter()
                connection.request("POST", "/invocations", bodies[index % len(bodies)], headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"port {self.port} answered {response.status}")
                times.append((time.perf_counter() - started) * 1000)
        finally:
            connection.close()
        return times


def start(kind: str, model_path: str, directory: Path) -> Server:
    """`--serve <model_path> <port> <kind>` in a process of its own, once it answers."""
    from tests.support.ports import free_port

    port = free_port()
    environment = {**os.environ, "SERVING_CAPTURE_DATABASE": str(directory / f"{kind}.db"),
                   "SERVING_MODEL_VERSION": kind, "SERVING_MAX_BATCH_SIZE": "1000"}  # fmt: skip
    with open(directory / f"{kind}.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.guard_overhead", "--serve", model_path, str(port),
             kind], env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def stop() -> None:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

    _wait_for(port, process, directory / f"{kind}.log")
    return Server(port, stop)


def download(model_uri: str, directory: Path) -> str:
    from common.registry import download_model

    return str(download_model(model_uri, directory / "model"))


def _wait_for(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the server did not start; see {log}")


def compare(servers: dict[str, Server], bodies: list[bytes], rounds: int, size: int) -> dict:
    """Each server's one-row latencies (ms), the servers taking turns in every round in
    a rotating order, and each round's p50 per server (after a warm-up of each)."""
    plain = {"Content-Type": "application/json"}
    headers = {name: {**plain, "Authorization": f"Bearer {TOKEN}"} if name == "after" else plain
               for name in servers}  # fmt: skip
    for name, server in servers.items():
        server.latencies(bodies, 50, headers[name])
    times: dict[str, list[float]] = {name: [] for name in servers}
    medians: dict[str, list[float]] = {name: [] for name in servers}
    names = list(servers)
    for number in range(rounds):
        for name in names[number % len(names) :] + names[: number % len(names)]:
            measured = servers[name].latencies(bodies, size, headers[name])
            times[name] += measured
            medians[name].append(statistics.median(measured))
    return {"times": times, "medians": medians}


def added_ms(figures: dict, to: str, of: str = "before") -> tuple[float, float]:
    """What `to` adds to `of` at p50: over all requests, and the median of the rounds'."""
    overall = statistics.median(figures["times"][to]) - statistics.median(figures["times"][of])
    rounds = zip(figures["medians"][to], figures["medians"][of], strict=True)
    return overall, statistics.median(a - b for a, b in rounds)


def deadline_cost(iterations: int = 200_000) -> float:
    """Microseconds the connection deadlines cost a request, as the protocol sets them: a
    body deadline at its headers, none once its body is in, a header deadline for the
    next request once it is answered."""
    from backends.local_connections import ConnectionLimits, LimitedHttpProtocol

    async def measure() -> float:
        protocol = LimitedHttpProtocol.__new__(LimitedHttpProtocol)  # no connection needed
        protocol.loop, protocol.limits = asyncio.get_running_loop(), ConnectionLimits()
        started = time.perf_counter()
        for _ in range(iterations):
            protocol._due(30.0, protocol._body_late)
            protocol.deadline = None
            protocol._due(30.0, protocol._headers_late)
        return (time.perf_counter() - started) / iterations * 1e6

    try:
        import uvloop  # the loop uvicorn runs on when it is installed, as it is here
    except ImportError:
        return asyncio.run(measure())
    return uvloop.run(measure())


def in_process_cost(iterations: int = 20000) -> tuple[float, float]:
    """Microseconds a request spends in the HTTP guard, and in an app answering at once."""
    from inference.http_guard import HttpGuard, HttpLimits

    body = json.dumps({"inputs": [{"island": "Biscoe", "culmen_length_mm": 48.6}]}).encode()

    async def app(scope, receive, send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        pass

    headers = [
        (b"host", b"127.0.0.1:8080"),
        (b"accept-encoding", b"identity"),
        (b"content-length", str(len(body)).encode()),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {TOKEN}".encode()),
    ]
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers}
    guard = HttpGuard(app, HttpLimits(TOKEN, 1024 * 1024, 1000))

    async def timed(target) -> float:
        started = time.perf_counter()
        for _ in range(iterations):
            await target(scope, receive, send)
        return (time.perf_counter() - started) / iterations * 1e6

    async def both() -> tuple[float, float]:
        bare = min([await timed(app) for _ in range(3)])
        guarded = min([await timed(guard) for _ in range(3)])
        return guarded - bare, bare

    return asyncio.run(both())


def run(model_uri: str, version: str, bodies: list[bytes], rounds: int, size: int) -> bool:
    """Start the servers, compare them, print the figures; whether the target is met.

    Two servers run as before, so that the difference between them (the same code)
    shows how much of any difference is the machine's noise.
    """
    directory = Path(tempfile.mkdtemp(prefix="bench-guard-"))
    model_path = download(model_uri, directory)
    servers: dict[str, Server] = {}
    try:
        for kind in ("before", "before2", "after"):
            servers[kind] = start(kind, model_path, directory)
        figures = compare(servers, bodies, rounds, size)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return report(figures, rounds, size)


def report(figures: dict, rounds: int, size: int) -> bool:
    p50 = {name: statistics.median(times) for name, times in figures["times"].items()}
    print(f"  one-row p50, {rounds} rounds of {size} requests to each: "
          + ", ".join(f"{name} {value:.3f} ms" for name, value in p50.items()))  # fmt: skip
    noise, noise_rounds = added_ms(figures, "before2")
    added, added_rounds = added_ms(figures, "after")
    print(f"  after - before: {added * 1000:+.0f} µs (rounds' median {added_rounds * 1000:+.0f} "
          f"µs); the same code twice, before2 - before: {noise * 1000:+.0f} µs (rounds' "
          f"median {noise_rounds * 1000:+.0f} µs)")  # fmt: skip
    guard_us, bare_us = in_process_cost()
    timers_us = deadline_cost()
    print(f"  in process: the HTTP guard {guard_us:.1f} µs a request (an app answering at once "
          f"{bare_us:.1f} µs), the connection deadlines {timers_us:.1f} µs")  # fmt: skip
    met = added_rounds <= TARGET_OVERHEAD_MS and (guard_us + timers_us) / 1000 <= TARGET_OVERHEAD_MS
    print(f"  target <= {TARGET_OVERHEAD_MS} ms added at p50: {'ok' if met else 'MISSED'}")
    return met


def serve(model_path: str, port: int, kind: str) -> None:
    """MLflow's scoring app: as before issue 21 (`before`), or behind the HTTP guard and
    the connection limits, with a token (`after`)."""
    import uvicorn
    from mlflow.pyfunc import scoring_server

    from backends.local_connections import ConnectionLimits, LimitedConfig
    from inference.http_guard import HttpGuard, HttpLimits

    # Loaded outside MLflow's app module: the model finds no app module being imported,
    # so it installs its request guard only, as before issue 21.
    app = scoring_server.init(scoring_server.load_model_with_mlflow_config(model_path))
    where = {"host": "127.0.0.1", "port": port}
    if kind == "after":
        guarded = HttpGuard(app, HttpLimits(TOKEN, 1024 * 1024, 1000))
        config = LimitedConfig(guarded, ConnectionLimits(), **where)
    else:
        config = uvicorn.Config(app, http="httptools", **where)
    uvicorn.Server(config).run()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(argv[1], int(argv[2]), argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-uri", required=True)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--model-version", default="bench")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--round", type=int, default=100, help="requests a round, each server")
    arguments = parser.parse_args(argv)
    os.environ["MLFLOW_TRACKING_URI"] = arguments.tracking_uri
    from bench.serving import body, dataset_rows, load_average

    rows, _ = dataset_rows()
    print(f"load average before: {load_average()}")
    met = run(arguments.model_uri, arguments.model_version, [body([row]) for row in rows],
              arguments.rounds, arguments.round)  # fmt: skip
    print(f"load average after: {load_average()}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
