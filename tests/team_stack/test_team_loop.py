"""The whole loop against the team stack, with basic auth on, as a teammate runs it:
only the variables `up` prints (tracking URI, credentials, Metaflow's S3 datastore).

One module fixture runs, in order: a first (deliberately weak: one epoch) training,
its deployment (Local backend), traffic, labels, monitoring, batch scoring from the
bucket to the bucket, two trainings started together, the deployment of the newest
through the promotion gate (paired evidence on the labelled captures), a rollback to
`previous`, and a training with a wrong password. Each test reads one outcome.

The runs are started as a user starts them (`python src/pipelines/<flow>.py ... run`),
in an environment without the session's settings: nothing reaches the runs but what a
teammate's shell would hold after `eval "$(uv run just stack-up)"`.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from support.paths import PENGUINS_CSV, PIPELINES, REPO_ROOT
from support.places import Place
from support.team_stack import ADMIN_PASSWORD, TeamStack

pytestmark = pytest.mark.e2e

FOLDS = "3"
RUN_TIMEOUT = 900
BUCKET = "penguins"  # the stack's default bucket
SCORING_INPUT = f"s3://{BUCKET}/scoring/penguins.parquet"
SCORING_OUTPUT = f"s3://{BUCKET}/scoring/scored.parquet"
WRONG_PASSWORD = "not-the-admin-password"
# Few simulated labels (they follow the champion's answers) beside the dataset's true ones.
TRAFFIC_ROWS = 50


@dataclass
class Loop:
    stack: TeamStack
    place: Place
    env: dict[str, str]
    runs: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)
    registry: dict = field(default_factory=dict)
    truth_labelled: tuple[int, int] = (0, 0)  # rows sent, captures labelled

    def output(self, name: str) -> str:
        run = self.runs[name]
        return f"{run.stdout}\n{run.stderr}"

    def succeeded(self, name: str) -> str:
        run = self.runs[name]
        assert run.returncode == 0, f"{name}: exit {run.returncode}\n{self.output(name)[-6000:]}"
        return self.output(name)


def flow_command(config: Path, flow: str, *arguments: str) -> list[str]:
    return [sys.executable, str(PIPELINES / f"{flow}.py"), "--config", "project", str(config),
            "run", *arguments]  # fmt: skip


def run_together(
    env: dict[str, str], commands: dict[str, list[str]]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Start every command at once from the repository root; wait for all. The output
    goes to files: a pipe nobody reads would stall a run while the other one runs."""
    with tempfile.TemporaryDirectory() as directory:
        outputs = {name: Path(directory) / name for name in commands}
        started = {}
        for name, command in commands.items():
            with open(outputs[name], "w") as output:
                started[name] = subprocess.Popen(
                    command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
                )
        finished = {}
        for name, process in started.items():
            try:
                process.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            text = outputs[name].read_text(errors="replace")
            finished[name] = subprocess.CompletedProcess(
                commands[name], process.returncode, text, ""
            )
        return finished


def registry_state(env: dict[str, str]) -> dict:
    """The registered versions and aliases of the model, read through the stack."""
    code = (
        "import json, mlflow\n"
        "client = mlflow.MlflowClient()\n"
        "model = client.get_registered_model('penguins')\n"
        "versions = sorted(int(v.version) for v in "
        "client.search_model_versions(\"name='penguins'\"))\n"
        "print('REGISTRY=' + json.dumps({'versions': versions, 'aliases': model.aliases}))\n"
    )
    process = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(x for x in process.stdout.splitlines() if x.startswith("REGISTRY="))
    return json.loads(line.removeprefix("REGISTRY="))


def put_scoring_input(env: dict[str, str]) -> None:
    import boto3
    import pandas as pd

    buffer = io.BytesIO()
    pd.read_csv(PENGUINS_CSV).to_parquet(buffer, index=False)
    client = boto3.client(
        "s3",
        endpoint_url=env["METAFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    key = SCORING_INPUT.removeprefix(f"s3://{BUCKET}/")
    client.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())


def read_scoring_output(env: dict[str, str]) -> list[str]:
    """The scored file's columns and row count, read back from the bucket."""
    import boto3
    import pandas as pd

    client = boto3.client(
        "s3",
        endpoint_url=env["METAFLOW_S3_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_DEFAULT_REGION"],
    )
    body = client.get_object(Bucket=BUCKET, Key=SCORING_OUTPUT.removeprefix(f"s3://{BUCKET}/"))
    frame = pd.read_parquet(io.BytesIO(body["Body"].read()))
    return [*frame.columns, f"rows={len(frame)}"]


def answer_and_label_with_the_truth(place: Place) -> tuple[int, int]:
    """Send the dataset's rows to the served model and label its captures of them with
    the true species (as the ground truth of production arrives): rows sent, labelled."""
    from support.monitoring import penguins, project_schema

    schema, data = project_schema(), penguins()
    features = data[list(schema.features)]
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    backend = place.backend()
    answers = backend.invoke(rows)["predictions"]
    truth = dict(zip((a["id"] for a in answers), data[schema.target], strict=True))
    return len(rows), backend.label_by_id(truth)


@pytest.fixture(scope="module")
def loop(team_stack: TeamStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    root = tmp_path_factory.mktemp("team-loop")
    place = Place(root / "local", workers=1)
    config = place.write_config()
    settings = yaml.safe_load(config.read_text())
    # The gate compares on the labelled captures of one round of traffic.
    settings["promotion"] = {**settings.get("promotion", {}), "min_rows": TRAFFIC_ROWS}
    config.write_text(yaml.safe_dump(settings, sort_keys=False))
    (root / "metaflow-home").mkdir()
    env = team_stack.client_environment(
        METAFLOW_USER="teammate",
        KERAS_BACKEND="jax",
        METAFLOW_HOME=str(root / "metaflow-home"),  # no ~/.metaflowconfig
        # Run metadata (the local provider's) goes here rather than into the checkout.
        METAFLOW_DATASTORE_SYSROOT_LOCAL=str(root / "metaflow-local"),
    )
    loop = Loop(team_stack, place, env)

    def run(name: str, flow: str, *arguments: str) -> None:
        loop.runs |= run_together(env, {name: flow_command(config, flow, *arguments)})

    try:
        # One epoch: a deliberately weaker first version (still answering every class:
        # monitoring's Evidently report fails on captures holding exactly two classes).
        run("first_training", "training", "--training-epochs", "1", "--folds", FOLDS,
            "--accuracy-threshold", "0")  # fmt: skip
        loop.registry["after_first"] = registry_state(env)
        run("deployment", "deployment")
        run("traffic", "traffic", "--mode", "traffic", "--samples", str(TRAFFIC_ROWS))
        run("labels", "traffic", "--mode", "labels", "--ground-truth-quality", "0.8")
        run("monitoring", "monitoring", "--samples", str(TRAFFIC_ROWS))
        put_scoring_input(env)
        run("scoring", "scoring", "--input", SCORING_INPUT, "--output", SCORING_OUTPUT,
            "--model-version", "champion")  # fmt: skip
        # The simulated labels follow the champion's own answers; the gate needs the
        # truth: the dataset's rows are answered by the server and labelled with it.
        loop.truth_labelled = answer_and_label_with_the_truth(place)
        trainings = ("--training-epochs", "30", "--folds", FOLDS)
        loop.runs |= run_together(env, {
            "second_training": flow_command(config, "training", *trainings),
            "third_training": flow_command(config, "training", *trainings),
        })  # fmt: skip
        loop.registry["after_trainings"] = registry_state(env)
        run("promotion", "deployment")
        loop.registry["after_promotion"] = registry_state(env)
        run("rollback", "deployment", "--model-version", "previous")
        loop.registry["after_rollback"] = registry_state(env)
        wrong = {**env, "MLFLOW_TRACKING_PASSWORD": WRONG_PASSWORD}
        loop.runs |= run_together(wrong, {
            "wrong_password": flow_command(config, "training", "--folds", FOLDS)
        })  # fmt: skip
        yield loop
    finally:
        place.backend().stop()


def test_the_first_training_registers_version_1_in_the_stack(loop: Loop) -> None:
    loop.succeeded("first_training")
    assert loop.registry["after_first"]["versions"] == [1]


def test_the_first_version_deploys_and_serves_traffic_that_is_labelled(loop: Loop) -> None:
    loop.succeeded("deployment")
    loop.succeeded("traffic")
    loop.succeeded("labels")
    assert loop.registry["after_first"]["versions"] == [1]
    assert loop.place.captured_count() >= TRAFFIC_ROWS


def test_monitoring_runs_on_the_labelled_captures(loop: Loop) -> None:
    loop.succeeded("monitoring")


def test_batch_scoring_reads_and_writes_the_bucket(loop: Loop) -> None:
    loop.succeeded("scoring")
    columns = read_scoring_output(loop.env)
    assert {"prediction", "confidence", "model_version"} <= set(columns)
    assert columns[-1] == "rows=344", columns


def test_two_trainings_started_together_register_distinct_versions(loop: Loop) -> None:
    loop.succeeded("second_training")
    loop.succeeded("third_training")
    assert loop.registry["after_trainings"]["versions"] == [1, 2, 3]


def test_the_newest_version_is_promoted_through_the_gate_on_production_evidence(
    loop: Loop,
) -> None:
    sent, labelled = loop.truth_labelled
    assert labelled == sent > 300, loop.truth_labelled
    output = loop.succeeded("promotion")
    assert "Version 3 is now the champion." in output, output[-4000:]
    # Decided on the labelled captures (paired), not on cross-validated scores.
    assert re.search(r"challenger v3 [\d.]+ vs champion v1 [\d.]+ on \d+ rows", output), output[
        -4000:
    ]
    aliases = loop.registry["after_promotion"]["aliases"]
    assert (aliases.get("champion"), aliases.get("previous")) == ("3", "1"), aliases


def test_rollback_brings_the_previous_champion_back(loop: Loop) -> None:
    loop.succeeded("rollback")
    assert loop.registry["after_rollback"]["aliases"].get("champion") == "1"


def test_a_wrong_password_fails_the_run_saying_the_credentials_were_refused(loop: Loop) -> None:
    run = loop.runs["wrong_password"]
    output = loop.output("wrong_password")
    assert run.returncode != 0, output[-4000:]
    assert "refused the credentials" in output, output[-4000:]
    assert "check MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD" in output
    assert WRONG_PASSWORD not in output and ADMIN_PASSWORD not in output
