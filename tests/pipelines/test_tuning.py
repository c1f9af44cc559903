"""End-to-end tests of the tuning pipeline (src/pipelines/tuning.py), and of training with
what it recommends (`training.py run --hyperparameters-from`).

Small searches (4 trials over 3 folds, a handful of epochs), started together to share
the cores: two identical ones (the same seed must give the same trials and winner) and
one whose rule recommends any winner, which the training pipeline then trains and
registers. Bad input: every wrong `tuning:` setting stops the run before any task,
naming the setting; a `--hyperparameters-from` that names no finished tuning run fails
the training run's first step, saying why.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from support.flows import FlowRequest, FlowResult, card_text
from support.paths import LOCAL_CONFIG, PIPELINES, TRAINING_FLOW
from support.state import ensure_experiment

TUNING_FLOW = PIPELINES / "tuning.py"
FOLDS = 3
TRIALS = 4
# Epochs of 1 learn little: trials that draw it trail the defaults (50) and are pruned.
SEARCH = {
    "learning_rate": {"low": 0.005, "high": 0.05, "log": True},
    "epochs": {"choices": [1, 50]},
    "batch_size": {"choices": [16, 32]},
    "hidden_units": {"choices": [8, 16]},
    "hidden_layers": {"low": 1, "high": 2},
    "dropout": None,
}
SMALL = {"trials": TRIALS, "concurrency": 2, "seed": 7, "pruning_startup_trials": 1}
# Any finished winner is recommended: this search is about the hand-off to training.
PERMISSIVE = {
    "trials": TRIALS,
    "concurrency": 2,
    "pruning_startup_trials": None,
    "min_gain": -1.0,
    "max_p_value": None,
}


def tuning_config(directory: Path, name: str, tuning: dict[str, Any]) -> Path:
    """config/local.yml with `tuning:` replaced by `tuning`."""
    config = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))
    config["tuning"] = tuning
    path = directory / f"{name}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def searches(flows_runner, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    directory = tmp_path_factory.mktemp("tuning")
    small = tuning_config(directory, "small", {**SMALL, "parameters": SEARCH})
    permissive = tuning_config(
        directory, "permissive", {**PERMISSIVE, "parameters": {**SEARCH, "epochs": None}}
    )
    ensure_experiment("tuning")
    ensure_experiment("penguins")
    results = flows_runner(
        {
            "first": FlowRequest(TUNING_FLOW, {"folds": FOLDS}, config=small),
            "second": FlowRequest(TUNING_FLOW, {"folds": FOLDS}, config=small),
            "permissive": FlowRequest(TUNING_FLOW, {"folds": FOLDS}, config=permissive),
            "failed": FlowRequest(TUNING_FLOW, {"dataset": str(directory / "missing.csv")}),
        }
    )
    for name in ("first", "second", "permissive"):
        assert results[name].successful, results[name].describe()
    return SimpleNamespace(**results)


def end(result: FlowResult) -> Any:
    return result.run["end"].task


# --- a small search --------------------------------------------------------------------


def test_the_search_runs_every_step_in_two_fan_outs(searches: SimpleNamespace) -> None:
    run = searches.first.run
    assert {step.id for step in run} == {
        "start",
        "explore",
        "gather_exploration",
        "plan_exploitation",
        "exploit",
        "select",
        "end",
    }
    assert len(list(run["explore"].tasks())) == 2
    assert len(list(run["exploit"].tasks())) == 2
    trials = end(searches.first)["trials"].data
    assert len(trials) == TRIALS
    for record in trials:
        assert set(record.sampled) == {name for name, space in SEARCH.items() if space}
        assert record.hyperparameters["dropout"] == 0.0  # not searched: the default


def test_the_trials_use_the_training_pipelines_folds(searches: SimpleNamespace) -> None:
    from common.pipeline import development_seed
    from model_training.cross_validation import stratified_folds

    start = searches.first.run["start"].task
    data = start["data"].data
    splits = stratified_folds(data["species"], FOLDS, seed=development_seed(False))
    folds = start["folds"].data
    assert [len(fold.y_test) for fold in folds] == [len(test) for _, test in splits]
    assert start["fold_seeds"].data == [development_seed(False, fold) for fold in range(FOLDS)]
    baseline = end(searches.first)["baseline"].data
    assert baseline.baseline and not baseline.pruned and len(baseline.accuracy) == FOLDS


def test_pruning_stops_trials_that_trail_after_a_fold(searches: SimpleNamespace) -> None:
    trials = end(searches.first)["trials"].data
    pruned = [record for record in trials if record.pruned]
    assert pruned, [(r.hyperparameters["epochs"], r.accuracy) for r in trials]
    for record in pruned:
        assert 1 < len(record.accuracy) < FOLDS  # after the warm-up fold, before the last
        assert record.hyperparameters["epochs"] == 1


def test_the_same_seed_gives_the_same_trials_and_winner(searches: SimpleNamespace) -> None:
    first, second = end(searches.first), end(searches.second)
    assert [t.sampled for t in first["trials"].data] == [t.sampled for t in second["trials"].data]
    assert [t.accuracy for t in first["trials"].data] == [t.accuracy for t in second["trials"].data]
    assert first["best_trial"].data == second["best_trial"].data
    assert (
        first["recommendation"].data["hyperparameters"]
        == (second["recommendation"].data["hyperparameters"])
    )


def test_every_trial_is_a_nested_mlflow_run(searches: SimpleNamespace, mlflow_client) -> None:
    parent_id = searches.first.run["start"].task["mlflow_run_id"].data
    parent = mlflow_client.get_run(parent_id)
    experiment = mlflow_client.get_experiment_by_name("tuning")
    assert parent.info.experiment_id == experiment.experiment_id
    assert parent.data.params["trials"] == str(TRIALS)
    assert parent.data.tags["recommended"] in {"true", "false"}
    nested = mlflow_client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'"
    )
    assert sorted(r.info.run_name for r in nested) == [
        "defaults",
        *[f"trial-{n}" for n in range(TRIALS)],
    ]
    trials = end(searches.first)["trials"].data
    for run in nested:
        if run.info.run_name == "defaults":
            continue
        record = trials[int(run.info.run_name.split("-")[1])]
        assert run.data.params["epochs"] == str(record.hyperparameters["epochs"])
        history = mlflow_client.get_metric_history(run.info.run_id, "fold_accuracy")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == record.accuracy
        assert run.data.tags["state"] == ("pruned" if record.pruned else "complete")


def card_svgs(text: str) -> list[Any]:
    """The SVG documents a card shows as images, parsed."""
    import base64
    import re

    from support.svg import parse_svg

    images = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", text)
    return [parse_svg(base64.b64decode(image).decode()) for image in images]


def test_the_card_draws_the_search(searches: SimpleNamespace) -> None:
    from metaflow.cards import get_cards
    from support.svg import SVG

    [card] = get_cards(searches.first.run["select"].task)
    text = card_text(card)
    assert "Hyperparameter search" in text and "Parameter importance" in text
    verdict = end(searches.first)["verdict"].data
    assert ("Recommended" if verdict.recommended else "The defaults stand") in text
    importance = end(searches.first)["importance"].data
    assert importance, "PED-ANOVA needs finished trials that differ"
    trials_chart, importance_chart = card_svgs(text)
    titles = [title.text for title in trials_chart.iter(f"{SVG}text")]
    assert "accuracy per trial (defaults" in titles[0] and "best so far" in titles[0]
    searched = [name for name, space in SEARCH.items() if space]
    assert [f"accuracy by {name}" for name in searched] == [
        title for title in titles if title.startswith("accuracy by ")
    ]
    # One dot per trial in each panel: the objective per trial, then each parameter.
    assert len(list(trials_chart.iter(f"{SVG}circle"))) == TRIALS * (1 + len(searched))
    trials = end(searches.first)["trials"].data
    first_complete = min(n for n, record in enumerate(trials) if not record.pruned)
    best_so_far = 1 if TRIALS - first_complete > 1 else 0
    assert len(list(trials_chart.iter(f"{SVG}polyline"))) == best_so_far
    bars = [label.text for label in importance_chart.iter(f"{SVG}text")]
    assert set(searched) <= set(bars)


# --- the winner, trained and registered --------------------------------------------------


@pytest.fixture(scope="module")
def tuned_training(flows_runner, searches: SimpleNamespace) -> SimpleNamespace:
    tuning_run = searches.permissive.run.pathspec
    failed_run = searches.failed.run.pathspec
    results = flows_runner(
        {
            "tuned": FlowRequest(
                TRAINING_FLOW, {"folds": FOLDS, "hyperparameters_from": tuning_run}
            ),
            "missing": FlowRequest(TRAINING_FLOW, {"hyperparameters_from": "Tuning/123"}),
            "other-flow": FlowRequest(TRAINING_FLOW, {"hyperparameters_from": "Training/1"}),
            "failed": FlowRequest(TRAINING_FLOW, {"hyperparameters_from": failed_run}),
        }
    )
    return SimpleNamespace(tuning_run=tuning_run, failed_run=failed_run, **results)


def test_the_winner_is_trained_and_registered_with_its_tags(
    searches: SimpleNamespace, tuned_training: SimpleNamespace, mlflow_client
) -> None:
    result = tuned_training.tuned
    assert result.successful, result.describe()
    recommendation = end(searches.permissive)["recommendation"].data
    assert recommendation["recommended"] is True
    winner = end(searches.permissive)["trials"].data[recommendation["winner_trial"]]
    assert recommendation["hyperparameters"] == winner.hyperparameters

    model = result.run["train"].task["model"].data
    assert model.layers[0].units == winner.hyperparameters["hidden_units"]
    version = result.run["register"].task["model_version"].data
    tags = mlflow_client.get_model_version("penguins", version).tags
    assert tags["tuning_run"] == tuned_training.tuning_run
    assert json.loads(tags["hyperparameters"]) == winner.hyperparameters
    assert tags["tuning_recommended"] == "true"
    card = result.run["register"].task["model_card"].data
    assert "## Hyperparameters" in card and tuned_training.tuning_run in card
    assert f"| hidden_units | {winner.hyperparameters['hidden_units']} |" in card


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "no tuning run Tuning/123 was found"),
        ("other-flow", "Training/1 is not a run of the tuning pipeline"),
        ("failed", "failed; pass a finished one"),
    ],
)
def test_hyperparameters_from_a_run_that_is_not_a_finished_tuning_run(
    tuned_training: SimpleNamespace, case: str, expected: str
) -> None:
    result = getattr(tuned_training, case)
    assert result.status == "failed", result.describe()
    assert {step.id for step in result.run} == {"start"}
    assert expected in result.output, result.describe()
    assert "--hyperparameters-from" in result.output


# --- bad settings ----------------------------------------------------------------------


BAD_SETTINGS = {
    "unknown-name": (
        {"parameters": {"learning_rat": {"low": 0.001, "high": 0.1}}},
        "tuning.parameters.learning_rat: unknown setting, did you mean learning_rate?",
    ),
    "not-a-model-parameter": (
        {"parameters": {"momentum": {"low": 0.1, "high": 0.9}}},
        "tuning.parameters.momentum: unknown setting. Valid settings: learning_rate, epochs, "
        "batch_size, hidden_units, hidden_layers, dropout.",
    ),
    "inverted-range": (
        {"parameters": {"learning_rate": {"low": 0.1, "high": 0.001}}},
        "tuning.parameters.learning_rate.low: inverted range: low 0.1 is above high 0.001; "
        "swap them.",
    ),
    "empty-range": (
        {"parameters": {"epochs": {"low": 10, "high": 10}}},
        "tuning.parameters.epochs.high: empty range: low and high are both 10",
    ),
    "no-choices": (
        {"parameters": {"batch_size": {"choices": []}}},
        "tuning.parameters.batch_size.choices: is empty: list at least one value.",
    ),
    "no-trials": ({"trials": 0}, "tuning.trials: must be a positive integer, got 0."),
    "no-concurrency": (
        {"concurrency": 0},
        "tuning.concurrency: must be between 1 and tuning.trials (20), got 0.",
    ),
    "concurrency-above-trials": (
        {"trials": 3, "concurrency": 4},
        "tuning.concurrency: must be between 1 and tuning.trials (3), got 4.",
    ),
    "objective-not-produced": (
        {"objective": "f1"},
        "tuning.objective: must be one of 'accuracy', 'loss', got 'f1'. The trials produce "
        "`accuracy` (maximized) and `loss` (minimized).",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETTINGS))
def test_a_bad_tuning_setting_stops_the_run_naming_it(
    case: str, flow_runner, tmp_path: Path
) -> None:
    from metaflow.exception import MetaflowException

    override, expected = BAD_SETTINGS[case]
    base = yaml.safe_load(LOCAL_CONFIG.read_text(encoding="utf-8"))["tuning"]
    config = tuning_config(tmp_path, case, {**base, **override})

    # Through metaflow.Runner the configuration is parsed in the calling process: the
    # error is raised there, and no run starts.
    with pytest.raises(MetaflowException) as raised:
        flow_runner(TUNING_FLOW, config=config)
    assert raised.value.headline == "Project configuration error"
    assert expected in str(raised.value)
