"""Champion against challenger through the deployment pipeline (`metaflow.Runner`).

Two versions of a model of these tests' own are trained in this process on the
penguins, one deliberately weak (a single gradient step), one strong, and registered as the
training pipeline registers them (`log_servable_model`; the paired comparison needs
none of the training pipeline's tags). A third version is the weak model with a
signature that lacks a column, for the shadow's schema check. Then, on a Local
backend of their own (support/recording_backend.py notes each deploy request):

1. the weak version deploys: there is no champion yet;
2. every dataset row is sent to it and labelled by id with its true species;
3. the strong version deploys with the weak one in shadow: compared on those labelled
   captures, it wins and is promoted, and the shadow request reaches the backend;
4. at once: the weak version is asked for again (refused with the figures), a shadow
   that does not exist and a shadow with other inputs (both refused at `start`).
   Nothing serving changes in any of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from support.flows import FlowRequest, FlowResult, card_text
from support.paths import DEPLOYMENT_FLOW, TESTS_DIR
from support.places import Place
from support.recording_backend import RECORD_VARIABLE, recorded
from support.serving import train_small_model
from support.state import ensure_experiment

from backends.local_server import LocalServer

MODEL_NAME = "penguins-promotion-tests"
BACKEND = "support.recording_backend.RecordingLocal"


@dataclass
class Scenario:
    place: Place
    weak: str
    strong: str
    other_inputs: str
    labelled: int
    accuracy: dict[str, float]  # in-process accuracy on the labelled rows, by version
    results: dict[str, FlowResult]
    pids: dict[str, int | None]  # the server's pid after each run
    deployments: Path  # what reached the backend

    def result(self, name: str) -> FlowResult:
        return self.results[name]


def accuracy_on(trained: tuple[Any, Any, Any], data: Any, schema: Any) -> float:
    import numpy as np

    model, features, target = trained
    probabilities = np.asarray(model(features.transform(data[schema.features])))
    truth = target.transform(data[[schema.target]]).ravel()
    return float((probabilities.argmax(axis=1) == truth).mean())


def train_weak_model(trained: tuple[Any, Any, Any], data: Any, schema: Any) -> tuple[Any, ...]:
    """The same network and transformers after one gradient step: deliberately weak."""
    from model_training.network import train_model

    _, features, target = trained
    x = features.transform(data[schema.features])
    y = target.transform(data[[schema.target]])
    classes = len(target.categories_[0])
    model, _ = train_model(x, y, classes=classes, epochs=1, batch_size=len(x), seed=42)
    return model, features, target


def register(trained: tuple[Any, Any, Any], schema: Any, experiment_id: str) -> str:
    import mlflow

    from model_training.packaging import log_servable_model, servable_files

    with mlflow.start_run(experiment_id=experiment_id):
        files = servable_files(*trained)
        logged = log_servable_model(files, schema, MODEL_NAME)
    return str(logged.version)


def server_pid(place: Place) -> int | None:
    state = LocalServer(place.state_dir).state()
    return state.pid if state else None


@pytest.fixture(scope="module")
def scenario(
    flow_runner: Any, flows_runner: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    schema, data, strong_model = train_small_model()
    weak_model = train_weak_model(strong_model, data, schema)
    accuracy = {
        "weak": accuracy_on(weak_model, data, schema),
        "strong": accuracy_on(strong_model, data, schema),
    }
    # The scenario means something only if the weak model is clearly weaker here.
    assert accuracy["strong"] > accuracy["weak"] + 0.15, accuracy

    experiment_id = ensure_experiment("promotion-tests")
    weak, strong = (register(m, schema, experiment_id) for m in (weak_model, strong_model))
    fewer_inputs = replace(
        schema, categorical_features=tuple(c for c in schema.categorical_features if c != "sex")
    )
    other_inputs = register(weak_model, fewer_inputs, experiment_id)

    place = Place(tmp_path_factory.mktemp("promotion"), model_name=MODEL_NAME, workers=1)
    config = place.write_config()
    deployments = place.directory / "deployments.jsonl"
    python_path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    env = {"PYTHONPATH": python_path, RECORD_VARIABLE: str(deployments)}

    def request(**parameters: Any) -> FlowRequest:
        return FlowRequest(DEPLOYMENT_FLOW, {"backend": BACKEND, **parameters}, config, env=env)

    def run(name: str, **parameters: Any) -> FlowResult:
        result = flows_runner({name: request(**parameters)})[name]
        pids[name] = server_pid(place)
        return result

    results: dict[str, FlowResult] = {}
    pids: dict[str, int | None] = {}
    backend = place.backend()
    try:
        results["first"] = run("first", model_version=weak)
        assert results["first"].successful, results["first"].describe()

        rows = data[schema.features].astype(object).where(data[schema.features].notna(), None)
        answers = backend.invoke(rows.to_dict("records"))["predictions"]
        truth = dict(zip((a["id"] for a in answers), data[schema.target], strict=True))
        labelled = backend.label_by_id(truth)

        results["promote"] = run("promote", model_version=strong, shadow=weak)
        assert results["promote"].successful, results["promote"].describe()

        results |= flows_runner({
            "refuse": request(model_version=weak),
            "missing_shadow": request(shadow="99"),
            "other_inputs": request(shadow=other_inputs),
        })  # fmt: skip
        pids["after"] = server_pid(place)
        accuracy = {weak: accuracy["weak"], strong: accuracy["strong"]}
        yield Scenario(
            place, weak, strong, other_inputs, labelled, accuracy, results, pids, deployments
        )
    finally:
        backend.stop()


def decision(result: FlowResult) -> Any:
    return result.run["start"].task["decision"].data


def test_first_version_deploys_without_a_champion(scenario: Scenario, mlflow_client: Any) -> None:
    first = decision(scenario.result("first"))
    assert first.decision == "promoted"
    assert "no champion yet" in first.reason
    assert recorded(scenario.deployments)[0] == {
        "model_uri": f"models:/{MODEL_NAME}/{scenario.weak}",
        "model_version": scenario.weak,
        "shadow": None,
    }


def test_the_strong_challenger_is_promoted_on_paired_evidence(
    scenario: Scenario, mlflow_client: Any
) -> None:
    result = scenario.result("promote")
    weak = scenario.weak
    promoted = decision(result)
    assert promoted.decision == "promoted", promoted.reason
    assert promoted.evidence == "production"
    figures = promoted.figures
    assert figures["rows"] == scenario.labelled >= 200
    # The in-process scores are the models' own: the same accuracies as computed here.
    assert figures["challenger_accuracy"] == pytest.approx(scenario.accuracy[scenario.strong])
    assert figures["champion_accuracy"] == pytest.approx(scenario.accuracy[scenario.weak])
    assert figures["challenger_only"] > figures["champion_only"]
    assert figures["p_value"] < 0.001
    assert f"challenger v{scenario.strong}" in result.output
    assert "Compared on" in result.output

    champion = mlflow_client.get_model_version_by_alias(MODEL_NAME, "champion")
    assert str(champion.version) == scenario.strong
    assert str(mlflow_client.get_model_version_by_alias(MODEL_NAME, "previous").version) == (
        scenario.weak
    )
    # The shadow request reached the backend, naming the weak version.
    assert recorded(scenario.deployments)[-1] == {
        "model_uri": f"models:/{MODEL_NAME}/{scenario.strong}",
        "model_version": scenario.strong,
        "shadow": {"model_uri": f"models:/{MODEL_NAME}/{scenario.weak}", "model_version": weak},
    }


def test_the_weak_challenger_is_refused_with_the_figures(
    scenario: Scenario, mlflow_client: Any
) -> None:
    result = scenario.result("refuse")
    assert result.status == "failed", result.describe()
    weak, strong = scenario.weak, scenario.strong
    expected = (
        f"Challenger v{weak} {scenario.accuracy[weak]:.3f} vs champion v{strong} "
        f"{scenario.accuracy[strong]:.3f} on {scenario.labelled} rows, p="
    )
    assert expected in result.output, result.describe()
    assert "not promoted" in result.output and "--force to deploy anyway" in result.output
    assert "Nothing serving was changed" in result.output

    # Nothing serving changed: the same server, the same version, the same aliases.
    assert scenario.pids["after"] == scenario.pids["promote"]
    assert scenario.place.backend().deployed_version() == strong
    assert len(recorded(scenario.deployments)) == 2
    assert str(mlflow_client.get_model_version_by_alias(MODEL_NAME, "champion").version) == strong

    # The refusal is on the start card, which renders although the run failed later.
    from metaflow.cards import get_cards

    text = card_text(next(iter(get_cards(result.run["start"].task))))
    assert "Decision: refused" in text and "champion_accuracy" in text


def test_shadow_versions_are_checked_before_anything_changes(scenario: Scenario) -> None:
    missing = scenario.result("missing_shadow")
    assert missing.status == "failed"
    assert "--shadow 99" in missing.output, missing.describe()
    assert f"Registered versions of '{MODEL_NAME}': 1, 2, 3" in missing.output

    other = scenario.result("other_inputs")
    assert other.status == "failed"
    assert f"version {scenario.other_inputs} does not take the inputs" in other.output, (
        other.describe()
    )
    assert "sex (only the served model takes it)" in other.output
    assert len(recorded(scenario.deployments)) == 2


def test_every_decision_is_in_the_history_newest_first(
    scenario: Scenario, mlflow_client: Any
) -> None:
    from promotion.audit import deployment_history

    history = deployment_history(mlflow_client, MODEL_NAME)
    weak, strong = scenario.weak, scenario.strong
    assert [event["decision"] for event in history] == ["refused", "shadow", "promoted", "promoted"]
    refused, shadow, promoted, first = history
    assert refused["roles"] == {weak: "challenger", strong: "champion"}
    assert refused["evidence"] == "production" and refused["figures"]["rows"] == scenario.labelled
    assert refused["target"] == scenario.place.target
    assert shadow["roles"] == {weak: "shadow", strong: "served"}
    assert promoted["roles"] == {strong: "challenger", weak: "replaced"}
    assert promoted["champion"] == weak and promoted["version"] == strong
    assert first["roles"] == {weak: "challenger"} and first["champion"] is None
    assert refused["run"] == f"Deployment/{scenario.result('refuse').run.id}"
    # Each event is kept on the version's own tags too, one sentence each: the weak one's four.
    tags = mlflow_client.get_model_version(MODEL_NAME, weak).tags
    sentences = [v.splitlines()[0] for k, v in sorted(tags.items()) if k.startswith("audit.")]
    assert [sentence.split()[3] for sentence in sentences] == [
        "promoted",
        "promoted",
        "shadow",
        "refused",
    ], sentences
