"""The promotion gate: whether the version asked for may replace the champion.

The deployment pipeline asks this before anything that serves changes:

- a rollback (the `previous` alias), a redeployment of the champion and a first
  deployment need no comparison and are taken as asked;
- with enough labelled production captures (`promotion.rule.has_enough_rows`), both
  versions score them and the paired comparison decides;
- with fewer, the versions' cross-validated scores are compared instead, and the
  decision says so;
- with neither, nothing can be compared: the refusal says how to get evidence.

`--force` deploys whatever the comparison said (or a comparison that failed), and the
decision keeps what it said.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.registry import PREVIOUS, model_uri
from promotion.decision import (
    Decision,
    comparison_failed,
    forced,
    judge_cross_validated,
    judge_paired,
    no_evidence,
    without_comparison,
)
from promotion.errors import PromotionError
from promotion.evidence import (
    compare_on_captures,
    cross_validated_scores,
    labelled_captures,
    prepare_scoring,
)
from promotion.rule import has_enough_rows

if TYPE_CHECKING:
    import pandas as pd

    from backends.base import Backend
    from common.settings import PromotionSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionRequest:
    """Version `version` of model `name` asked to replace the champion (None: there is none).

    `requested`: what `--model-version` said (only the `previous` alias rolls back);
    `force`: deploy whatever the comparison says.
    """

    name: str
    version: str
    champion: str | None
    requested: str | None
    force: bool = False


def decide_promotion(
    client: Any, backend: Backend, request: PromotionRequest, settings: PromotionSettings
) -> Decision:
    """The decision about `request`; PromotionError when a comparison fails unforced."""
    decision = without_comparison(request.requested, request.version, request.champion, PREVIOUS)
    if decision is not None:
        return decision
    try:
        decision = weigh_evidence(client, backend, request, settings)
    except PromotionError as error:
        if not request.force:
            raise
        logger.warning("The comparison failed (%s); deploying anyway (--force).", error)
        decision = comparison_failed(error)
    return forced(decision, request.version) if request.force else decision


def weigh_evidence(
    client: Any, backend: Backend, request: PromotionRequest, settings: PromotionSettings
) -> Decision:
    """Challenger against champion: paired on labelled captures, else cross-validated."""
    captures = labelled_captures(backend, settings)
    rows = 0 if captures is None else len(captures)
    if captures is not None and has_enough_rows(rows, settings):
        return judge_on_captures(request, captures, settings)
    logger.warning(
        "Only %d labelled captures (promotion.min_rows is %d): comparing cross-validated "
        "scores instead.",
        rows,
        settings.min_rows,
    )
    return judge_on_cross_validated_scores(client, request, rows, settings)


def judge_on_captures(
    request: PromotionRequest, captures: pd.DataFrame, settings: PromotionSettings
) -> Decision:
    """Both versions score the labelled `captures`; the paired comparison decides."""
    from mlflow.exceptions import MlflowException

    assert request.champion is not None, "a comparison needs a champion"
    prepare_scoring()
    champion_uri = model_uri(request.name, request.champion)
    challenger_uri = model_uri(request.name, request.version)
    try:
        with tempfile.TemporaryDirectory() as directory:
            paired = compare_on_captures(champion_uri, challenger_uri, captures, directory)
    except (ValueError, OSError, MlflowException) as error:
        raise PromotionError(
            f"Comparing version {request.version} with champion {request.champion} on "
            f"{len(captures)} labelled captures failed: {error}. Nothing serving was changed."
        ) from None
    logger.info(
        "Compared on %d labelled captures in %.2f s (%s).",
        len(captures),
        paired.seconds["total"],
        ", ".join(f"{k} {v:.2f} s" for k, v in paired.seconds.items() if k != "total"),
    )
    return judge_paired(paired.comparison, request.version, request.champion, settings)


def judge_on_cross_validated_scores(
    client: Any, request: PromotionRequest, labelled_rows: int, settings: PromotionSettings
) -> Decision:
    """The versions' cross-validated scores decide; a refusal when one has none."""
    assert request.champion is not None, "a comparison needs a champion"
    pair = (request.version, request.champion)
    scores = {version: cross_validated_scores(client, request.name, version) for version in pair}
    missing = [version for version, score in scores.items() if score is None]
    challenger_scores, champion_scores = scores[request.version], scores[request.champion]
    if challenger_scores is None or champion_scores is None:
        return no_evidence(
            missing, request.version, request.champion, labelled_rows, settings.min_rows
        )
    return judge_cross_validated(
        challenger_scores, champion_scores, request.version, request.champion, labelled_rows,
        settings,
    )  # fmt: skip
