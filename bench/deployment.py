"""Benchmark the deployment pipeline: a new version replacing a serving one, per phase.

    uv run python -m bench.deployment [--runs 3] [--workers 2] [--epochs 5] [--clients 8]
                                      [--pause 0] [--keep]

Everything happens in a temporary directory and on 127.0.0.1 only:

1. Two versions of `penguins` are trained in this process and registered as the
   training pipeline registers them (bench/serving.py's `train_and_register`), in a
   fresh SQLite store.
2. `src/pipelines/deployment.py run` deploys version 1 (nothing serving yet), then
   `--runs` times the other version, each replacing the one serving: the figure that
   matters (target <= 15 s, smoke test included). Each run is a subprocess from the
   repository root with its own Metaflow datastore (bench/training.py's environment).
   Per run: wall time, process start to "Workflow starting", each step's task (from
   "Task is starting" to "Task finished successfully", imports included), and inside
   `deploy` the server replacement and the smoke test (from the step's log line).
   Meanwhile `--clients` threads (tests/support/load.py) send one-row requests, each
   on a new connection, `--pause` seconds apart (0: as fast as answered): the requests
   that failed, by kind (target 0), and the captures lost (answered ids missing from
   the capture database; target 0). The versions alternate, so every other run is
   also the rollback of the one before.
3. The server replacement alone, in this process, with `LocalServer` as the Local
   backend drives it, split by the lines written to the server's log: downloading the
   model (the old server still answers), the new server starting beside the old one
   (uvicorn, its workers importing MLflow and the model's code and loading the model),
   every worker ready, the old server finishing what it accepted and stopping. There
   is no downtime to time: both accept on one socket until the old one stops.

The load average before and after is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.machine import machine_line
from bench.serving import dataset_rows, train_and_register
from bench.training import (
    TIME_FORMAT,
    WORKFLOW_LINE,
    pipeline_environment,
    task_durations,
)
from tests.support.load import Clients
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "src/pipelines/deployment.py"
TARGET_SECONDS = 15.0
# The deploy step's log line (src/pipelines/deployment.py) with its own split.
DEPLOY_LINE = re.compile(
    r"Version (?P<version>\S+) serves after (?P<serve>[\d.]+) s; "
    r"its smoke test took (?P<smoke>[\d.]+) s"
)
# Lines of the server log that mark its phases, in the order they appear.
SERVER_MARKS = {
    "uvicorn": "Started parent process",  # uvicorn runs; its workers start importing
    "worker": "Application startup complete",  # a worker has loaded the model
}
# LocalServer's own lines in the log: before uvicorn, and once the swap is done.
PREPARED = re.compile(r"Downloaded .* in (?P<download>[\d.]+) s; starting the server beside")
SWAPPED = re.compile(
    r"Ready (?P<ready>[\d.]+) s after starting; the previous server finished and stopped "
    r"in (?P<drain>[\d.]+) s"
)


def write_config(workdir: Path, url: str, workers: int) -> Path:
    """config/local.yml, its backend pointed at this run's port, database and state."""
    import yaml

    config = yaml.safe_load((ROOT / "config" / "local.yml").read_text())
    config["backend"] = {
        **config["backend"],
        "target": url,
        "database": str(workdir / "captures.db"),
        "state_dir": str(workdir / "serving"),
        "workers": workers,
    }
    path = workdir / "project.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_deployment(
    workdir: Path, config: Path, version: str, index: int, clients: Clients | None = None
) -> dict:
    """One `deployment.py run --model-version <version>`; its figures.

    With `clients`, they send requests throughout (started and stopped here).
    """
    command = [
        sys.executable, PIPELINE, "--config", "project", str(config),
        "run", "--model-version", version, "--run-id-file", str(workdir / f"run-{index}"),
        "--force",  # the swap is measured: these versions have nothing to compare them on
    ]  # fmt: skip
    if clients is not None:
        clients.__enter__()
    launched = datetime.now()
    start = time.perf_counter()
    try:
        result = subprocess.run(
            command,
            cwd=ROOT,
            env=pipeline_environment(workdir),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        wall = time.perf_counter() - start
    finally:
        if clients is not None:
            clients.stop()
    lines = (result.stdout + result.stderr).splitlines()
    (workdir / f"deployment-{index}.log").write_text("\n".join(lines))
    if result.returncode != 0:
        print("\n".join(lines[-30:]), file=sys.stderr)
        raise SystemExit(f"deployment of version {version} failed; log in {workdir} (kept)")
    figures: dict = {"wall": wall, "steps": task_durations(lines)}
    for line in lines:
        match = WORKFLOW_LINE.match(line)
        if match and "startup" not in figures:
            moment = datetime.strptime(match["time"], TIME_FORMAT)
            figures["startup"] = (moment - launched).total_seconds()
        match = DEPLOY_LINE.search(line)
        if match:
            figures["serve"], figures["smoke"] = float(match["serve"]), float(match["smoke"])
    log = workdir / "serving" / f"server-{version}.log"
    swaps = SWAPPED.findall(log.read_text(errors="replace")) if log.exists() else []
    if swaps:
        figures["ready"], figures["drain"] = (float(figure) for figure in swaps[-1])
    if clients is not None:
        answered = clients.ids()
        figures["answered"] = len(answered)
        figures["failures"] = dict(clients.failures)
        figures["examples"] = dict(clients.examples)
        figures["lost"] = len(set(answered) - captured_ids(workdir / "captures.db", answered))
    return figures


def captured_ids(database: Path, ids: list[str]) -> set[str]:
    """Those of `ids` that are in the capture database."""
    import sqlite3

    found: set[str] = set()
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        for offset in range(0, len(ids), 500):
            chunk = ids[offset : offset + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT id FROM predictions WHERE id IN ({marks})"
            found.update(row[0] for row in connection.execute(query, chunk))
    return found


def print_run(label: str, figures: dict) -> None:
    steps = {name: sum(times) for name, times in figures["steps"].items()}
    accounted = figures.get("startup", 0.0) + sum(steps.values())
    print(f"  {label}: {figures['wall']:.1f} s wall")
    print(f"    process start to 'Workflow starting': {figures.get('startup', float('nan')):.1f} s")
    for name, seconds in steps.items():
        detail = ""
        if name == "deploy" and "serve" in figures:
            rest = seconds - figures["serve"] - figures["smoke"]
            detail = (
                f" (server replaced and healthy {figures['serve']:.1f} s, smoke test "
                f"{figures['smoke']:.2f} s, task process and imports {rest:.1f} s)"
            )
        print(f"    {name:<8} {seconds:5.1f} s{detail}")
    print(f"    scheduling between tasks and shutdown: {figures['wall'] - accounted:.1f} s")
    if "ready" in figures:
        print(
            f"    swap: new server ready {figures['ready']:.1f} s after it started beside the "
            f"old one; the old one finished and stopped {figures['drain']:.2f} s later"
        )
    if "answered" in figures:
        failed = sum(figures["failures"].values())
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(figures["failures"].items()))
        print(
            f"    under load: {figures['answered']} requests answered, {failed} failed"
            f"{f' ({kinds})' if kinds else ''} (target 0: {'ok' if not failed else 'MISSED'}), "
            f"{figures['lost']} answered predictions not captured "
            f"(target 0: {'ok' if not figures['lost'] else 'MISSED'})"
        )
        for kind, example in figures["examples"].items():
            print(f"      first {kind}: {example}")


class LogMarks(threading.Thread):
    """Notes when each of `SERVER_MARKS` first appears in a growing log file."""

    def __init__(self, path: Path, start: float) -> None:
        super().__init__(daemon=True)
        self.path, self.origin, self.seen = path, start, {}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.02):
            text = self.path.read_text(errors="replace") if self.path.exists() else ""
            for name, mark in SERVER_MARKS.items():
                if name not in self.seen and mark in text:
                    self.seen[name] = time.perf_counter() - self.origin

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.join()
        return self.seen


def replace_in_process(workdir: Path, url: str, workers: int, versions: list[str]) -> None:
    """Replace the serving version with `LocalServer`, timing each phase."""
    from backends.local_server import LocalServer, ping

    server = LocalServer(workdir / "serving")
    state = server.state()
    serving = state.model_version if state else versions[0]
    version = next(v for v in versions if v != serving)
    environment = {
        "SERVING_CAPTURE_DATABASE": str(workdir / "captures.db"),
        "SERVING_MODEL_VERSION": version,
        "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"],
    }
    log = workdir / "serving" / f"server-{version}.log"
    log.unlink(missing_ok=True)
    start = time.perf_counter()
    marks = LogMarks(log, start)
    marks.start()
    server.start(f"models:/penguins/{version}", version, url, workers, environment)
    healthy = time.perf_counter() - start
    seen = marks.stop()
    assert ping(url)
    text = log.read_text(errors="replace")
    prepared, swapped = PREPARED.search(text), SWAPPED.search(text)
    download = float(prepared["download"]) if prepared else 0.0
    ready, drain = (float(swapped[k]) for k in ("ready", "drain")) if swapped else (0.0, 0.0)
    uvicorn, worker = (seen.get(name, float("nan")) for name in SERVER_MARKS)
    print(f"  version {serving} -> {version}: {healthy:.1f} s")
    print(f"    download the model (old server still answering): {download:.2f} s")
    print(f"    uvicorn started beside the old server: {uvicorn - download:.1f} s")
    print(f"    workers import MLflow and the model's code, load it: {worker - uvicorn:.1f} s")
    print(f"    every worker ready (checked in process): {download + ready - worker:.2f} s")
    print(f"    the old server finishes what it accepted, stops: {drain:.2f} s")
    print("    downtime: none (both servers accept on one socket until the old one stops)")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="replacements to time")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs per version")
    parser.add_argument("--clients", type=int, default=8, help="clients during replacements")
    parser.add_argument(
        "--pause", type=float, default=0.0, help="seconds between a client's requests"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    arguments = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-deployment-"))
    (workdir / "metaflow-home").mkdir()
    os.environ.update(pipeline_environment(workdir))
    print(f"before: {machine_line()}")
    print(f"temporary directory: {workdir}")
    url = f"http://127.0.0.1:{free_port()}/invocations"
    config = write_config(workdir, url, arguments.workers)
    failed = True
    try:
        print("setup: two registered versions")
        _, loaded = dataset_rows()
        versions = [train_and_register(workdir, arguments.epochs, loaded)[1] for _ in range(2)]

        print(f"deployment pipeline ({arguments.workers} server workers)")
        first = run_deployment(workdir, config, versions[0], 0)
        print_run(f"version {versions[0]}, nothing serving before", first)
        replacements, under_load = [], []
        for index in range(1, arguments.runs + 1):
            version = versions[index % 2]
            clients = (
                Clients(url, arguments.clients, pause=arguments.pause)
                if arguments.clients
                else None
            )
            figures = run_deployment(workdir, config, version, index, clients)
            replacements.append(figures["wall"])
            if "answered" in figures:
                under_load.append(figures)
            print_run(f"version {version} replacing {versions[(index + 1) % 2]}", figures)
        if replacements:
            best, worst = min(replacements), max(replacements)
            verdict = "ok" if worst <= TARGET_SECONDS else "MISSED"
            print(
                f"replacing a serving version: {best:.1f}-{worst:.1f} s over "
                f"{len(replacements)} runs (target <= {TARGET_SECONDS:.0f} s: {verdict})"
            )

        if under_load:
            failed_requests = sum(sum(f["failures"].values()) for f in under_load)
            lost = sum(f["lost"] for f in under_load)
            answered = sum(f["answered"] for f in under_load)
            print(
                f"during {len(under_load)} replacements with {arguments.clients} clients: "
                f"{answered} answered, {failed_requests} failed, {lost} not captured "
                f"(target 0 and 0: {'ok' if not failed_requests and not lost else 'MISSED'})"
            )

        print("the server replacement alone, in this process")
        replace_in_process(workdir, url, arguments.workers, versions)
        failed = False
    finally:
        from backends.local_server import LocalServer

        LocalServer(workdir / "serving").stop()
        print(f"after: {machine_line()}")
        if arguments.keep or failed:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
