"""The search (src/model_tuning/search.py): lanes, the study told from records, pruning,
the best trial, and a lane that gives the same trials for the same seed."""

from __future__ import annotations

import numpy as np
import pytest

from common.settings import SearchRange, SearchSpace, TuningSettings
from model_tuning.folds import FoldArrays
from model_tuning.search import (
    EXPLOITATION,
    EXPLORATION,
    best_trial,
    exploration_trials,
    new_study,
    plan_lanes,
    run_lane,
    tell_finished,
)
from model_tuning.space import default_hyperparameters
from model_tuning.trials import TrialRecord


def record(accuracy: list[float], pruned: bool = False, **hyperparameters) -> TrialRecord:
    return TrialRecord(
        sampled={},
        hyperparameters={**default_hyperparameters(), **hyperparameters},
        accuracy=accuracy,
        loss=[1 - a for a in accuracy],
        pruned=pruned,
        seconds=0.0,
    )


@pytest.mark.parametrize(
    ("trials", "concurrency", "explored", "first", "second"),
    [(20, 2, 10, [5, 5], [5, 5]), (4, 2, 2, [1, 1], [1, 1]), (5, 3, 3, [1, 1, 1], [1, 1]),
     (3, 3, 3, [1, 1, 1], [0]), (7, 1, 3, [3], [4])],
)  # fmt: skip
def test_the_trials_are_dealt_to_two_fan_outs_of_lanes(
    trials: int, concurrency: int, explored: int, first: list[int], second: list[int]
) -> None:
    settings = TuningSettings(trials=trials, concurrency=concurrency)
    assert exploration_trials(settings) == explored
    exploration = plan_lanes(settings, EXPLORATION, seed=42)
    exploitation = plan_lanes(settings, EXPLOITATION, seed=42)
    assert [lane.trials for lane in exploration] == first
    assert [lane.trials for lane in exploitation] == second
    assert [lane.baseline for lane in exploration][-1] and not any(
        lane.baseline for lane in [*exploration[:-1], *exploitation]
    )
    seeds = [lane.seed for lane in exploration + exploitation]
    assert len(set(seeds)) == len(seeds)
    assert all(lane.seed is None for lane in plan_lanes(settings, EXPLORATION, seed=None))


def test_the_best_trial_ran_every_fold() -> None:
    trials = [
        record([0.9, 0.9]),
        record([1.0], pruned=True),
        record([0.95, 0.9]),
        record([0.95, 0.9]),
    ]
    assert best_trial(trials, "accuracy") == 2  # the first of two equals; the pruned is out
    assert best_trial(trials, "loss") == 2
    assert best_trial([record([0.99], pruned=True)], "accuracy") is None


def test_a_study_is_told_finished_trials_inside_its_space() -> None:
    settings = TuningSettings(parameters=SearchSpace(epochs=SearchRange(low=100, high=200)))
    study = new_study(settings, seed=0, history=[])
    assert not tell_finished(study, record([0.9, 0.8]), settings)  # the defaults: 50 epochs
    assert tell_finished(study, record([0.9, 0.8], epochs=150), settings)
    assert tell_finished(study, record([0.5], pruned=True, epochs=120), settings)
    complete, pruned = study.trials
    assert complete.value == pytest.approx(0.85) and complete.params["epochs"] == 150
    assert complete.intermediate_values == {0: 0.9, 1: pytest.approx(0.85)}
    assert pruned.state.name == "PRUNED" and pruned.intermediate_values == {0: 0.5}


def tiny_folds(count: int = 3) -> list[FoldArrays]:
    """Separable blobs: the defaults learn them, one epoch at a tiny learning rate does not."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    x = rng.normal(size=(60, 4)).astype("float32") + labels[:, None] * 3.0
    folds = []
    for fold in range(count):
        test = np.arange(60) % count == fold
        folds.append(FoldArrays(fold, x[~test], labels[~test, None], x[test], labels[test, None]))
    return folds


def test_a_lane_prunes_a_trial_that_trails_the_defaults_and_repeats_with_its_seed() -> None:
    settings = TuningSettings(
        trials=2,
        concurrency=1,
        pruning_startup_trials=1,
        parameters=SearchSpace(
            learning_rate=SearchRange(choices=(0.0001, 0.01)),
            epochs=SearchRange(choices=(1, 50)),
            batch_size=None,
            hidden_units=None,
            hidden_layers=None,
            dropout=None,
        ),
    )
    [lane] = plan_lanes(settings, EXPLORATION, seed=3)
    folds = tiny_folds()

    records = run_lane(lane, settings, [], folds, 2, [42, 43, 44])
    again = run_lane(lane, settings, [], folds, 2, [42, 43, 44])

    baseline, *trials = records
    assert baseline.baseline and len(baseline.accuracy) == 3 and baseline.mean("accuracy") > 0.9
    assert [t.sampled for t in trials] == [t.sampled for t in again[1:]]
    assert [t.accuracy for t in trials] == [t.accuracy for t in again[1:]]
    for trial in trials:
        weak = (
            trial.hyperparameters["epochs"] == 1 or trial.hyperparameters["learning_rate"] < 0.001
        )
        if trial.pruned:
            assert weak and len(trial.accuracy) == 2  # after the warm-up fold
