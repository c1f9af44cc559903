"""`scripts/demo.py` end to end: train, deploy, traffic, labels, monitor, drifted round.

The demo runs as a user runs it (`uv run just demo` calls `python scripts/demo.py`),
in a subprocess, at small settings, in an environment of its own that starts empty like
a clean checkout: its own MLflow store and artifact root, Metaflow datastore, cards and
home, a config whose backend serves on a free port of 127.0.0.1 with the capture
database and server state in a temporary directory (support/demo.py). It takes a few
minutes, so a session that runs these tests starts it in the background first.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.demo import SAMPLES, shared_demo
from support.places import Place
from support.state import shared_session_directory, tracking_uri_of

pytestmark = pytest.mark.e2e

SHIFTED = "culmen_length_mm"  # the first numeric feature of config/local.yml


@dataclass
class Demo:
    place: Place  # the backend's target, capture database and server state
    process: subprocess.CompletedProcess[str]
    server_after: object  # backends.local_server.ServerState, or None
    answering_after: bool
    log: str  # the full log of every pipeline run (`--log`)

    @property
    def root(self) -> Path:
        return self.place.directory

    @property
    def tracking_uri(self) -> str:
        return tracking_uri_of(self.root)

    def describe(self) -> str:
        return (
            f"exit code {self.process.returncode}\n--- stdout (end) ---\n"
            f"{self.process.stdout[-8000:]}\n--- stderr (end) ---\n{self.process.stderr[-4000:]}"
            f"\n--- full log (end) ---\n{self.log[-8000:]}"
        )


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    from backends.local_server import LocalServer, ping

    run = shared_demo(shared_session_directory())
    try:
        process = run.wait()
        yield Demo(
            run.place,
            process,
            server_after=LocalServer(run.place.state_dir).state(),
            answering_after=ping(run.place.target),
            log=run.log_path.read_text(errors="replace") if run.log_path.exists() else "",
        )
    finally:
        run.stop()  # whatever the demo left behind


def test_demo_succeeds(demo: Demo) -> None:
    assert demo.process.returncode == 0, demo.describe()


def test_demo_reports_no_alert_for_normal_traffic(demo: Demo) -> None:
    lines = demo.process.stdout.splitlines()
    normal = [line for line in lines if line.strip().startswith("normal traffic:")]
    assert normal, demo.describe()
    assert normal[-1].split(":", 1)[1].strip() == "no alerts", normal


def test_demo_reports_the_drift_alert_naming_the_column(demo: Demo) -> None:
    lines = demo.process.stdout.splitlines()
    drifted = [line for line in lines if line.strip().startswith("drifted traffic:")]
    assert drifted, demo.describe()
    message = drifted[-1].split(":", 1)[1]
    assert "drift" in message.lower() and SHIFTED in message, drifted
    assert "no alerts" not in message


def test_demo_ends_by_saying_where_to_look(demo: Demo) -> None:
    tail = demo.process.stdout[demo.process.stdout.rfind("Demo finished") :]
    assert "Demo finished" in tail, demo.describe()
    for command in ("just mlflow", "just cards"):
        assert command in tail, command


# The terminal's line per pipeline run, in order: its label, then its time in seconds.
STAGES = [
    "training", "deployment",
    "traffic (normal)", "labels (normal)", "monitoring (normal)",
    "traffic (drifted)", "labels (drifted)", "monitoring (drifted)",
]  # fmt: skip


def test_demo_prints_one_line_per_pipeline_run(demo: Demo) -> None:
    lines = demo.process.stdout.splitlines()
    assert lines[0] == f"Full log: {demo.root / 'demo.log'} (--verbose shows it here)", lines[:3]
    finished = next(i for i, line in enumerate(lines) if "Demo finished" in line)
    stages = [line for line in lines[1:finished] if line.strip() and "==>" not in line]
    assert [re.split(r"\s{2,}", line.strip())[0] for line in stages] == STAGES, stages
    assert all(re.search(r"\s\d+ s\s", line) for line in stages), stages
    # Each says how its run ended: training with its accuracy, deployment with its version.
    assert "accuracy" in stages[0] and "version 1" in stages[1], stages
    assert "No alerts" in stages[4], stages
    assert "alert(s)" in stages[7] and SHIFTED in stages[7], stages
    assert "Task is starting" not in demo.process.stdout
    assert len(lines) < 40, demo.describe()


def test_demo_full_log_holds_no_library_chatter(demo: Demo) -> None:
    """No pylint notice, no MLflow INFO lines, no progress bars in any pipeline's log."""
    assert "Task is starting" in demo.log, demo.describe()  # the full log, not the summary
    assert "pylint" not in demo.log.lower()
    assert not re.search(r"INFO mlflow\.", demo.log), re.findall(r".*INFO mlflow\..*", demo.log)
    bars = re.findall(r".*\d+%\|.*", demo.log)  # tqdm's "45%|####      | 9/20"
    assert not bars, bars[:5]


def test_demo_shows_progress(demo: Demo) -> None:
    output = demo.log
    assert re.search(r"fold 1 of 2", output, re.I), "no fold progress"
    assert f"Sent {SAMPLES} of {SAMPLES} rows" in output, "no traffic progress"
    assert re.search(r"Labelled \d+ predictions", output), "no labelling progress"


def test_demo_leaves_no_server_running(demo: Demo) -> None:
    assert demo.server_after is None, (
        f"--stop-server left the model server of {demo.place.state_dir} running: "
        f"{demo.server_after}\n{demo.describe()[-3000:]}"
    )
    assert not demo.answering_after, f"something still answers on port {demo.place.port}"


def test_demo_kept_its_state_where_configured(demo: Demo) -> None:
    """Captures in the configured database, runs in the isolated MLflow store."""
    import mlflow

    assert demo.place.database.exists(), "no capture database where the config says"
    with sqlite3.connect(demo.place.database) as connection:
        total, labelled = connection.execute(
            "SELECT COUNT(*), COUNT(ground_truth) FROM predictions WHERE source != 'smoke'"
        ).fetchone()
        smoke = connection.execute(  # the deployment's smoke test: stored, never labelled
            "SELECT COUNT(*), COUNT(ground_truth) FROM predictions WHERE source = 'smoke'"
        ).fetchone()
    assert total >= 2 * SAMPLES and labelled == total
    assert smoke[0] > 0 and smoke[1] == 0

    client = mlflow.MlflowClient(demo.tracking_uri, registry_uri=demo.tracking_uri)
    versions = client.search_model_versions("name = 'penguins'")
    assert len(versions) == 1, versions
    experiment = client.get_experiment_by_name("monitoring")
    assert experiment is not None
    assert experiment.artifact_location.startswith(str(demo.root / "mlartifacts")) or (
        experiment.artifact_location.startswith(f"file://{demo.root / 'mlartifacts'}")
    ), experiment.artifact_location
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    assert [run.data.tags.get("alert") for run in runs] == ["False", "True"]
    assert [run.data.metrics["drift_detected"] for run in runs] == [0.0, 1.0]
