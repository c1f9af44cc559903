"""Tests for promotion.evidence: cross-validated scores, and captures scored by both models.

The registry test uses the SQLite store of tests/promotion/conftest.py; the paired
comparison on captures uses the session's real registered models (support/serving.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.rows import SPEC_ROW
from support.serving import ServingModels

from promotion.evidence import CrossValidated, compare_on_captures, cross_validated_scores


def test_cross_validated_scores_from_tags_then_from_the_training_run(client: Any) -> None:
    client.set_model_version_tag("m", "1", "cv_accuracy", "0.91")
    client.set_model_version_tag("m", "1", "cv_accuracy_std", "0.03")
    assert cross_validated_scores(client, "m", "1") == CrossValidated(0.91, 0.03, "tags")

    experiment = client.create_experiment("training")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "cross_validation_accuracy", 0.88)
    version = client.create_model_version("m", source="x", run_id=run.info.run_id).version
    assert cross_validated_scores(client, "m", str(version)) == CrossValidated(
        0.88, None, "training run"
    )

    assert cross_validated_scores(client, "m", "2") is None


def test_compare_on_captures_scores_both_models_through_the_server_path(
    serving_models: ServingModels, tmp_path: Path
) -> None:
    rows = [SPEC_ROW, {**SPEC_ROW, "island": "Dream", "culmen_length_mm": 39.0}]
    captures = pd.DataFrame(rows).assign(ground_truth=["Gentoo", "Adelie"], id=["a", "b"])
    uri = serving_models.uri

    run = compare_on_captures(uri(serving_models.good[0]), uri(serving_models.good[1]), captures,
                              tmp_path)  # fmt: skip

    # One model registered twice: the same answers, so no discordant row.
    assert run.comparison.rows == 2
    assert run.comparison.champion_accuracy == run.comparison.challenger_accuracy
    assert run.comparison.champion_only == run.comparison.challenger_only == 0
    assert set(run.seconds) == {"download", "load", "score", "compare", "total"}

    unseen = captures.assign(island=["Atlantis", "Dream"])
    with pytest.raises(ValueError, match="Atlantis"):
        compare_on_captures(uri(serving_models.good[0]), uri(serving_models.good[1]), unseen,
                            tmp_path / "again")  # fmt: skip
    unlabelled = captures.assign(ground_truth=[None, "Adelie"])
    with pytest.raises(ValueError, match="ground truth"):
        compare_on_captures("unused", "unused", unlabelled, tmp_path)
