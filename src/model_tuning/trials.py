"""One trial: train a configuration on every fold, score it on the rows it never saw.

Each fold's model is trained by `model_training.network.train_model`, with the seed the
training pipeline gives that fold, and scored as the training pipeline scores its folds:
the server's numpy forward pass over the weights (`inference.forward`), or the model's
own inference call for an architecture that pass does not know (dropout layers), then
`classification_scores`. After each fold the running mean of the objective goes to
`stop_early`, which may prune the trial there (Optuna's pruner, see `search`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from model_tuning.folds import FoldArrays

# What every trial produces, per fold: the objectives the config may name.
METRICS = ("accuracy", "loss")


@dataclass(frozen=True)
class TrialRecord:
    """A finished trial: what it tried, its fold scores, and whether it was pruned.

    `sampled` holds the searched values as Optuna sampled them; `hyperparameters` the
    full configuration trained (defaults for what was not searched). `baseline` marks
    the default configuration, evaluated beside the trials for the comparison.
    """

    sampled: dict[str, Any]
    hyperparameters: dict[str, Any]
    accuracy: list[float]
    loss: list[float]
    pruned: bool
    seconds: float
    baseline: bool = False

    def scores(self, metric: str) -> list[float]:
        """The fold scores of `metric` (`accuracy` or `loss`), one per fold run."""
        return list(getattr(self, metric))

    def mean(self, metric: str) -> float:
        """The mean of `metric` over the folds run (fewer than all when pruned)."""
        scores = self.scores(metric)
        return sum(scores) / len(scores)

    def running_means(self, metric: str) -> list[float]:
        """The mean of `metric` after each fold: what the pruner was told."""
        scores = self.scores(metric)
        return [sum(scores[: index + 1]) / (index + 1) for index in range(len(scores))]


# Called after each fold with (fold index, running mean of the objective); True prunes.
StopEarly = Callable[[int, float], bool]


def evaluate_trial(
    hyperparameters: dict[str, Any],
    folds: Sequence[FoldArrays],
    classes: int,
    seeds: Sequence[int | None],
    objective: str,
    stop_early: StopEarly | None = None,
) -> TrialRecord:
    """Cross-validate `hyperparameters` on `folds` (fold i trained with `seeds[i]`)."""
    started = time.perf_counter()
    scores: dict[str, list[float]] = {metric: [] for metric in METRICS}
    pruned = False
    for index, fold in enumerate(folds):
        loss, accuracy = _fold_scores(hyperparameters, fold, classes, seeds[index])
        scores["loss"].append(loss)
        scores["accuracy"].append(accuracy)
        running = sum(scores[objective]) / len(scores[objective])
        if index < len(folds) - 1 and stop_early is not None and stop_early(index, running):
            pruned = True
            break
    return TrialRecord(
        sampled={},
        hyperparameters=dict(hyperparameters),
        accuracy=scores["accuracy"],
        loss=scores["loss"],
        pruned=pruned,
        seconds=time.perf_counter() - started,
    )


def _fold_scores(
    hyperparameters: dict[str, Any], fold: FoldArrays, classes: int, seed: int | None
) -> tuple[float, float]:
    """(loss, accuracy) of a model trained on the fold's training rows, on its test rows."""
    from model_training.cross_validation import classification_scores
    from model_training.network import train_model

    model, _ = train_model(
        fold.x_train, fold.y_train, classes=classes, seed=seed, **hyperparameters
    )
    loss, accuracy, _ = classification_scores(_forward(model)(fold.x_test), fold.y_test)
    return loss, accuracy


def _forward(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """The server's numpy forward pass when it knows the model, else one eager call."""
    import numpy as np

    from inference.forward import dense_forward, dense_weights

    weights = dense_weights(model)
    if weights is not None:
        return dense_forward(weights)
    # An eager call, not `predict`: no predict function to compile for one use.
    return lambda x: np.asarray(model(np.asarray(x, dtype="float32"), training=False))
