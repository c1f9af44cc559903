"""From a tuning run to training (src/model_tuning/handoff.py): the recommendation, the
version's tags and model card section; runs of other flows refused."""

from __future__ import annotations

import json

import pytest

from model_tuning.comparison import Verdict
from model_tuning.handoff import (
    TuningRunError,
    model_card_section,
    read_recommendation,
    recommendation,
    version_tags,
)
from model_tuning.space import default_hyperparameters
from model_tuning.trials import TrialRecord

WINNER = TrialRecord(
    {}, {**default_hyperparameters(), "hidden_units": 32}, [0.99], [0.1], False, 1.0
)
BASELINE = TrialRecord({}, default_hyperparameters(), [0.9], [0.3], False, 1.0, baseline=True)


def verdict(recommended: bool) -> Verdict:
    reason = "better than the defaults" if recommended else "not under tuning.max_p_value 0.05"
    return Verdict("accuracy", [0.9], [0.99], 0.09, 0.01, recommended, reason)


def test_a_recommended_winner_is_what_training_gets() -> None:
    found = recommendation("Tuning/7", WINNER, 3, BASELINE, verdict(True))
    assert found["hyperparameters"] == WINNER.hyperparameters and found["winner_trial"] == 3
    tags = version_tags(found)
    assert tags["tuning_run"] == "Tuning/7" and tags["tuning_recommended"] == "true"
    assert json.loads(tags["hyperparameters"]) == WINNER.hyperparameters
    section = model_card_section(found)
    assert (
        "## Hyperparameters" in section and "winner of tuning run `Tuning/7` (trial 3)" in section
    )
    assert "| hidden_units | 32 |" in section


def test_when_the_defaults_stand_training_gets_the_defaults() -> None:
    found = recommendation("Tuning/7", WINNER, 3, BASELINE, verdict(False))
    assert found["hyperparameters"] == default_hyperparameters()
    assert found["winner_hyperparameters"] == WINNER.hyperparameters
    assert version_tags(found)["tuning_recommended"] == "false"
    assert "the defaults: tuning run `Tuning/7` found none better" in model_card_section(found)


@pytest.mark.parametrize("reference", ["Training/12", "Tuning/12/start", "Scoring/3"])
def test_a_run_of_another_flow_is_refused_before_any_look_up(reference: str) -> None:
    with pytest.raises(TuningRunError, match="is not a run of the tuning pipeline"):
        read_recommendation(reference)
