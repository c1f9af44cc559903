"""From a tuning run to a trained model: what the search recommends, and how a registered
version records it.

The tuning pipeline ends with a `recommendation` artifact (`recommendation`): the
hyperparameters to train with (the winner's when it beat the defaults on evidence,
the defaults otherwise), the winner, and the comparison's figures. The training
pipeline's `--hyperparameters-from <run>` reads it (`read_recommendation`), trains
with those hyperparameters, and tags the registered version with the tuning run and
its parameters (`version_tags`) and writes them into its model card
(`model_card_section`).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from model_tuning.space import HYPERPARAMETERS

if TYPE_CHECKING:
    from model_tuning.comparison import Verdict
    from model_tuning.trials import TrialRecord

# The tuning pipeline's flow name, as Metaflow's client spells its runs: `Tuning/<id>`.
TUNING_FLOW = "Tuning"


class TuningRunError(ValueError):
    """`--hyperparameters-from` names no finished tuning run; the message says why."""


def recommendation(
    tuning_run: str,
    winner: TrialRecord | None,
    winner_number: int | None,
    baseline: TrialRecord,
    verdict: Verdict,
) -> dict[str, Any]:
    """What the tuning run hands to training, as plain data (an artifact, tags, a card)."""
    chosen = winner if verdict.recommended and winner is not None else baseline
    return {
        "tuning_run": tuning_run,
        "recommended": verdict.recommended,
        "hyperparameters": dict(chosen.hyperparameters),
        "winner_trial": winner_number,
        "winner_hyperparameters": None if winner is None else dict(winner.hyperparameters),
        "objective": verdict.objective,
        "default_scores": verdict.default_scores,
        "winner_scores": verdict.winner_scores,
        "gain": verdict.gain,
        "p_value": verdict.p_value,
        "reason": verdict.reason,
    }


def read_recommendation(reference: str) -> dict[str, Any]:
    """The recommendation of the finished tuning run `reference` (`Tuning/<id>` or `<id>`).

    Raises TuningRunError naming what is wrong: no such run, a run of another flow, a
    run that failed or is still running.
    """
    from metaflow import Run
    from metaflow.exception import MetaflowNotFound

    pathspec = reference.strip() if "/" in reference else f"{TUNING_FLOW}/{reference.strip()}"
    flow = pathspec.split("/")[0]
    where = f"--hyperparameters-from {reference}"
    if flow != TUNING_FLOW or pathspec.count("/") != 1:
        raise TuningRunError(
            f"{where}: {pathspec} is not a run of the tuning pipeline ({TUNING_FLOW}/<id>). "
            "Pass the id `uv run src/pipelines/tuning.py run` printed."
        )
    try:
        run = Run(pathspec, _namespace_check=False)
    except MetaflowNotFound:
        raise TuningRunError(
            f"{where}: no tuning run {pathspec} was found. Pass the id of a finished run of "
            "`uv run src/pipelines/tuning.py run` (it prints `Tuning/<id>`)."
        ) from None
    if not run.successful:
        state = "failed" if _has_failed(run) else "is still running"
        raise TuningRunError(
            f"{where}: the tuning run {pathspec} {state}; pass a finished one, or run the "
            "search again: uv run src/pipelines/tuning.py run"
        )
    return _checked(run.data.recommendation, where)


def _has_failed(run: Any) -> bool:
    """Whether a task of `run` ended without success: its last attempt is recorded as
    not ok. (A run is `finished` once its end step is, which a failed run never is.)"""
    return any(task.metadata_dict.get("attempt_ok") == "False" for step in run for task in step)


def _checked(found: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(found["hyperparameters"]) - set(HYPERPARAMETERS))
    if unknown:
        raise TuningRunError(f"{where}: the run recommends unknown hyperparameters {unknown}.")
    return found


def version_tags(found: dict[str, Any]) -> dict[str, str]:
    """The registered version's tags: which tuning run, what it trained with, the verdict."""
    return {
        "tuning_run": found["tuning_run"],
        "hyperparameters": json.dumps(found["hyperparameters"], sort_keys=True),
        "tuning_recommended": str(found["recommended"]).lower(),
        "tuning_p_value": f"{found['p_value']:.4g}",
    }


def model_card_section(found: dict[str, Any]) -> str:
    """The model card's section on the hyperparameters and where they come from."""
    rows = "\n".join(
        f"| {name} | {value} |" for name, value in sorted(found["hyperparameters"].items())
    )
    if found["recommended"]:
        origin = f"the winner of tuning run `{found['tuning_run']}` (trial {found['winner_trial']})"
    else:
        origin = f"the defaults: tuning run `{found['tuning_run']}` found none better on evidence"
    return (
        f"\n\n## Hyperparameters\n\nTrained with {origin}; {found['reason']}.\n\n"
        f"| hyperparameter | value |\n| --- | --- |\n{rows}\n"
    )
