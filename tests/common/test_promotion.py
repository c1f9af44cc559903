"""Tests for promotion.policy (the promotion decision) and the audit trail of common.registry.

Registry tests use a real SQLite MLflow store of their own; the paired comparison on
captures uses the session's real registered models (support/serving.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from support.rows import SPEC_ROW
from support.serving import ServingModels

from common.data import DatasetSchema
from common.registry import retire_challenger
from common.settings import PromotionSettings
from model_training.packaging import model_signature
from promotion.audit import DeploymentEvent, deployment_history, record_event
from promotion.policy import (
    FORCE_HINT,
    CrossValidated,
    Decision,
    available_versions,
    compare_on_captures,
    cross_validated_scores,
    forced,
    history_card,
    input_columns,
    judge_cross_validated,
    judge_paired,
    no_evidence,
    refusal_message,
    schema_differences,
    without_comparison,
)
from promotion.rule import compare_paired

DEFAULTS = PromotionSettings()


@pytest.fixture
def client(tmp_path: Path) -> Any:
    """A registry of its own: model `m` with versions 1, 2 and 3 (no artifacts needed)."""
    import mlflow

    from common.tracking import prepare_tracking_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    prepare_tracking_store(uri)
    client = mlflow.MlflowClient(uri, uri)
    client.create_registered_model("m")
    for _ in range(3):
        client.create_model_version("m", source=str(tmp_path / "model"))
    return client


# --- deciding ------------------------------------------------------------------------------


def comparison(champion_right: int, challenger_right: int, both: int, rows: int) -> Any:
    """Predictions on `rows` rows: `both` right for both, then each one's own rights."""
    truth = ["a"] * rows
    champion = ["a"] * both + ["a"] * champion_right + ["b"] * (rows - both - champion_right)
    challenger = (
        ["a"] * both
        + ["b"] * champion_right
        + ["a"] * challenger_right
        + ["b"] * (rows - both - champion_right - challenger_right)
    )
    return compare_paired(truth, champion, challenger)


def test_a_worse_challenger_is_refused_with_its_figures() -> None:
    paired = comparison(champion_right=30, challenger_right=20, both=400, rows=480)

    decision = judge_paired(paired, "7", "6", DEFAULTS)

    assert decision.refused and decision.evidence == "production"
    assert decision.reason.startswith(
        f"challenger v7 {420 / 480:.3f} vs champion v6 {430 / 480:.3f} on 480 rows, p="
    )
    assert "not promoted (gain -0.021 is under the required +0.000)" in decision.reason
    assert decision.reason.endswith(FORCE_HINT)
    assert decision.figures["champion_only"] == 30 and decision.figures["challenger_only"] == 20
    assert decision.figures["min_rows"] == 200
    assert refusal_message(decision).startswith("Challenger v7 ")
    assert refusal_message(decision).endswith("Nothing serving was changed.")


def test_a_better_challenger_is_promoted_unless_significance_is_required() -> None:
    paired = comparison(champion_right=20, challenger_right=30, both=400, rows=480)
    assert judge_paired(paired, "7", "6", DEFAULTS).decision == "promoted"

    strict = PromotionSettings(max_p_value=0.05)
    decision = judge_paired(paired, "7", "6", strict)
    assert decision.refused  # 30 against 20 discordant rows: p is about 0.2
    assert f"p={paired.p_value:.3g} is not under max_p_value 0.05" in decision.reason

    clear = comparison(champion_right=5, challenger_right=40, both=400, rows=480)
    assert judge_paired(clear, "7", "6", strict).decision == "promoted"


def test_min_gain_is_required() -> None:
    paired = comparison(champion_right=20, challenger_right=30, both=400, rows=480)
    decision = judge_paired(paired, "7", "6", PromotionSettings(min_gain=0.05))
    assert decision.refused and "under the required +0.050" in decision.reason


def test_cross_validated_scores_decide_for_want_of_labelled_rows_and_say_so() -> None:
    better = CrossValidated(0.95, 0.02, "tags")
    worse = CrossValidated(0.90, None, "training run")

    promoted = judge_cross_validated(better, worse, "7", "6", 12, DEFAULTS)
    assert promoted.decision == "promoted" and promoted.evidence == "cross-validation"
    assert promoted.reason.startswith(
        "only 12 labelled captures (promotion.min_rows is 200), so cross-validated scores "
        "were compared: challenger v7 0.950 ± 0.020 vs champion v6 0.900: promoted"
    )
    assert promoted.figures["scores_from"] == {"challenger": "tags", "champion": "training run"}

    refused = judge_cross_validated(worse, better, "7", "6", 12, DEFAULTS)
    assert refused.refused and refused.reason.endswith(FORCE_HINT)

    strict = judge_cross_validated(better, worse, "7", "6", 12, PromotionSettings(max_p_value=0.1))
    assert strict.refused
    assert "cross-validated scores give no p-value" in strict.reason


def test_no_evidence_says_what_is_missing_and_how_to_get_it() -> None:
    decision = no_evidence(["6"], "7", "6", labelled_rows=0, min_rows=200)

    assert decision.refused and decision.evidence == "none"
    for part in (
        "challenger v7 cannot be compared with champion v6",
        "only 0 labelled captures (promotion.min_rows is 200)",
        "no cross-validated accuracy for version 6",
        "Backend.label_by_id",
        "--mode labels",
        "lower promotion.min_rows",
        FORCE_HINT,
    ):
        assert part in decision.reason


def test_requests_that_need_no_comparison() -> None:
    assert without_comparison("previous", "5", "6", "previous").decision == "rollback"
    assert without_comparison("latest", "5", None, "previous").decision == "promoted"
    assert without_comparison("champion", "6", "6", "previous").decision == "redeployed"
    assert without_comparison("5", "5", "6", "previous") is None
    # A version number, even that of `previous`, is compared: only the alias rolls back.
    assert without_comparison("latest", "7", "6", "previous") is None


def test_force_keeps_what_the_comparison_said() -> None:
    paired = comparison(champion_right=30, challenger_right=20, both=400, rows=480)
    refused = judge_paired(paired, "7", "6", DEFAULTS)

    decision = forced(refused, "7")

    assert decision.decision == "forced" and not decision.refused
    assert decision.reason.startswith("version 7 deployed with --force; the comparison said: ")
    assert FORCE_HINT not in decision.reason and "not promoted" in decision.reason
    assert decision.figures == refused.figures


def test_the_card_shows_the_decision_and_the_history() -> None:
    decision = Decision("refused", "worse", "production", {"rows": 3, "p_value": 0.5})
    history = [{"when": "t", "decision": "promoted", "version": "1", "reason": "first"}]

    components = history_card(decision, history)

    rendered = " ".join(str(component.render()) for component in components)
    assert "Decision: refused" in rendered and "p_value" in rendered
    assert "promoted" in rendered and "first" in rendered


# --- evidence ------------------------------------------------------------------------------


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


def test_available_versions_lists_versions_and_aliases(client: Any) -> None:
    client.set_registered_model_alias("m", "champion", "2")
    assert available_versions(client, "m") == "1, 2, 3 (aliases: champion=2)"


def test_compare_on_captures_scores_both_models_through_the_server_path(
    serving_models: ServingModels, tmp_path: Path
) -> None:
    from inference.model import load_scorer

    rows = [SPEC_ROW, {**SPEC_ROW, "island": "Dream", "culmen_length_mm": 39.0}]
    captures = pd.DataFrame(rows).assign(ground_truth=["Gentoo", "Adelie"], id=["a", "b"])
    uri = serving_models.uri

    run = compare_on_captures(load_scorer, uri(serving_models.good[0]), uri(serving_models.good[1]),
                              captures, tmp_path)  # fmt: skip

    # One model registered twice: the same answers, so no discordant row.
    assert run.comparison.rows == 2
    assert run.comparison.champion_accuracy == run.comparison.challenger_accuracy
    assert run.comparison.champion_only == run.comparison.challenger_only == 0
    assert set(run.seconds) == {"download", "load", "score", "compare", "total"}

    unseen = captures.assign(island=["Atlantis", "Dream"])
    with pytest.raises(ValueError, match="Atlantis"):
        compare_on_captures(load_scorer, uri(serving_models.good[0]),
                            uri(serving_models.good[1]), unseen, tmp_path / "again")  # fmt: skip
    unlabelled = captures.assign(ground_truth=[None, "Adelie"])
    with pytest.raises(ValueError, match="ground truth"):
        compare_on_captures(load_scorer, "unused", "unused", unlabelled, tmp_path)


def test_a_comparison_without_labelled_rows_says_how_to_label_them() -> None:
    with pytest.raises(ValueError, match="label captured predictions first"):
        compare_paired([], [], [])


# --- shadow checks -------------------------------------------------------------------------


def test_schema_differences_name_each_differing_column() -> None:
    full = DatasetSchema("species", ("length", "mass"), ("island", "sex"), {})
    other = DatasetSchema("species", ("length",), ("island", "mass", "colour"), {})

    served, shadow = (input_columns(model_signature(s)) for s in (full, other))

    assert schema_differences(served, served) == []
    differences = schema_differences(served, shadow)
    assert differences[0].startswith("mass (served ")  # a number there, a string here
    assert differences[1:] == [
        "sex (only the served model takes it)",
        "colour (only the shadow takes it)",
    ]
    assert input_columns(None) == {}


# --- the audit trail -----------------------------------------------------------------------


def event(decision: str, version: str, champion: str | None, **figures: Any) -> DeploymentEvent:
    return DeploymentEvent(
        decision=decision, reason=f"{decision} {version}", version=version, when="t",
        target="http://x", champion=champion, evidence="production", figures=figures,
        run="Deployment/1",
    )  # fmt: skip


def test_every_event_is_kept_newest_first(client: Any) -> None:
    start = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    roles = {"2": "challenger", "1": "champion"}
    record_event(client, "m", event("refused", "2", "1", rows=480), roles, start)
    record_event(client, "m", event("forced", "2", "1"), roles, start + timedelta(seconds=1))
    record_event(
        client, "m", event("rollback", "1", "2"), {"1": "restored", "2": "replaced"},
        start + timedelta(seconds=2),
    )  # fmt: skip

    history = deployment_history(client, "m")

    assert [e["decision"] for e in history] == ["rollback", "forced", "refused"]
    rollback, _, refused = history
    assert rollback["roles"] == {"1": "restored", "2": "replaced"}
    assert refused["roles"] == {"2": "challenger", "1": "champion"}
    assert refused["figures"] == {"rows": 480}
    assert refused["champion"] == "1" and refused["shadow"] is None
    assert refused["run"] == "Deployment/1" and refused["target"] == "http://x"
    assert refused["id"] == "20261201T120000000000Z"
    # Nothing overwritten: version 2 holds all three events in its own tags.
    tags = client.get_model_version("m", "2").tags
    assert sorted(v for k, v in tags.items() if k.endswith(".decision")) == [
        "forced",
        "refused",
        "rollback",
    ]
    assert deployment_history(client, "m", limit=1) == history[:1]
    assert deployment_history(client, "no-such-model") == []


def test_a_promoted_challenger_is_no_longer_the_challenger(client: Any) -> None:
    client.set_registered_model_alias("m", "challenger", "3")
    assert retire_challenger(client, "m", "2") is False
    assert str(client.get_model_version_by_alias("m", "challenger").version) == "3"
    assert retire_challenger(client, "m", "3") is True
    assert "challenger" not in client.get_registered_model("m").aliases
