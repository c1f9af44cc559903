"""What the deployment pipeline does with the version asked for, and the words it says why.

A `Decision` is one of the status names below (the audit trail records them), a reason
a person reads, the kind of evidence it rests on and the figures behind it. The
functions here turn what was weighed (a paired comparison, cross-validated scores,
nothing) into that decision with the promotion rule (`promotion.rule`); which evidence
is weighed is the gate's choice (`promotion.gate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from promotion.rule import PairedComparison, beats, paired_verdict

if TYPE_CHECKING:
    from common.settings import PromotionSettings
    from promotion.evidence import CrossValidated

FORCE_HINT = "--force to deploy anyway"
LABELLING_HINT = (
    "label captured predictions with their real outcomes (`Backend.label_by_id`; "
    "`uv run src/pipelines/traffic.py run --mode labels` simulates labels)"
)

# Decisions, as the audit trail records them.
PROMOTED = "promoted"
REFUSED = "refused"
FORCED = "forced"
ROLLBACK = "rollback"
REDEPLOYED = "redeployed"
SHADOW = "shadow"


@dataclass(frozen=True)
class Decision:
    """What the deployment pipeline does with the version asked for, and why.

    `evidence`: `production` (paired, on labelled captures), `cross-validation`,
    or `none`; `figures`: the numbers behind it, JSON-ready.
    """

    decision: str
    reason: str
    evidence: str = "none"
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return self.decision == REFUSED


def without_comparison(
    requested: str | None, version: str, champion: str | None, previous_alias: str
) -> Decision | None:
    """The decision for a request that needs no comparison, or None if one is needed.

    A rollback (the `previous` alias asked for by name), a redeployment of the champion
    and a first deployment (no champion yet) are taken as asked.
    """
    if requested == previous_alias:
        return Decision(ROLLBACK, f"rollback to version {version} (--model-version {requested})")
    if champion is None:
        return Decision(PROMOTED, f"version {version} deployed: there was no champion yet")
    if champion == version:
        return Decision(REDEPLOYED, f"version {version} is the champion: no comparison needed")
    return None


def _settings_figures(settings: PromotionSettings) -> dict[str, Any]:
    return {
        "min_rows": settings.min_rows,
        "min_gain": settings.min_gain,
        "max_p_value": settings.max_p_value,
    }


def _verdict(won: bool, why: str) -> str:
    return f"promoted ({why})" if won else f"not promoted ({why}); {FORCE_HINT}"


def judge_paired(
    comparison: PairedComparison, challenger: str, champion: str, settings: PromotionSettings
) -> Decision:
    """The promotion rule applied to a paired comparison on labelled captures."""
    won, why = paired_verdict(comparison, settings)
    reason = (
        f"challenger v{challenger} {comparison.challenger_accuracy:.3f} vs champion "
        f"v{champion} {comparison.champion_accuracy:.3f} on {comparison.rows} rows, "
        f"p={comparison.p_value:.2g}: {_verdict(won, why)}"
    )
    figures = {**comparison.figures(), **_settings_figures(settings)}
    return Decision(PROMOTED if won else REFUSED, reason, "production", figures)


def judge_cross_validated(
    challenger_scores: CrossValidated,
    champion_scores: CrossValidated,
    challenger: str,
    champion: str,
    labelled_rows: int,
    settings: PromotionSettings,
) -> Decision:
    """The promotion rule on cross-validated scores, for want of labelled captures.

    Those scores come from different folds of different data: no paired test, hence
    no p-value. With `max_p_value` set the rule cannot hold, and the reason says so.
    """
    difference = challenger_scores.accuracy - champion_scores.accuracy
    won, why = beats(difference, None, settings.min_gain, settings.max_p_value)
    if not won and settings.max_p_value is not None and difference >= settings.min_gain - 1e-12:
        why = (
            "cross-validated scores give no p-value to hold against promotion.max_p_value "
            f"{settings.max_p_value:g}"
        )
    reason = (
        f"only {labelled_rows} labelled captures (promotion.min_rows is {settings.min_rows}), "
        f"so cross-validated scores were compared: challenger v{challenger} "
        f"{challenger_scores.describe()} vs champion v{champion} "
        f"{champion_scores.describe()}: {_verdict(won, why)}"
    )
    figures = {
        "labelled_rows": labelled_rows,
        "challenger_cv_accuracy": challenger_scores.accuracy,
        "challenger_cv_accuracy_std": challenger_scores.std,
        "champion_cv_accuracy": champion_scores.accuracy,
        "champion_cv_accuracy_std": champion_scores.std,
        "difference": difference,
        "scores_from": {"challenger": challenger_scores.source, "champion": champion_scores.source},
        **_settings_figures(settings),
    }
    return Decision(PROMOTED if won else REFUSED, reason, "cross-validation", figures)


def no_evidence(
    missing: list[str], challenger: str, champion: str, labelled_rows: int, min_rows: int
) -> Decision:
    """A refusal for want of anything to compare; it says how to get evidence."""
    reason = (
        f"challenger v{challenger} cannot be compared with champion v{champion}: only "
        f"{labelled_rows} labelled captures (promotion.min_rows is {min_rows}) and no "
        f"cross-validated accuracy for version {' nor '.join(missing)} (tag `cv_accuracy` "
        "or metric `cross_validation_accuracy` on its training run). To compare them, "
        f"{LABELLING_HINT}, or lower promotion.min_rows; {FORCE_HINT}"
    )
    figures = {"labelled_rows": labelled_rows, "min_rows": min_rows, "missing_scores": missing}
    return Decision(REFUSED, reason, "none", figures)


def comparison_failed(error: Exception) -> Decision:
    """A refusal because the comparison itself failed (what `--force` then overrides)."""
    return Decision(REFUSED, f"the comparison failed: {error}")


def forced(decision: Decision, version: str) -> Decision:
    """`--force`: deploy whatever the comparison said, keeping what it said."""
    said = decision.reason.replace(f"; {FORCE_HINT}", "")
    return Decision(
        FORCED,
        f"version {version} deployed with --force; the comparison said: {said}",
        decision.evidence,
        decision.figures,
    )


def refusal_message(decision: Decision) -> str:
    """The line a refused run stops with."""
    return f"{decision.reason[:1].upper()}{decision.reason[1:]}. Nothing serving was changed."


def shadowing(shadow_version: str, served_version: str) -> Decision:
    """The decision to let `shadow_version` score every request beside the served one."""
    return Decision(
        SHADOW,
        f"version {shadow_version} scores every request in shadow beside version {served_version}",
    )


def rolled_back(failure: str, deployed: Decision) -> Decision:
    """The automatic rollback after `deployed` failed to serve, keeping its evidence."""
    reason = f"{failure} (it was deployed as {deployed.reason})"
    return Decision(ROLLBACK, reason, deployed.evidence, deployed.figures)
