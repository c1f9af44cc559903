"""The whole loop in one command: train, deploy, traffic, labels, monitor — twice.

    uv run just demo              # or: uv run python scripts/demo.py

The second round of traffic is drifted; its monitoring run raises the alert. At the
end the demo prints where to look. The model server keeps running (stop it with
`uv run just stop`) unless `--stop-server` is given.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(flow: str, config: str, *args: str) -> None:
    """Run one pipeline, streaming its output; stop the demo if it fails."""
    command = [sys.executable, f"src/pipelines/{flow}.py", "--config", "project", config, "run"]
    command += list(args)
    print(f"\n==> {flow} {' '.join(args)}", flush=True)
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        sys.exit(f"The {flow} pipeline failed (exit code {result.returncode}); see above.")
    print(f"<== {flow} finished in {time.monotonic() - started:.0f} s", flush=True)


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
    options = parser.parse_args()
    config = str(Path(options.config).resolve())
    os.chdir(ROOT)  # Relative paths in the config (database, state) are the project's.

    run("training", config, "--training-epochs", options.training_epochs, "--folds", options.folds)
    run("deployment", config)
    rounds = {}
    for name, extra in (("normal", []), ("drifted", ["--drift"])):
        run("traffic", config, "--mode", "traffic", "--samples", options.samples, *extra)
        run("traffic", config, "--mode", "labels", "--ground-truth-quality", "0.8")
        run("monitoring", config, "--samples", options.samples)
        rounds[name] = latest_alerts()

    if options.stop_server:
        stop_serving(config)

    print("\n==> Demo finished.")
    for name, alerts in rounds.items():
        print(f"    {name} traffic: {'; '.join(alerts) if alerts else 'no alerts'}")
    print(
        "\nWhere to look:\n"
        "    uv run just mlflow               # runs, fold runs, registry, monitoring history\n"
        "    uv run just cards monitoring     # the Evidently reports and the history chart\n"
        "    uv run just cards training       # cross-validation and training cards\n"
        "    uv run just stop                 # stop the model server"
    )
    return 0 if rounds["drifted"] and not rounds["normal"] else 1


if __name__ == "__main__":
    sys.exit(main())
