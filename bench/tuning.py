"""Benchmark the tuning pipeline: wall time, CPU, peak memory per task, tuned vs defaults.

    uv run python -m bench.tuning [--trials N] [--folds K] [--rows N] [--only penguins|synthetic]

Runs `src/pipelines/tuning.py run` twice as subprocesses, each with its own temporary
MLflow and Metaflow state (bench/training.py's `pipeline_environment`): on the penguins
with config/local.yml, and on bench/dataset.py's synthetic dataset (`--rows`, 1,000 by
default) with that config's `tuning:` section. For each it prints the wall time, the
CPU seconds of all its processes, the largest resident set of any single process (one
Metaflow task: `os.wait4`'s ru_maxrss), the load average before and after, the time
of each step's tasks, and the search's outcome: the best trial's mean fold accuracy
against the defaults' on the same folds, the corrected paired t-test's p-value, and
whether the winner is recommended. Nothing here talks to the network.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.machine import machine_line
from bench.training import TreeSampler, load, mib, pipeline_environment, task_durations

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = "src/pipelines/tuning.py"
LOCAL_CONFIG = ROOT / "config" / "local.yml"

# Printed by a fresh process (Metaflow reads its datastore location once, at import).
OUTCOME = """
import json
from metaflow import Run  # The records are model_tuning's classes, installed with the project.
data = Run("Tuning/{run_id}", _namespace_check=False).data
trials, verdict, best = data.trials, data.verdict, data.best_trial
print("OUTCOME=" + json.dumps({{
    "default": data.baseline.mean("accuracy"),
    "best": None if best is None else trials[best].mean("accuracy"),
    "best_trial": best,
    "pruned": sum(t.pruned for t in trials),
    "p_value": verdict.p_value,
    "recommended": verdict.recommended,
    "winner": None if best is None else trials[best].hyperparameters,
    "default_folds": verdict.default_scores,
    "winner_folds": verdict.winner_scores,
}}))
"""


def run_search(workdir: Path, config: Path, extra: list[str]) -> dict:
    """One tuning run: its figures and outcome."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "metaflow-home").mkdir(exist_ok=True)
    run_id_file = workdir / "run_id"
    command = [sys.executable, PIPELINE, "--config", "project", str(config), "run"]
    command += ["--run-id-file", str(run_id_file), *extra]
    env = pipeline_environment(workdir)
    load_before, started = load(), time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    sampler = TreeSampler(process.pid)
    sampler.start()
    lines = [line.rstrip("\n") for line in process.stdout]
    _, status, usage = os.wait4(process.pid, 0)
    wall, tree_peak = time.perf_counter() - started, sampler.stop()
    (workdir / "pipeline.log").write_text("\n".join(lines), encoding="utf-8")
    if os.waitstatus_to_exitcode(status) != 0:
        print("\n".join(lines[-40:]), file=sys.stderr)
        raise SystemExit(f"The tuning run failed; log: {workdir / 'pipeline.log'} (kept).")
    code = OUTCOME.format(run_id=run_id_file.read_text().strip())
    env.setdefault("METAFLOW_USER", "bench")  # The client needs a user name, as runs do.
    printed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    outcome = [x for x in printed.stdout.splitlines() if x.startswith("OUTCOME=")]
    if not outcome:
        raise SystemExit(f"Could not read the run's outcome:\n{printed.stderr[-3000:]}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "largest_process": usage.ru_maxrss * 1024,  # Linux reports KiB.
        "tree_peak": tree_peak,
        "load_before": load_before,
        "load_after": load(),
        "steps": task_durations(lines),
        **json.loads(outcome[0].removeprefix("OUTCOME=")),
    }


def configs(directory: Path, args: argparse.Namespace) -> dict[str, tuple[Path, list[str]]]:
    """(config, extra run arguments) of each dataset to search."""
    from bench import dataset

    local = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    local["tuning"]["trials"] = args.trials
    penguins = directory / "penguins.yml"
    penguins.write_text(yaml.safe_dump(local), encoding="utf-8")
    csv, synthetic = dataset.write(directory / "synthetic", args.rows)
    settings = {**dataset.project_config(), "tuning": local["tuning"]}
    synthetic.write_text(yaml.safe_dump(settings), encoding="utf-8")
    folds = ["--folds", str(args.folds)]
    found = {
        "penguins": (penguins, folds),
        "synthetic": (synthetic, [*folds, "--dataset", str(csv)]),
    }
    return {name: found[name] for name in found if args.only in (None, name)}


def report(name: str, result: dict) -> None:
    best = "none" if result["best"] is None else f"{result['best']:.4f}"
    print(
        f"\n{name}: {result['wall']:.1f} s wall, {result['cpu']:.0f} s CPU, largest process "
        f"{mib(result['largest_process'])} MiB (tree {mib(result['tree_peak'])} MiB), "
        f"load {result['load_before']} -> {result['load_after']}"
    )
    for step, durations in result["steps"].items():
        print(f"  {step:<20} {len(durations)} task(s), {max(durations):.1f} s longest")
    print(
        f"  defaults {result['default']:.4f}, best trial {result['best_trial']} {best} "
        f"({result['pruned']} pruned), p={result['p_value']:.3g}, "
        f"{'recommended' if result['recommended'] else 'the defaults stand'}"
    )
    print(f"  defaults per fold {[round(v, 4) for v in result['default_folds']]}")
    print(f"  winner per fold   {[round(v, 4) for v in result['winner_folds']]}")
    print(f"  winner {result['winner']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="trials (default 20)")
    parser.add_argument("--folds", type=int, default=5, help="folds (default 5)")
    parser.add_argument("--rows", type=int, default=1000, help="synthetic rows (default 1000)")
    parser.add_argument("--only", choices=["penguins", "synthetic"], help="one dataset only")
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-tuning-") as directory:
        for name, (config, extra) in configs(Path(directory), args).items():
            report(name, run_search(Path(directory) / name, config, extra))


if __name__ == "__main__":
    main()
