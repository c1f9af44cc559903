"""Measure the accuracy estimated before labels (CBPE) against the accuracy realised.

    uv run python -m bench.estimate [--windows 5] [--drifted-windows 3] [--window 500]
                                    [--keep] [--verbose]

In a temporary directory (MLflow store, Metaflow datastore, capture database):

1. the training pipeline runs at its defaults, as the quick start runs it, and
   registers version 1 of `penguins` with its calibration (fitted on the out-of-fold
   predictions at registration) and its input support;
2. the Local backend serves that version (one worker) on a free port, as the
   deployment pipeline does;
3. each window is `--window` rows of traffic from the traffic pipeline's sampler
   (`common.traffic.sample_requests`, a new seed per window), ten rows a request.
   Before any label, the window's captures (the monitoring pipeline's reading:
   `model_monitoring.production_rows`) give the estimate, as the monitoring pipeline
   makes it (`model_monitoring.performance_estimate.estimate_version`: calibrated
   confidences, answers outside the input support counted as guesses), and, for
   comparison, the confidences-only estimate (plain CBPE, as versions registered
   without a support get); then each row's true species is attached
   by id, as real labels would be, and the realised accuracy is read from the same
   captures. Normal windows first, then `--drifted-windows` of `--drift` traffic;
4. the monitoring pipeline itself then runs on the first drifted window, before its
   labels, to show what it reports and alerts.

Targets (issue 23): on normal traffic the estimate within 0.03 of the realised accuracy
on windows of 500 captures; on drifted traffic the estimate under
`monitoring.accuracy_threshold` on the first window, before any label. The traffic is
drawn from the rows the served model was trained on, so on normal traffic the realised
accuracy is that of seen rows; the calibration is fitted on unseen (out-of-fold) ones.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.machine import machine_line
from bench.training import ROOT, pipeline_environment
from tests.support.ports import free_port

MODEL_NAME = "penguins"
VERSION = "1"
TOLERANCE = 0.03
BATCH = 10


@dataclass
class Window:
    kind: str
    number: int
    estimate: Any  # model_monitoring.performance_estimate.Estimate
    plain: float  # the confidences-only estimate (plain CBPE)
    realised: float
    wrong_confident: float  # share of the wrong answers given with confidence >= 0.99
    right_outside: float  # the realised accuracy of the answers outside the input support
    right_inside: float  # ... and inside it


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--windows", type=int, default=5, help="normal windows")
    parser.add_argument("--drifted-windows", type=int, default=3)
    parser.add_argument("--window", type=int, default=500, help="captures per window")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--verbose", action="store_true", help="print the pipelines' output")
    return parser.parse_args()


def run(command: list[str], environment: dict[str, str], verbose: bool) -> str:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if verbose or done.returncode:
        print(output)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode})")
    print(f"  {' '.join(command[1:3])}: {time.perf_counter() - started:.1f} s")
    return output


def project() -> tuple[Any, Any, Any]:
    from common.config import load_project_configuration
    from common.data import DatasetSchema, load_dataset
    from common.settings import MonitoringSettings

    config = load_project_configuration(ROOT / "config" / "local.yml")
    schema = DatasetSchema.from_config(config["dataset"])
    data = load_dataset(ROOT / "data" / "penguins.csv", schema, 42)
    return schema, data, MonitoringSettings(**config.get("monitoring", {}))


def write_config(directory: Path, backend: dict[str, Any]) -> Path:
    import yaml

    config = yaml.safe_load((ROOT / "config" / "local.yml").read_text())
    config["backend"] = {**config["backend"], **backend}
    path = directory / "project.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def send_window(local: Any, schema: Any, data: Any, size: int, drift: bool, seed: int) -> dict:
    """`size` rows of traffic through the server; id -> true species."""
    from common.traffic import batches, sample_requests

    rows = sample_requests(data, schema, size, drift, seed)
    truth = data.sample(n=size, replace=size > len(data), random_state=seed)[schema.target]
    ids: list[str] = []
    for group in batches(rows, BATCH):
        ids += [answer["id"] for answer in local.invoke(group)["predictions"]]
    return dict(zip(ids, truth.tolist(), strict=True))


def measure(local: Any, stored: tuple, size: int, truth: dict[str, str]) -> list:
    """The estimate of the newest `size` captures before their labels and the plain
    CBPE one, then once labelled: the accuracy realised on them, how confident the
    wrong answers were, and the accuracy realised outside and inside the support
    (`stored`: the version's calibration and support). Window's fields from `estimate`."""
    import numpy as np

    from model_monitoring.performance_estimate import (
        estimate_accuracy,
        estimate_version,
        right_if_outside,
    )
    from model_monitoring.production_rows import version_windows

    calibration, support = stored
    before = version_windows(local, size, VERSION).recent
    assert before is not None and set(before["id"]) == set(truth)
    estimate = estimate_version(MODEL_NAME, VERSION, before)
    plain = estimate_accuracy(before["confidence"].to_numpy(dtype=float), calibration)
    outside = set(before["id"][~np.isnan(right_if_outside(before, support))])
    local.label_by_id(truth)
    after = version_windows(local, size, VERSION).labelled
    assert after is not None and len(after) == size
    right = after["prediction"] == after["ground_truth"]
    wrong = after.loc[~right, "confidence"]
    beyond = after["id"].isin(outside)
    return [
        estimate,
        plain.accuracy,
        float(right.mean()),
        float((wrong >= 0.99).mean()) if len(wrong) else float("nan"),
        float(right[beyond].mean()) if beyond.any() else float("nan"),
        float(right[~beyond].mean()) if (~beyond).any() else float("nan"),
    ]


def windows(local: Any, args: argparse.Namespace, stored: tuple) -> list[Window]:
    schema, data, _ = project()
    measured = []
    plan = [("normal", False)] * args.windows + [("drifted", True)] * args.drifted_windows
    for seed, (kind, drift) in enumerate(plan, start=100):
        number = sum(window.kind == kind for window in measured) + 1
        truth = send_window(local, schema, data, args.window, drift, seed)
        measured.append(Window(kind, number, *measure(local, stored, args.window, truth)))
        estimate, realised = measured[-1].estimate, measured[-1].realised
        print(f"  {kind} window {number}: {estimate.summary()}; realised {realised:.4f}")
    return measured


def _share(value: float) -> str:
    return "- (none wrong)" if math.isnan(value) else f"{value:.0%}"


def _rate(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def _outside(estimate: Any) -> str:
    if estimate.outside_support is None:
        return "- (no support stored)"
    return f"{estimate.outside_support / estimate.rows:.1%}"


def report(measured: list[Window], threshold: float) -> None:
    print(
        "\n| traffic | window | estimated [95% band] | outside support | plain CBPE | "
        "realised | difference | realised outside / inside the support | "
        "wrong answers at confidence >= 0.99 | verdict |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for window in measured:
        estimate, difference = window.estimate, window.estimate.accuracy - window.realised
        if window.kind == "normal":
            verdict = f"within {TOLERANCE}" if abs(difference) <= TOLERANCE else "OUTSIDE"
        else:
            below = estimate.accuracy < threshold
            verdict = "estimate under threshold" if below else "estimate NOT under threshold"
        print(
            f"| {window.kind} | {window.number} | {estimate.accuracy:.4f} [{estimate.low:.4f}, "
            f"{estimate.high:.4f}] | {_outside(estimate)} | {window.plain:.4f} | "
            f"{window.realised:.4f} | {difference:+.4f} | "
            f"{_rate(window.right_outside)} / {_rate(window.right_inside)} | "
            f"{_share(window.wrong_confident)} | {verdict} |"
        )


def monitoring_before_labels(config: Path, environment: dict, args: Any) -> None:
    """The monitoring pipeline on the newest window, before its labels: its estimate
    and alerts."""
    from metaflow import Flow, namespace

    command = [sys.executable, "src/pipelines/monitoring.py", "--config", "project", str(config)]
    run([*command, "run", "--samples", str(args.window)], environment, args.verbose)
    namespace(None)
    end = Flow("Monitoring").latest_run["end"].task.data
    estimate = end.estimate
    print(
        f"  monitoring run: estimated {estimate['accuracy']:.4f} [{estimate['low']:.4f}, "
        f"{estimate['high']:.4f}] on the {estimate['rows']} newest answers (unlabelled), "
        f"{estimate.get('outside_support')} outside the support; "
        f"its labelled rows are the {end.rows} of the window before; alerts: {end.alerts}"
    )


def main() -> None:
    args = arguments()
    print(machine_line())
    directory = Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    environment = pipeline_environment(directory)
    os.environ.update(environment)  # this process reads the same MLflow store
    local = None
    try:
        run([sys.executable, "src/pipelines/training.py", "run"], environment, args.verbose)
        from backends.local import Local
        from common.registry import model_uri
        from model_monitoring.performance_estimate import stored_calibration, stored_support

        calibration = stored_calibration(MODEL_NAME, VERSION)
        assert calibration is not None, "the training pipeline stored no calibration"
        print(f"  calibration: {calibration.rows} rows, accuracy {calibration.accuracy:.4f}, "
              f"ECE raw {calibration.ece_raw:.4f}, cross-fitted {calibration.ece}")  # fmt: skip
        support = stored_support(MODEL_NAME, VERSION)
        assert support is not None, "the training pipeline stored no input support"
        print(f"  input support: threshold {support.threshold:.4f} ({support.quantile:.0%} of "
              f"{support.rows} out-of-fold distances; {support.outside_rows} past it, right "
              f"{support.outside_accuracy})")  # fmt: skip
        backend = {
            "target": f"http://127.0.0.1:{free_port()}/invocations",
            "database": str(directory / "capture.db"),
            "state_dir": str(directory / "serving"),
            "workers": 1,
        }
        local = Local(backend)
        local.deploy(model_uri(MODEL_NAME, VERSION), VERSION)
        measured = windows(local, args, (calibration, support))
        report(measured, project()[2].accuracy_threshold)
        if args.drifted_windows:
            schema, data, _ = project()
            send_window(local, schema, data, args.window, True, seed=999)
            monitoring_before_labels(write_config(directory, backend), environment, args)
    finally:
        if local is not None:
            local.stop()
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
