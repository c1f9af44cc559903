"""The whole loop in one command: train, deploy, traffic, labels, monitor — twice.

    uv run just demo              # or: uv run python scripts/demo.py
    uv run just demo --verbose    # every pipeline's full log on the terminal as it runs

The second round of traffic is drifted; its monitoring run raises the alert. Each
pipeline run is one line on the terminal (its time and its last word); the full log of
every run goes to a file (`--log`, by default logs/demo-<time>.log), whose path the demo
prints first. At the end it prints where to look. The model server keeps running (stop
it with `uv run just stop`) unless `--stop-server` is given.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

ROOT = Path(__file__).resolve().parent.parent
# A log line of the pipelines' own loggers (common.pipeline.LOG_FORMAT), after Metaflow's
# prefix: its level and message. The monitoring pipeline's alerts are warnings.
_OWN_LINE = re.compile(r"\[(INFO|WARNING)\] (.*)$")
_ALERT = "ALERT: "
_FINISHED = "The pipeline finished successfully."
_TAIL_LINES = 40  # of a failed run's log, shown on the terminal


class Stages:
    """Runs the pipelines one after another, each one's output into the log file, and
    a line per run on the terminal (all of the output with `verbose`)."""

    def __init__(self, config: str, log: TextIO, verbose: bool) -> None:
        self.config, self.log, self.verbose = config, log, verbose
        self.returncode: int | None = None

    def run(self, label: str, flow: str, *args: str) -> None:
        """Run one pipeline; stop the demo if it fails, showing the end of its log."""
        command = [sys.executable, f"src/pipelines/{flow}.py", "--config", "project"]
        command += [self.config, "run", *args]
        self.log.write(f"\n==> {label}: {' '.join(command[1:])}\n")
        started = time.monotonic()
        lines = self._stream(command)
        seconds = time.monotonic() - started
        if self.returncode != 0:
            tail = "".join(lines[-_TAIL_LINES:])
            sys.exit(
                f"{tail}\nThe {label} run failed (exit code {self.returncode}) after "
                f"{seconds:.0f} s; the end of its log is above, all of it in {self.log.name}."
            )
        print(f"  {label:<20} {seconds:4.0f} s   {last_word(lines)}", flush=True)

    def _stream(self, command: list[str]) -> list[str]:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace",
        )  # fmt: skip
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            self.log.write(line)
            if self.verbose:
                print(line, end="", flush=True)
        self.log.flush()
        self.returncode = process.wait()
        return lines


def last_word(lines: list[str]) -> str:
    """What a run said last in its own words: the alerts it raised, if any; else its
    final INFO message before the standard goodbye (empty if it said nothing)."""
    said = [m.groups() for line in lines if (m := _OWN_LINE.search(line.rstrip()))]
    alerts = [
        text.removeprefix(_ALERT).strip()
        for level, text in said
        if level == "WARNING" and text.startswith(_ALERT)
    ]
    if alerts:
        return f"{len(alerts)} alert(s): {' '.join(alerts)}"
    messages = [text.strip() for level, text in said if level == "INFO" and text != _FINISHED]
    return messages[-1] if messages else ""


def default_log() -> Path:
    return ROOT / "logs" / f"demo-{datetime.now(UTC):%Y%m%d-%H%M%S}.log"


def stop_serving(config: str) -> None:
    """Stop what the config's backend serves (its server, or its endpoint)."""
    from common.config import load_project_configuration
    from common.pipeline import build_backend

    settings = load_project_configuration(config)["backend"]
    build_backend(settings["module"], settings).stop()
    print("\n==> Stopped serving.")


def latest_alerts() -> list[str]:
    """The alerts of the newest monitoring run."""
    from metaflow import Flow, namespace

    namespace(None)
    return list(Flow("Monitoring").latest_successful_run["end"].task.data.alerts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/local.yml")
    parser.add_argument("--training-epochs", default="50")
    parser.add_argument("--folds", default="5")
    parser.add_argument("--samples", default="200", help="rows of traffic per round")
    parser.add_argument("--stop-server", action="store_true", help="stop serving at the end")
    parser.add_argument("--verbose", action="store_true", help="show every pipeline's full log")
    parser.add_argument(
        "--log", type=Path, help="the full log's file (default: logs/demo-<time>.log)"
    )
    options = parser.parse_args()
    config = str(Path(options.config).resolve())
    log_path = (options.log or default_log()).resolve()
    os.chdir(ROOT)  # Relative paths in the config (database, state) are the project's.
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Full log: {log_path}" + ("" if options.verbose else " (--verbose shows it here)"))

    with open(log_path, "w", encoding="utf-8") as log:
        rounds = run_the_loop(Stages(config, log, options.verbose), options)

    if options.stop_server:
        stop_serving(config)

    print("\n==> Demo finished.")
    for name, alerts in rounds.items():
        print(f"    {name} traffic: {' '.join(alerts) if alerts else 'no alerts'}")
    print(
        f"\nFull log: {log_path}\n"
        "Where to look:\n"
        "    uv run just mlflow               # runs, fold runs, registry, monitoring history\n"
        "    uv run just cards monitoring     # the Evidently reports and the history chart\n"
        "    uv run just cards training       # cross-validation and training cards\n"
        "    uv run just stop                 # stop the model server"
    )
    return 0 if rounds["drifted"] and not rounds["normal"] else 1


def run_the_loop(stages: Stages, options: argparse.Namespace) -> dict[str, list[str]]:
    """Train and deploy, then a normal and a drifted round; each round's alerts."""
    epochs, folds = options.training_epochs, options.folds
    stages.run("training", "training", "--training-epochs", epochs, "--folds", folds)
    stages.run("deployment", "deployment")
    rounds = {}
    for name, extra in (("normal", []), ("drifted", ["--drift"])):
        samples = ["--samples", options.samples]
        stages.run(f"traffic ({name})", "traffic", "--mode", "traffic", *samples, *extra)
        stages.run(
            f"labels ({name})", "traffic", "--mode", "labels", "--ground-truth-quality", "0.8"
        )
        stages.run(f"monitoring ({name})", "monitoring", *samples)
        rounds[name] = latest_alerts()
    return rounds


if __name__ == "__main__":
    sys.exit(main())
