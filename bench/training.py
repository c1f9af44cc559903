"""Benchmark the training pipeline: wall time, peak memory, per-step time, accuracy.

    uv run python -m bench.training [--runs N] [--epochs E] [--folds K] [--sync]
                                    [--rows N [--batch-size B]] [--team]

`--rows N` runs the pipeline on a synthetic dataset of N rows and its config, written
by bench/dataset.py into the temporary directory (10 features, one categorical with 50
levels, missing values); without it, on the penguins with config/local.yml.

Each run is `src/pipelines/training.py run` as a subprocess, from the repository root,
with its own temporary directory for MLflow (sqlite database and artifacts) and for
Metaflow (datastore and metadata), so runs neither see nor leave any state. Nothing
here talks to the network; only `--sync` downloads packages (from PyPI).

`--team` also runs the pipeline against the team stack (`python -m team_stack`:
PostgreSQL, moto as S3, `mlflow server` with basic auth; Metaflow on the S3
datastore), started once in the temporary directory on free ports before the first
run and stopped after the last, so its start-up is not counted. Each of the `--runs`
rounds runs the embedded default and then the team set-up; the report gives both
medians, their ratio and the per-step times side by side. Each team run writes under
its own S3 prefix, so no run finds another's artifacts already stored.

Peak memory is measured two ways:
- tree: the largest sum of the resident set sizes of the pipeline process and all of
  its descendants, sampled every 0.2 s (psutil when installed, else /proc). Pages that
  processes share (libraries) count once per process, so this overstates real use.
- largest process: the largest peak RSS of any single process of the run, exact, from
  the kernel (`os.wait4`, the same counter as `getrusage(RUSAGE_CHILDREN).ru_maxrss`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.machine import machine_line

ROOT = Path(__file__).resolve().parent.parent
FLOW = "Training"
PIPELINE = "src/pipelines/training.py"
SAMPLE_INTERVAL = 0.2

# `2026-11-28 01:33:41.086 [1795829621063062/start/1 (pid 7594)] Task is starting.`
TASK_LINE = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) "
    r"\[(?P<run>[^/\]]+)/(?P<step>[^/\]]+)/(?P<task>[^ \]]+) \(pid \d+\)\] "
    r"(?P<event>Task is starting|Task finished successfully)"
)
WORKFLOW_LINE = re.compile(r"^(?P<time>\S+ \S+) Workflow starting \(run-id (?P<run>[^)]+)\)")
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


try:
    import psutil
except ImportError:  # Not a project dependency: fall back to reading /proc.
    psutil = None


def memory_method() -> str:
    if psutil is not None:
        return "psutil"
    if Path("/proc/self/statm").exists():
        return "/proc"
    return "unavailable"


def tree_rss(root_pid: int) -> int:
    """Resident bytes of `root_pid` and all its descendants, now."""
    if psutil is not None:
        try:
            root = psutil.Process(root_pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += process.memory_info().rss
        return total

    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8") as file:
                stat = file.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    page = os.sysconf("SC_PAGE_SIZE")
    total, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        pending.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", encoding="utf-8") as file:
                total += int(file.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


class TreeSampler(threading.Thread):
    """Polls the resident memory of a process tree until stopped; keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        if memory_method() == "unavailable":
            return
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop_event.wait(SAMPLE_INTERVAL)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


@dataclass
class RunResult:
    wall: float
    tree_peak: int
    largest_process: int
    cpu: float  # CPU seconds (user + system) of the pipeline and all its processes.
    startup: float | None  # Seconds from launch to "Workflow starting".
    run_id: str | None
    steps: dict[str, list[float]] = field(default_factory=dict)  # Task durations per step.
    outcome: dict = field(default_factory=dict)


def task_durations(lines: list[str]) -> dict[str, list[float]]:
    """Seconds from "Task is starting" to "Task finished successfully", per step."""
    started: dict[tuple[str, str], datetime] = {}
    steps: dict[str, list[float]] = {}
    for line in lines:
        match = TASK_LINE.match(line)
        if not match:
            continue
        when = datetime.strptime(match["time"], TIME_FORMAT)
        key = (match["step"], match["task"])
        if match["event"] == "Task is starting":
            started[key] = when
            steps.setdefault(match["step"], [])
        elif key in started:
            steps[match["step"]].append((when - started.pop(key)).total_seconds())
    return steps


def pipeline_environment(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("MLFLOW_REGISTRY_URI", "METAFLOW_PROFILE", "VIRTUAL_ENV"):
        env.pop(name, None)
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{workdir}/mlflow.db",
            # Where MLflow's sqlite store puts artifacts when no server says otherwise;
            # without it they would land in ./mlruns of the repository.
            "_MLFLOW_SERVER_ARTIFACT_ROOT": str(workdir / "mlartifacts"),
            "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(workdir),
            # Cards ignore the sysroot and go to ./.metaflow/mf.cards unless told.
            "METAFLOW_CARD_LOCALROOT": str(workdir / ".metaflow" / "mf.cards"),
            "METAFLOW_DEFAULT_DATASTORE": "local",
            "METAFLOW_DEFAULT_METADATA": "local",
            "METAFLOW_HOME": str(workdir / "metaflow-home"),  # No ~/.metaflowconfig.
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.setdefault("KERAS_BACKEND", "jax")
    return env


def run_pipeline(
    workdir: Path, args: argparse.Namespace, team: dict[str, str] | None = None
) -> RunResult:
    """One pipeline run in `workdir`: embedded, or with `team`'s variables (the stack's)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metaflow-home").mkdir(exist_ok=True)
    run_id_file = workdir / "run_id"
    command = [sys.executable, PIPELINE]
    if args.synthetic is not None:
        csv, config = args.synthetic
        command += ["--config", "project", str(config)]
    command += ["run", "--run-id-file", str(run_id_file)]
    if args.synthetic is not None:
        command += ["--dataset", str(csv)]
    if args.batch_size is not None:
        command += ["--training-batch-size", str(args.batch_size)]
    if args.epochs is not None:
        command += ["--training-epochs", str(args.epochs)]
    if args.folds is not None:
        command += ["--folds", str(args.folds)]
    env = pipeline_environment(workdir)
    if team is not None:
        env.pop("_MLFLOW_SERVER_ARTIFACT_ROOT")  # the server decides: s3://bucket/mlflow
        env.update(team)
        env["METAFLOW_DATASTORE_SYSROOT_S3"] += f"/{workdir.name}"

    lines: list[str] = []
    launched = datetime.now()
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    sampler = TreeSampler(process.pid)
    sampler.start()
    with open(workdir / "pipeline.log", "w", encoding="utf-8") as log:
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            log.write(line)
            if args.verbose:
                print(line, end="", flush=True)
    # wait4, not wait: its resource usage is this child's own (with its waited-for
    # descendants), where getrusage(RUSAGE_CHILDREN) would mix in every earlier run.
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    tree_peak = sampler.stop()

    if process.returncode != 0:
        print("\n".join(lines[-40:]), file=sys.stderr)
        raise SystemExit(
            f"The pipeline failed with exit code {process.returncode}; "
            f"full log: {workdir / 'pipeline.log'} (kept)."
        )

    startup = None
    for line in lines:
        match = WORKFLOW_LINE.match(line)
        if match:
            startup = (datetime.strptime(match["time"], TIME_FORMAT) - launched).total_seconds()
            break
    run_id = run_id_file.read_text().strip() if run_id_file.exists() else None
    return RunResult(
        wall=wall,
        tree_peak=tree_peak,
        largest_process=usage.ru_maxrss * 1024,  # Linux reports KiB.
        cpu=usage.ru_utime + usage.ru_stime,
        startup=startup,
        run_id=run_id,
        steps=task_durations(lines),
        outcome=inspect_run(run_id, env) if run_id else {"error": "no run id"},
    )


def inspect_run(run_id: str, env: dict[str, str]) -> dict:
    """Read the finished run's results in a fresh process.

    Metaflow reads METAFLOW_DATASTORE_SYSROOT_LOCAL once, at import: a process that has
    read one run's datastore cannot read the next one's, so each run gets its own.
    """
    result = subprocess.run(
        # As a module from the root, as the bench runs: `bench.machine` must import.
        [sys.executable, "-m", "bench.training", "--inspect", run_id],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "inspection failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def inspect(run_id: str) -> None:
    """Print one JSON line with the run's outcome (run with the pipeline's environment)."""
    from metaflow import Flow, namespace

    namespace(None)
    run = Flow(FLOW)[run_id]
    scores = run["average_scores"].task.data
    end = run["end"].task.data
    outcome = {
        "successful": run.successful,
        "accuracy": float(scores.test_accuracy),
        "accuracy_std": float(scores.test_accuracy_std),
        "registered": bool(end.registered),
        "model_version": end.model_version,
    }

    import mlflow

    client = mlflow.MlflowClient()
    versions = client.search_model_versions()
    outcome["mlflow_model_versions"] = [f"{v.name} v{v.version}" for v in versions]
    artifact_uri = client.get_run(scores.mlflow_run_id).info.artifact_uri
    # Embedded: under the run's own directory. Team: wherever the server puts them.
    root = os.environ.get("_MLFLOW_SERVER_ARTIFACT_ROOT")
    outcome["artifacts_isolated"] = artifact_uri.startswith(root) if root else True
    print(json.dumps(outcome))


def time_cold_sync() -> tuple[float, float, str]:
    """Seconds for `uv sync --frozen` with an empty cache into a new environment, then for
    the environment's first Python start, which compiles its bytecode (penguins_bytecode)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    command = [uv] if uv else [sys.executable, "-m", "uv"]
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as directory:
        project = Path(directory) / "project"
        project.mkdir()
        for name in ("pyproject.toml", "uv.lock", "README.md"):
            shutil.copy2(ROOT / name, project / name)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "src", project / "src", ignore=ignore)
        # The dev group's bytecode hook, a path dependency.
        hook = Path("scripts") / "bytecode_hook"
        shutil.copytree(ROOT / hook, project / hook, ignore=ignore)
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        env["UV_CACHE_DIR"] = str(Path(directory) / "cache")
        env["UV_PROJECT_ENVIRONMENT"] = str(Path(directory) / "venv")
        env["UV_NO_PROGRESS"] = "1"
        start = time.perf_counter()
        result = subprocess.run(
            [*command, "sync", "--frozen"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        output = (result.stdout + result.stderr).strip().splitlines()
        if result.returncode != 0:
            raise SystemExit("uv sync failed:\n" + "\n".join(output[-20:]))
        start = time.perf_counter()
        python = Path(env["UV_PROJECT_ENVIRONMENT"]) / "bin" / "python"
        subprocess.run([python, "-c", "pass"], env=env, check=True)
        compile_seconds = time.perf_counter() - start
    summary = "; ".join(line.strip() for line in output if line.startswith(("Installed", "Pre")))
    return seconds, compile_seconds, summary


def synthetic_dataset(directory: Path, rows: int) -> tuple[Path, Path]:
    """bench/dataset.py's CSV and config for `rows` rows, in `directory`."""
    from bench import dataset

    started = time.perf_counter()
    csv, config = dataset.write(directory, rows)
    seconds = time.perf_counter() - started
    size = csv.stat().st_size / 2**20
    print(f"synthetic dataset: {rows:,} rows, {size:.1f} MiB, written in {seconds:.1f} s")
    return csv, config


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f}"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report(results: list[RunResult]) -> None:
    print(
        f"\n{'run':>3}  {'wall s':>7}  {'cpu s':>6}  {'startup s':>9}  {'tree MiB':>8}  "
        f"{'proc MiB':>8}  "
        f"{'cv accuracy':<17}  {'registered':<10}  run id"
    )
    for number, result in enumerate(results, 1):
        outcome = result.outcome
        if "error" in outcome:
            accuracy, registered = "?", f"? ({outcome['error']})"
        else:
            accuracy = f"{outcome['accuracy']:.4f} ± {outcome['accuracy_std']:.4f}"
            registered = f"v{outcome['model_version']}" if outcome["registered"] else "no"
            if outcome["registered"] != bool(outcome["mlflow_model_versions"]):
                registered += " (MLflow disagrees!)"
        startup = f"{result.startup:.1f}" if result.startup is not None else "?"
        print(
            f"{number:>3}  {result.wall:>7.1f}  {result.cpu:>6.1f}  {startup:>9}  "
            f"{mib(result.tree_peak):>8}  "
            f"{mib(result.largest_process):>8}  {accuracy:<17}  {registered:<10}  {result.run_id}"
        )
    walls = [result.wall for result in results]
    print(f"median wall time: {statistics.median(walls):.1f} s over {len(walls)} run(s)")
    print(
        "cpu = CPU seconds of all the run's processes (os.wait4): less sensitive than the "
        "wall time to other work on the machine"
    )
    print(
        f"peak memory: tree = max sum of RSS over the process tree ({memory_method()}, "
        f"every {SAMPLE_INTERVAL} s); proc = largest single process (os.wait4 ru_maxrss)"
    )
    if any(not result.outcome.get("artifacts_isolated", True) for result in results):
        print("warning: MLflow artifacts were not written to the temporary directory")

    steps: list[str] = []
    for result in results:
        steps += [step for step in result.steps if step not in steps]
    print("\nper step: task start to finish, median over runs")
    print(f"{'step':<18} {'tasks':>5} {'sum s':>7} {'max s':>7}")
    for step in steps:
        tasks, total, longest = step_medians(results, step)
        print(f"{step:<18} {tasks:>5g} {total:>7.1f} {longest:>7.1f}")


def step_medians(results: list[RunResult], step: str) -> tuple[float, float, float]:
    """(tasks, sum of their seconds, the longest task's seconds) of `step`, median over runs."""
    durations = [result.steps.get(step, []) for result in results]
    return (
        statistics.median(len(d) for d in durations),
        statistics.median(sum(d) for d in durations),
        statistics.median(max(d, default=0.0) for d in durations),
    )


def compare(embedded: list[RunResult], team: list[RunResult]) -> None:
    """The team set-up against the embedded default: medians, ratio, per-step times."""
    local = statistics.median(result.wall for result in embedded)
    remote = statistics.median(result.wall for result in team)
    print(f"\nembedded vs team, {len(embedded)} interleaved round(s), load average {load()}")
    print(f"median wall time: embedded {local:.1f} s, team {remote:.1f} s")
    print(f"ratio team / embedded: {remote / local:.2f} (target <= 1.3)")
    print(f"\n{'step':<18} {'tasks':>5} {'embedded sum/max s':>19} {'team sum/max s':>15}")
    steps: list[str] = []
    for result in embedded + team:
        steps += [step for step in result.steps if step not in steps]
    for step in steps:
        tasks, local_sum, local_max = step_medians(embedded, step)
        _, remote_sum, remote_max = step_medians(team, step)
        print(
            f"{step:<18} {tasks:>5g} {local_sum:>11.1f}/{local_max:<7.1f} "
            f"{remote_sum:>7.1f}/{remote_max:<7.1f}"
        )


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def team_stack(directory: Path):
    """The team stack (`team_stack.stack.up`) in `directory` on free ports, with a fresh
    admin; yields the variables a pipeline run needs, and stops the stack after."""
    from team_stack.stack import Settings, down, up

    # PostgreSQL runs as its own user, who must get through mkdtemp's 0700 directory.
    directory.parent.chmod(0o711)
    settings = Settings(
        dir=directory,
        mlflow_port=free_port(),
        postgres_port=free_port(),
        s3_port=free_port(),
        bucket="bench",
    )
    credentials = {
        "MLFLOW_TRACKING_USERNAME": "bench",
        "MLFLOW_TRACKING_PASSWORD": secrets.token_urlsafe(18),
    }
    started = time.perf_counter()
    try:
        lines = up(settings, {**os.environ, **credentials}, say=lambda text: None)
        print(f"team stack up in {time.perf_counter() - started:.0f} s (not counted)")
        exported = dict(line.removeprefix("export ").split("=", 1) for line in lines)
        # The credential lines name the variables (`"$VAR"`): the values are ours.
        yield {k: v for k, v in exported.items() if "$" not in v} | credentials
    finally:
        down(settings, say=lambda text: None)


def run_rounds(
    base: Path, args: argparse.Namespace, results: list[RunResult], team_results: list[RunResult]
) -> None:
    """`args.runs` rounds: the embedded run, then (with `--team`) one against the stack."""
    with contextlib.ExitStack() as stack:
        team = stack.enter_context(team_stack(base / "stack")) if args.team else None
        for number in range(1, args.runs + 1):
            print(f"run {number}/{args.runs} in {base / str(number)} ...", flush=True)
            results.append(run_pipeline(base / str(number), args))
            print(f"  {results[-1].wall:.1f} s; load average: {load()}", flush=True)
            if team is not None:
                print(f"  team run {number}/{args.runs} ...", flush=True)
                team_results.append(run_pipeline(base / f"team-{number}", args, team))
                print(f"  {team_results[-1].wall:.1f} s; load average: {load()}", flush=True)


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="pipeline runs (default 1)")
    parser.add_argument("--epochs", type=int, help="--training-epochs (pipeline default)")
    parser.add_argument("--folds", type=int, help="--folds (pipeline default)")
    parser.add_argument("--batch-size", type=int, help="--training-batch-size (default 32)")
    parser.add_argument("--rows", type=int, help="use a synthetic dataset of this many rows")
    parser.add_argument("--sync", action="store_true", help="also time a cold `uv sync`")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--verbose", action="store_true", help="stream the pipeline's output")
    parser.add_argument(
        "--team",
        action="store_true",
        help="also run against the team stack in each round and compare (stack start-up "
        "not counted)",
    )
    parser.add_argument("--inspect", metavar="RUN_ID", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = argument_parser()
    args = parser.parse_args()
    if args.inspect:
        inspect(args.inspect)
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    print(f"before: {machine_line()}")
    if args.sync:
        seconds, compile_seconds, summary = time_cold_sync()
        print(f"cold `uv sync --frozen` (empty cache, new venv): {seconds:.1f} s  [{summary}]")
        print(f"its first Python start, compiling the bytecode: {compile_seconds:.1f} s")
        print(f"load average after sync: {load()}")

    base = Path(tempfile.mkdtemp(prefix="bench-training-"))
    results: list[RunResult] = []
    team_results: list[RunResult] = []
    args.synthetic = None
    try:
        if args.rows is not None:
            args.synthetic = synthetic_dataset(base / "dataset", args.rows)
        run_rounds(base, args, results, team_results)
    except BaseException:
        args.keep = True  # A failed run's log is the thing to read.
        raise
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    report(results)
    if team_results:
        print("\nteam set-up:")
        report(team_results)
        compare(results, team_results)
    print(f"\nafter: {machine_line()}")


if __name__ == "__main__":
    main()
