"""The search: Optuna's TPE sampler and median pruner, asked and told in lanes.

Metaflow's graph is fixed before a run starts and cannot loop (a recursive step needs
a switch, which Step Functions cannot deploy), so the search runs in two fan-outs of
`tuning.concurrency` lanes each. A lane is one task that evaluates its trials one after
another, with ask-and-tell on an in-memory Optuna study: the study holds every trial
finished before the fan-out (passed in as Metaflow artifacts, `TrialRecord`s) and the
lane's own. The first fan-out explores (TPE samples at random until
`exploration_trials` have finished) and evaluates the default configuration, the
baseline; the second exploits, each lane's TPE fitted on all the exploration and on
its own trials. No shared database: a lane needs only its artifacts, on any worker.

Everything is seeded from `tuning.seed` in development, so the same seed gives the
same trials and the same winner; production runs draw fresh seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from model_tuning.space import contains, default_hyperparameters, distributions, with_defaults
from model_tuning.trials import TrialRecord, evaluate_trial

if TYPE_CHECKING:
    import optuna

    from common.settings import TuningSettings
    from model_tuning.folds import FoldArrays

# Rounds of the search: the exploration fan-out, then the exploitation fan-out.
EXPLORATION, EXPLOITATION = 0, 1
# A fold's running mean is first compared with other trials' after this many folds.
PRUNING_WARMUP_FOLDS = 1


@dataclass(frozen=True)
class Lane:
    """One task of a fan-out: how many trials it asks, its sampler's seed, and whether
    it evaluates the baseline first."""

    round: int
    index: int
    trials: int
    seed: int | None
    baseline: bool = False


def exploration_trials(settings: TuningSettings) -> int:
    """Trials sampled at random before TPE takes over: half the budget, at least one per lane."""
    return min(settings.trials, max(settings.concurrency, settings.trials // 2))


def plan_lanes(settings: TuningSettings, round: int, seed: int | None) -> list[Lane]:
    """The lanes of one fan-out, the trials dealt evenly; the last lane of the
    exploration also evaluates the baseline (it has the fewest trials)."""
    explored = exploration_trials(settings)
    total = explored if round == EXPLORATION else settings.trials - explored
    count = max(1, min(settings.concurrency, total))
    lanes = [
        Lane(
            round=round,
            index=index,
            trials=total // count + (1 if index < total % count else 0),
            seed=None if seed is None else seed + 1000 * round + index,
        )
        for index in range(count)
    ]
    if round == EXPLORATION:
        lanes[-1] = replace(lanes[-1], baseline=True)
    return lanes


def direction(objective: str) -> str:
    """Optuna's direction for an objective: accuracy up, loss down."""
    return "maximize" if objective == "accuracy" else "minimize"


def is_better(first: float, second: float, objective: str) -> bool:
    """Whether objective value `first` is strictly better than `second`."""
    return first > second if objective == "accuracy" else first < second


def new_study(
    settings: TuningSettings, seed: int | None, history: Sequence[TrialRecord]
) -> optuna.Study:
    """An in-memory study with the TPE sampler and the median pruner, holding `history`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=exploration_trials(settings))
    pruner: optuna.pruners.BasePruner = optuna.pruners.NopPruner()
    if settings.pruning_startup_trials is not None:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=settings.pruning_startup_trials,
            n_warmup_steps=PRUNING_WARMUP_FOLDS,
        )
    study = optuna.create_study(
        direction=direction(settings.objective), sampler=sampler, pruner=pruner
    )
    for record in history:
        tell_finished(study, record, settings)
    return study


def tell_finished(study: optuna.Study, record: TrialRecord, settings: TuningSettings) -> bool:
    """Add a trial finished elsewhere to `study`; False for a baseline outside the space."""
    import optuna

    space = settings.parameters
    if not contains(space, record.hyperparameters):
        return False
    searched = {name: record.hyperparameters[name] for name in space.ranges()}
    objective = settings.objective
    study.add_trial(
        optuna.trial.create_trial(
            params=searched,
            distributions=distributions(space),
            value=None if record.pruned else record.mean(objective),
            intermediate_values=dict(enumerate(record.running_means(objective))),
            state=optuna.trial.TrialState.PRUNED
            if record.pruned
            else optuna.trial.TrialState.COMPLETE,
        )
    )
    return True


def run_lane(
    lane: Lane,
    settings: TuningSettings,
    history: Sequence[TrialRecord],
    folds: Sequence[FoldArrays],
    classes: int,
    fold_seeds: Sequence[int | None],
) -> list[TrialRecord]:
    """Evaluate the lane's trials one after another; the baseline first if it has it."""
    study = new_study(settings, lane.seed, history)
    records = []
    if lane.baseline:
        baseline = evaluate_trial(
            default_hyperparameters(), folds, classes, fold_seeds, settings.objective
        )
        records.append(replace(baseline, baseline=True))
        tell_finished(study, records[-1], settings)
    space = distributions(settings.parameters)
    for _ in range(lane.trials):
        trial = study.ask(space)

        def stop_early(fold: int, running: float, trial: Any = trial) -> bool:
            trial.report(running, fold)
            return trial.should_prune()

        record = evaluate_trial(
            with_defaults(trial.params),
            folds,
            classes,
            fold_seeds,
            settings.objective,
            stop_early if settings.pruning_startup_trials is not None else None,
        )
        records.append(replace(record, sampled=dict(trial.params)))
        _tell(study, trial, record, settings.objective)
    return records


def _tell(study: optuna.Study, trial: Any, record: TrialRecord, objective: str) -> None:
    import optuna

    if record.pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, record.mean(objective))


def best_trial(trials: Sequence[TrialRecord], objective: str) -> int | None:
    """The index of the best trial that ran every fold (the first among equals), or None."""
    best = None
    for index, record in enumerate(trials):
        if record.pruned:
            continue
        if best is None or is_better(
            record.mean(objective), trials[best].mean(objective), objective
        ):
            best = index
    return best


def parameter_importance(
    trials: Sequence[TrialRecord], settings: TuningSettings
) -> dict[str, float]:
    """How much each searched hyperparameter explains the objective (Optuna's PED-ANOVA),
    from the finished trials; empty when there are too few to tell."""
    import optuna

    study = new_study(settings, seed=0, history=[t for t in trials if not t.baseline])
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError):  # Fewer than two finished trials, one value only.
        return {}


def searched_values(record: TrialRecord, settings: TuningSettings) -> dict[str, Any]:
    """A trial's values of the searched hyperparameters, by name."""
    return {name: record.hyperparameters[name] for name in settings.parameters.ranges()}
