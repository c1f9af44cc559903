"""Champion against shadow on the same labelled rows, and whether the shadow is better.

When the model server runs a shadow beside the served model (the champion), every
captured row holds both answers. `shadow_comparison` compares the two on the labelled
rows both answered (a paired comparison, `promotion.rule.compare_paired`);
`challenger_finding` says whether the shadow beats the champion by the promotion rule
(`promotion.rule.paired_verdict`, the deployment pipeline's), and `shadow_figures`
gives the comparison as MLflow metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.capture import GROUND_TRUTH, PREDICTION

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import PromotionSettings
    from promotion.rule import PairedComparison


@dataclass(frozen=True)
class ShadowComparison:
    """The served model and its shadow on the labelled rows both were asked about.

    `rows` is every labelled row of the pair (`champion_version`, `shadow_version`);
    `missing` those the shadow did not answer (it failed, or was suspended); the paired
    figures (`comparison`) are on the others. Confusion matrices: rows are the true
    class, columns the predicted one, in the order of `classes`.
    """

    champion_version: str | None
    shadow_version: str
    rows: int
    missing: int
    left_out: int  # labelled shadow rows of other pairs (an earlier shadow or champion)
    comparison: PairedComparison | None
    classes: list[str]
    champion_confusion: list[list[int]]
    shadow_confusion: list[list[int]]

    def as_dict(self) -> dict[str, Any]:
        """Plain data: the Metaflow artifact, the MLflow JSON artifact, the card's input."""
        figures = {} if self.comparison is None else self.comparison.figures()
        return {
            "champion_version": self.champion_version,
            "shadow_version": self.shadow_version,
            "rows": self.rows,
            "missing": self.missing,
            "left_out": self.left_out,
            "paired": figures,
            "classes": self.classes,
            "champion_confusion": self.champion_confusion,
            "shadow_confusion": self.shadow_confusion,
        }


def shadow_comparison(captured: pd.DataFrame | None) -> ShadowComparison | None:
    """Champion against shadow on the labelled captured rows the shadow scored too.

    `captured` is what `Backend.load` returns, newest first. When the window holds
    several (served version, shadow version) pairs, the newest row's pair is compared:
    rows of another pair were answered by other models. None without shadow rows.
    """
    from promotion.rule import compare_paired

    if captured is None or "shadow_version" not in captured:
        return None
    labelled = captured[captured[GROUND_TRUTH].notna() & captured["shadow_version"].notna()]
    if not len(labelled):
        return None
    labelled = labelled.sort_values("created_at", ascending=False, kind="stable")
    newest = labelled.iloc[0]
    champion_version = _version(newest["model_version"])
    pair = _rows_of_pair(labelled, champion_version, newest["shadow_version"])
    answered = pair[pair["shadow_prediction"].notna()]
    truth = answered[GROUND_TRUTH].astype(str).tolist()
    champion = answered[PREDICTION].astype(str).tolist()
    shadow = answered["shadow_prediction"].astype(str).tolist()
    classes = sorted({*truth, *champion, *shadow})
    return ShadowComparison(
        champion_version=champion_version,
        shadow_version=str(newest["shadow_version"]),
        rows=len(pair),
        missing=len(pair) - len(answered),
        left_out=len(labelled) - len(pair),
        comparison=compare_paired(truth, champion, shadow) if truth else None,
        classes=classes,
        champion_confusion=_confusion_of_labels(truth, champion, classes),
        shadow_confusion=_confusion_of_labels(truth, shadow, classes),
    )


def _rows_of_pair(
    labelled: pd.DataFrame, champion_version: str | None, shadow_version: Any
) -> pd.DataFrame:
    """The rows the champion `champion_version` (None: unknown) served beside this shadow."""
    served = labelled["model_version"]
    same_champion = (
        served.isna() if champion_version is None else served.astype(str) == champion_version
    )
    return labelled[same_champion & (labelled["shadow_version"] == shadow_version)]


def _version(value: Any) -> str | None:
    import pandas as pd

    return None if pd.isna(value) else str(value)


def _confusion_of_labels(
    truth: list[str], predicted: list[str], classes: list[str]
) -> list[list[int]]:
    """`common.metrics.confusion_matrix` of labels, in the order of `classes`, as plain
    lists: the comparison is stored as JSON."""
    from common.metrics import confusion_matrix

    position = {name: index for index, name in enumerate(classes)}
    return confusion_matrix(
        [position[name] for name in truth], [position[name] for name in predicted], len(classes)
    ).tolist()


def challenger_finding(
    comparison: ShadowComparison | None, promotion: PromotionSettings
) -> dict[str, Any] | None:
    """Whether the shadow beats the champion by the promotion rule, and why.

    Kept apart from the alerts: a better challenger is news, not a failure. The rule
    is the deployment pipeline's (`promotion.rule.paired_verdict`). None without shadow rows.
    """
    from promotion.rule import paired_verdict

    if comparison is None:
        return None
    finding: dict[str, Any] = {
        "challenger_better": False,
        "shadow_version": comparison.shadow_version,
        "champion_version": comparison.champion_version,
    }
    paired = comparison.comparison
    if paired is None:
        return {
            **finding,
            "reason": f"the shadow answered none of the {comparison.rows} labelled rows "
            "(see its failures in the server log)",
            "summary": f"shadow v{comparison.shadow_version}: no answers to compare",
        }
    better, reason = paired_verdict(paired, promotion)
    summary = (
        f"challenger v{comparison.shadow_version} {paired.challenger_accuracy:.3f} vs "
        f"champion v{comparison.champion_version} {paired.champion_accuracy:.3f} on "
        f"{paired.rows} rows, p={paired.p_value:.2g}: "
        + ("challenger is better" if better else "not better")
        + f" ({reason})"
    )
    return {**finding, "challenger_better": better, "reason": reason, "summary": summary}


def shadow_figures(
    comparison: ShadowComparison | None, finding: dict[str, Any] | None
) -> dict[str, float]:
    """The comparison's figures as MLflow metrics of the monitoring run (none without)."""
    if comparison is None:
        return {}
    metrics = {
        "shadow_rows": float(comparison.rows),
        "shadow_missing": float(comparison.missing),
        "challenger_better": float(bool(finding and finding["challenger_better"])),
    }
    if comparison.comparison is not None:
        paired = comparison.comparison
        metrics.update(
            {
                "shadow_paired_rows": float(paired.rows),
                "shadow_champion_accuracy": paired.champion_accuracy,
                "shadow_accuracy": paired.challenger_accuracy,
                "shadow_difference": paired.difference,
                "shadow_p_value": paired.p_value,
            }
        )
    return metrics
