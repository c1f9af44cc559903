"""The batch scoring pipeline (src/pipelines/scoring.py) through `metaflow.Runner`.

The model is the session's `serving_models` (trained in process, registered without
training data: the gate's reference is the dataset file, as for monitoring), scored by
version number. Every scenario has its own place (config, capture database) and files
under the session directory; the runs start together, then the batch predictions of the
CSV run are labelled by id and monitored, and compared with the shared model server's
answers for the same rows.

- csv: the penguins plus invalid rows under the allowed fraction, two chunks, captured;
- parquet_too_invalid: a Parquet file with 10% invalid rows, over the default fraction,
  whose output path holds an older file: it must stay as it was;
- missing_column, empty: a file without `island`; a CSV with only its header;
- drift: drifted rows with --fail-on-drift;
- s3: Parquet in and out of moto's S3, not captured;
- retried: the CSV in two chunks under `--with retry`, with a backend whose first capture
  fails its task after storing the rows (support/failing_backend.py).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.aws import MotoServer
from support.failing_backend import FAULT, MARKER_VARIABLE
from support.flows import FlowRequest, FlowResult, card_text
from support.monitoring import penguins, project_schema
from support.paths import MONITORING_FLOW, PIPELINES, TESTS_DIR
from support.places import Place
from support.serving import ServingModels
from support.state import ensure_experiment, session_directory

pytestmark = pytest.mark.e2e

SCORING_FLOW = PIPELINES / "scoring.py"
BUCKET = "scoring-tests"
OUTPUT_COLUMNS = ["prediction", "confidence", "id", "model_version", "scored_at"]
# Rows the server refuses, appended to the penguins: (row, reason fragment).
BAD_ROWS = [
    ({"culmen_length_mm": "forty"}, "expected a number"),
    ({"island": "Atlantis"}, "unknown value 'Atlantis'"),
]


@dataclass
class Scenario:
    name: str
    place: Place
    input: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] | None = None
    decospecs: tuple[str, ...] = ()
    result: FlowResult | None = None

    def request(self, version: str) -> FlowRequest:
        parameters = {
            "input": self.input,
            "output": self.output,
            "model_version": version,
            **self.parameters,
        }
        return FlowRequest(
            SCORING_FLOW, parameters, config=self.place.config, env=self.env,
            decospecs=self.decospecs,
        )  # fmt: skip

    def successful(self) -> FlowResult:
        assert self.result is not None and self.result.successful, self.result.describe()
        return self.result

    def failed(self) -> FlowResult:
        assert self.result is not None
        assert self.result.status == "failed", self.result.describe()
        return self.result


@dataclass
class ScoringRuns:
    models: ServingModels
    version: str
    csv_rows: pd.DataFrame
    scenarios: dict[str, Scenario]
    moto: MotoServer

    def __getitem__(self, name: str) -> Scenario:
        return self.scenarios[name]


def penguin_rows() -> pd.DataFrame:
    """The dataset file's rows with every column (the target is a passthrough column)."""
    from support.paths import PENGUINS_CSV

    return pd.read_csv(PENGUINS_CSV)


def with_bad_rows(rows: pd.DataFrame) -> pd.DataFrame:
    good = rows.iloc[0].to_dict()
    bad = pd.DataFrame([{**good, **change} for change, _ in BAD_ROWS])
    return pd.concat([rows, bad], ignore_index=True)


def s3_client(moto: MotoServer) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=moto.url)


@pytest.fixture(scope="module")
def runs(
    flows_runner: Callable[[dict[str, FlowRequest]], dict[str, FlowResult]],
    serving_models: ServingModels,
    moto_server: MotoServer,
) -> ScoringRuns:
    from common.traffic import sample_requests

    root = session_directory() / "scoring-tests"
    version = serving_models.good[0]
    rows = penguin_rows()

    def place(name: str) -> Place:
        where = Place(root / name, model_name=serving_models.name)
        where.write_config()
        return where

    scenarios: dict[str, Scenario] = {}
    csv = place("csv")
    csv_rows = with_bad_rows(rows)
    csv_rows.to_csv(csv.directory / "input.csv", index=False)
    scenarios["csv"] = Scenario(
        "csv", csv, str(csv.directory / "input.csv"), str(csv.directory / "out" / "scored.parquet"),
        {"chunk_rows": 200},
    )  # fmt: skip

    invalid = place("parquet_too_invalid")
    too_invalid = rows.copy()
    too_invalid["island"] = too_invalid["island"].astype(object)
    too_invalid.loc[too_invalid.index[::10], "island"] = "Atlantis"
    too_invalid.to_parquet(invalid.directory / "input.parquet", index=False)
    old_output = invalid.directory / "scored.parquet"
    old_output.write_bytes(b"an older output")
    scenarios["parquet_too_invalid"] = Scenario(
        "parquet_too_invalid", invalid, str(invalid.directory / "input.parquet"), str(old_output)
    )

    missing = place("missing_column")
    rows.drop(columns="island").to_csv(missing.directory / "input.csv", index=False)
    scenarios["missing_column"] = Scenario(
        "missing_column", missing, str(missing.directory / "input.csv"),
        str(missing.directory / "scored.parquet"),
    )  # fmt: skip

    empty = place("empty")
    rows.iloc[:0].to_csv(empty.directory / "input.csv", index=False)
    scenarios["empty"] = Scenario(
        "empty", empty, str(empty.directory / "input.csv"), str(empty.directory / "scored.parquet")
    )

    drift = place("drift")
    drifted = pd.DataFrame(sample_requests(penguins(), project_schema(), 300, drift=True, seed=3))
    drifted.to_csv(drift.directory / "input.csv", index=False)
    scenarios["drift"] = Scenario(
        "drift", drift, str(drift.directory / "input.csv"), str(drift.directory / "scored.parquet"),
        {"fail_on_drift": True},
    )  # fmt: skip

    s3 = place("s3")
    client = s3_client(moto_server)
    client.create_bucket(Bucket=BUCKET)
    buffer = io.BytesIO()
    rows.to_parquet(buffer, index=False)
    client.put_object(Bucket=BUCKET, Key="in/penguins.parquet", Body=buffer.getvalue())
    scenarios["s3"] = Scenario(
        "s3", s3, f"s3://{BUCKET}/in/penguins.parquet", f"s3://{BUCKET}/out/scored.parquet",
        {"no_capture": True}, env=dict(moto_server.env),
    )  # fmt: skip

    retried = place("retried")
    rows.to_csv(retried.directory / "input.csv", index=False)
    python_path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    scenarios["retried"] = Scenario(
        "retried", retried, str(retried.directory / "input.csv"),
        str(retried.directory / "scored.parquet"),
        {"chunk_rows": 200, "backend": "support.failing_backend.FailingOnceLocal"},
        env={"PYTHONPATH": python_path, MARKER_VARIABLE: str(retried.directory / "failed-once")},
        # As remote workers run; no wait between attempts.
        decospecs=("retry:minutes_between_retries=0",),
    )  # fmt: skip

    requests = {name: scenario.request(version) for name, scenario in scenarios.items()}
    for name, result in flows_runner(requests).items():
        scenarios[name].result = result
    return ScoringRuns(serving_models, version, csv_rows, scenarios, moto_server)


def output_frame(scenario: Scenario) -> pd.DataFrame:
    return pd.read_parquet(scenario.output)


# --- CSV, invalid rows under the fraction, capture --------------------------------------------


def test_a_csv_is_scored_with_its_columns_and_the_outputs(runs: ScoringRuns) -> None:
    scenario = runs["csv"]
    scenario.successful()
    output = output_frame(scenario)
    assert list(output.columns) == [*runs.csv_rows.columns, *OUTPUT_COLUMNS]
    assert len(output) == len(runs.csv_rows) - len(BAD_ROWS)
    # The input's rows in their order, the refused ones left out.
    assert output["species"].tolist() == runs.csv_rows["species"].iloc[: -len(BAD_ROWS)].tolist()
    assert set(output["model_version"]) == {runs.version}
    assert output["id"].is_unique
    assert output["confidence"].between(0, 1).all()
    assert str(output["scored_at"].dtype).startswith("datetime64")
    # Two chunks, each its own task.
    assert len(list(scenario.result.run["score_chunk"])) == 2


def test_refused_rows_are_beside_the_output_with_their_reasons(runs: ScoringRuns) -> None:
    scenario = runs["csv"]
    data = scenario.successful().run.data
    rejects = pd.read_parquet(Path(scenario.output).with_name("scored.rejects.parquet"))
    first_bad = len(runs.csv_rows) - len(BAD_ROWS)
    assert rejects["row"].tolist() == [first_bad, first_bad + 1]
    for reason, (_, fragment) in zip(rejects["reason"], BAD_ROWS, strict=True):
        assert fragment in reason
    assert rejects["culmen_length_mm"].iloc[0] == "forty"  # the value as it came
    assert data.rejected_rows == len(BAD_ROWS)
    assert data.rows == len(runs.csv_rows)
    assert not list(Path(scenario.output).parent.glob(".*"))  # no staging, no partial file


def test_the_card_shows_counts_reasons_classes_throughput_and_the_gate(
    runs: ScoringRuns,
) -> None:
    from metaflow.cards import get_cards

    run = runs["csv"].successful().run
    text = "".join(card_text(card) for card in get_cards(run["assemble"].task))
    for fragment in ("Refused rows, by reason", "unknown category", "not a number", "Adelie"):
        assert fragment in text
    assert "rows/s" in text and "Quality gate" in text and "no drift" in text
    assert run.data.gate.drift_detected is False
    [drift_card] = get_cards(run["start"].task, id="data_drift")
    assert "window.drawDashboard(" in drift_card.get()


def test_every_task_stays_under_a_gibibyte(runs: ScoringRuns) -> None:
    memory = runs["csv"].successful().run.data.memory_mib
    assert set(memory) == {"start", "score_chunk", "assemble"}
    assert all(0 < mib < 1024 for mib in memory.values()), memory


def test_batch_predictions_are_captured_labelled_by_id_and_monitored(
    runs: ScoringRuns, flows_runner: Callable[..., Any]
) -> None:
    scenario = runs["csv"]
    scenario.successful()
    output = output_frame(scenario)
    captured = scenario.place.captured_rows()
    assert set(captured) == set(output["id"])
    assert {row["source"] for row in captured.values()} == {"batch"}
    first = output.iloc[0]
    assert captured[first["id"]]["prediction"] == first["prediction"]
    assert captured[first["id"]]["inputs"]["island"] == first["island"]

    truth = dict(zip(output["id"], output["species"], strict=True))
    assert scenario.place.backend().label_by_id(truth) == len(output)
    ensure_experiment("monitoring")
    request = FlowRequest(
        MONITORING_FLOW,
        {"model_version": runs.version, "samples": len(output)},
        config=scenario.place.config,
    )
    monitoring = flows_runner({"monitoring": request})["monitoring"]
    assert monitoring.successful, monitoring.describe()
    data = monitoring.run.data
    assert data.rows == len(output)
    expected = (output["prediction"] == output["species"]).mean()
    assert math.isclose(data.accuracy, expected)


def test_batch_and_served_predictions_agree_on_the_same_rows(runs: ScoringRuns, server) -> None:
    import json
    import urllib.request

    output = output_frame(runs["csv"])
    assert server.version == runs.version
    features = project_schema().features
    rows = json.loads(output[features].to_json(orient="records"))
    served = []
    for start in range(0, len(rows), 50):  # the server's maximum per request
        request = urllib.request.Request(
            server.url,
            data=json.dumps({"inputs": rows[start : start + 50]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served += json.loads(response.read())["predictions"]
    assert [answer["prediction"] for answer in served] == output["prediction"].tolist()
    for answer, confidence in zip(served, output["confidence"], strict=True):
        assert math.isclose(answer["confidence"], confidence, rel_tol=1e-5)


def test_a_retried_chunk_does_not_capture_its_rows_twice(runs: ScoringRuns) -> None:
    """The first capture fails its chunk task after storing its rows; the retry scores
    the chunk again under the same ids, so its captures replace the failed attempt's."""
    scenario = runs["retried"]
    result = scenario.successful()
    assert FAULT in result.output and (scenario.place.directory / "failed-once").exists()
    attempts = [task.current_attempt for task in result.run["score_chunk"]]
    assert sorted(attempts) == [0, 1], attempts  # two chunks, one of them retried
    output = output_frame(scenario)
    assert len(output) == len(penguin_rows())
    assert scenario.place.captured_count() == len(output)
    assert set(scenario.place.captured_rows()) == set(output["id"])


# --- refusals ----------------------------------------------------------------------------------


def test_too_many_invalid_rows_fail_the_run_leaving_the_output_alone(runs: ScoringRuns) -> None:
    scenario = runs["parquet_too_invalid"]
    result = scenario.failed()
    assert "--max-invalid-fraction" in result.output
    assert "35 of 344 rows (10.17%) were refused" in result.output
    assert Path(scenario.output).read_bytes() == b"an older output"
    assert not [p for p in Path(scenario.output).parent.iterdir() if p.name.startswith(".")]
    assert not Path(scenario.output).with_name("scored.rejects.parquet").exists()
    assert not scenario.place.database.exists()  # nothing scored, nothing captured
    assert [step.id for step in result.run] == ["start"]


def test_a_missing_column_fails_at_start_naming_expected_and_found(runs: ScoringRuns) -> None:
    result = runs["missing_column"].failed()
    assert "lacks the feature column(s) ['island']" in result.output
    assert "Expected columns:" in result.output and "found: ['species'," in result.output
    assert [step.id for step in result.run] == ["start"]
    assert not Path(runs["missing_column"].output).exists()


def test_drift_with_fail_on_drift_stops_before_anything_is_written(runs: ScoringRuns) -> None:
    scenario = runs["drift"]
    result = scenario.failed()
    assert "--fail-on-drift" in result.output and "culmen_length_mm" in result.output
    assert not Path(scenario.output).exists()
    assert not scenario.place.database.exists()
    assert [
        path.name for path in scenario.place.directory.iterdir() if path.name.startswith(".")
    ] == []


def test_an_empty_file_gives_an_empty_output(runs: ScoringRuns) -> None:
    scenario = runs["empty"]
    scenario.successful()
    output = output_frame(scenario)
    assert len(output) == 0
    assert list(output.columns) == [*penguin_rows().columns, *OUTPUT_COLUMNS]
    assert not scenario.place.database.exists()


# --- S3 ------------------------------------------------------------------------------------------


def test_parquet_from_s3_is_scored_to_s3(runs: ScoringRuns) -> None:
    scenario = runs["s3"]
    scenario.successful()
    client = s3_client(runs.moto)
    body = client.get_object(Bucket=BUCKET, Key="out/scored.parquet")["Body"].read()
    output = pd.read_parquet(io.BytesIO(body))
    assert len(output) == len(penguin_rows())
    assert list(output.columns)[-5:] == OUTPUT_COLUMNS
    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    # No staging objects, no temporary key: the output, its rejects file, the input.
    assert keys == ["in/penguins.parquet", "out/scored.parquet", "out/scored.rejects.parquet"]
    assert not scenario.place.database.exists()  # --no-capture
