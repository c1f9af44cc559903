"""One trial (src/model_tuning/trials.py): fold scores, running means, early stopping."""

from __future__ import annotations

import numpy as np

from model_tuning.folds import FoldArrays
from model_tuning.space import default_hyperparameters
from model_tuning.trials import TrialRecord, evaluate_trial


def test_a_record_averages_the_folds_it_ran() -> None:
    record = TrialRecord(
        {}, {}, accuracy=[1.0, 0.5, 0.75], loss=[0.1, 0.3, 0.2], pruned=False, seconds=1.0
    )
    assert record.mean("accuracy") == 0.75 and record.scores("loss") == [0.1, 0.3, 0.2]
    assert record.running_means("accuracy") == [1.0, 0.75, 0.75]


def folds() -> list[FoldArrays]:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 10)
    x = rng.normal(size=(30, 3)).astype("float32") + labels[:, None] * 2.0
    test = np.arange(30) % 2 == 0
    return [
        FoldArrays(0, x[~test], labels[~test, None], x[test], labels[test, None]),
        FoldArrays(1, x[test], labels[test, None], x[~test], labels[~test, None]),
    ]


def test_a_trial_scores_each_fold_and_stops_when_told() -> None:
    told = []

    def stop_early(fold: int, running: float) -> bool:
        told.append((fold, running))
        return True

    hyperparameters = {**default_hyperparameters(), "epochs": 3}
    full = evaluate_trial(hyperparameters, folds(), 3, [1, 2], "accuracy")
    stopped = evaluate_trial(hyperparameters, folds(), 3, [1, 2], "loss", stop_early)

    assert not full.pruned and len(full.accuracy) == 2 and 0 <= full.mean("accuracy") <= 1
    assert stopped.pruned and stopped.accuracy == full.accuracy[:1]
    assert told == [(0, full.loss[0])]  # the objective's running mean, never after the last fold
    assert full.hyperparameters == hyperparameters


def test_dropout_models_are_scored_by_the_models_own_inference_call() -> None:
    hyperparameters = {**default_hyperparameters(), "epochs": 2, "dropout": 0.5}
    record = evaluate_trial(hyperparameters, folds(), 3, [1, 2], "accuracy")
    assert len(record.accuracy) == 2 and all(0 <= a <= 1 for a in record.accuracy)
