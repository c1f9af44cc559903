"""Whether a registered version may replace the champion: evidence, comparison, decision.

The deployment pipeline asks this before anything that serves changes:

- the newest labelled production captures (at least `promotion.min_rows`) are scored
  by both versions, in this process, through the server's own validation and forward
  pass, and compared pair by pair (`promotion.rule`);
- with fewer labelled captures, the versions' cross-validated scores are compared
  instead (the tags the training pipeline sets, or its run's metrics), and the
  decision says so;
- with neither, nothing can be compared: the message says how to get evidence.

Scoring needs the `inference` package, which `common` never imports: the caller hands
in `load_scorer` (src/inference/scorer.py's), so this module stays plain and testable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from promotion.rule import PairedComparison, beats, compare_paired, paired_verdict

if TYPE_CHECKING:
    import pandas as pd

    from common.settings import PromotionSettings

# The newest labelled captures compared at most: enough for a tight paired test, and
# the size the comparison's speed target is set for (bench/comparison.py).
EVIDENCE_ROWS = 5000
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


class Scorer(Protocol):
    """What `inference.scorer.load_scorer` returns, as far as a comparison uses it."""

    features: Any  # has `columns` and `validate(rows) -> columns`

    def score(self, columns: Any) -> tuple[list[str], list[float]]: ...


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


@dataclass(frozen=True)
class CrossValidated:
    """A version's cross-validated accuracy, and where it was read."""

    accuracy: float
    std: float | None
    source: str  # "tags" or "training run"

    def describe(self) -> str:
        spread = "" if self.std is None else f" ± {self.std:.3f}"
        return f"{self.accuracy:.3f}{spread}"


# --- deciding ------------------------------------------------------------------------------


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


# --- evidence ------------------------------------------------------------------------------


def cross_validated_scores(client: Any, name: str, version: str) -> CrossValidated | None:
    """Version `version`'s cross-validated accuracy, or None when nothing recorded it.

    The training pipeline tags versions with `cv_accuracy` and `cv_accuracy_std`; older
    versions have only their training run's `cross_validation_accuracy` metrics.
    """
    from mlflow.exceptions import MlflowException

    model_version = client.get_model_version(name, version)
    tags = model_version.tags or {}
    try:
        if "cv_accuracy" in tags:
            std = tags.get("cv_accuracy_std")
            return CrossValidated(float(tags["cv_accuracy"]), _number(std), "tags")
    except ValueError:
        pass  # A tag someone wrote by hand; the run's metrics may still be there.
    if not model_version.run_id:
        return None
    try:
        metrics = client.get_run(model_version.run_id).data.metrics
    except MlflowException:
        return None
    if "cross_validation_accuracy" not in metrics:
        return None
    return CrossValidated(
        float(metrics["cross_validation_accuracy"]),
        _number(metrics.get("cross_validation_accuracy_std")),
        "training run",
    )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def prepare_scoring() -> None:
    """Import what unpickling a features transformer needs (scikit-learn), timed apart.

    Models logged with their `forward` artifact load without Keras; an older one
    imports Keras itself when `load_scorer` loads it.
    """
    import sklearn.compose
    import sklearn.impute
    import sklearn.pipeline
    import sklearn.preprocessing  # noqa: F401


def download_model(model_uri: str, directory: str | Path) -> Path:
    """A registered model's files, copied into `directory`; the model's own directory."""
    import mlflow

    from common.registry import quiet_downloads

    Path(directory).mkdir(parents=True, exist_ok=True)
    with quiet_downloads():
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(directory))
    return Path(path)


def predict_captures(scorer: Scorer, captures: pd.DataFrame) -> list[str]:
    """What `scorer` predicts for the captured inputs, validated as the server does."""
    present = [name for name in scorer.features.columns if name in captures.columns]
    columns = scorer.features.validate(captures[present])
    predictions, _ = scorer.score(columns)
    return [str(prediction) for prediction in predictions]


@dataclass(frozen=True)
class PairedRun:
    """A paired comparison on captures and where its time went (seconds per phase)."""

    comparison: PairedComparison
    seconds: dict[str, float]


def compare_on_captures(
    load_scorer: Callable[[Path], Scorer],
    champion_uri: str,
    challenger_uri: str,
    captures: pd.DataFrame,
    directory: str | Path,
) -> PairedRun:
    """Score `captures` (with `ground_truth`) with both models; compare them pair by pair.

    Each model is downloaded into `directory` and loaded with `load_scorer`: the
    validation, transform and forward pass the server runs, without a server.
    """
    if "ground_truth" not in captures.columns or captures["ground_truth"].isna().any():
        raise ValueError("every capture compared needs its ground truth (label them first).")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    directories = {
        role: download_model(uri, Path(directory) / role)
        for role, uri in (("champion", champion_uri), ("challenger", challenger_uri))
    }
    seconds["download"] = time.perf_counter() - started
    mark = time.perf_counter()
    scorers = {role: load_scorer(path) for role, path in directories.items()}
    seconds["load"] = time.perf_counter() - mark
    mark = time.perf_counter()
    predictions = {role: predict_captures(scorer, captures) for role, scorer in scorers.items()}
    seconds["score"] = time.perf_counter() - mark
    mark = time.perf_counter()
    truth = [str(label) for label in captures["ground_truth"]]
    comparison = compare_paired(truth, predictions["champion"], predictions["challenger"])
    seconds["compare"] = time.perf_counter() - mark
    seconds["total"] = time.perf_counter() - started
    return PairedRun(comparison, seconds)


# --- shadow checks -------------------------------------------------------------------------


def available_versions(client: Any, name: str) -> str:
    """The versions and aliases of `name`, for messages: `1, 2, 3 (aliases: champion=3)`."""
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    if not versions:
        return "none: no version is registered"
    aliases = getattr(client.get_registered_model(name), "aliases", None) or {}
    listed = ", ".join(map(str, versions))
    if aliases:
        named = ", ".join(f"{alias}={version}" for alias, version in sorted(aliases.items()))
        listed += f" (aliases: {named})"
    return listed


def input_columns(signature: Any) -> dict[str, str]:
    """A model signature's input columns, name -> type, in order."""
    if signature is None or signature.inputs is None:
        return {}
    columns = {}
    for column in signature.inputs.inputs:
        described = column.to_dict()
        columns[str(described.get("name"))] = json.dumps(
            {k: v for k, v in described.items() if k != "name"}, sort_keys=True
        )
    return columns


def schema_differences(served: Mapping[str, str], shadow: Mapping[str, str]) -> list[str]:
    """How the shadow's input columns differ from the served model's, one line per column."""
    differences = []
    for name in served:
        if name not in shadow:
            differences.append(f"{name} (only the served model takes it)")
        elif served[name] != shadow[name]:
            differences.append(f"{name} (served {served[name]}, shadow {shadow[name]})")
    differences += [f"{name} (only the shadow takes it)" for name in shadow if name not in served]
    return differences


# --- the card ------------------------------------------------------------------------------

HISTORY_COLUMNS = ("when", "decision", "version", "champion", "shadow", "evidence", "target")


def history_card(decision: Decision, history: list[dict[str, Any]]) -> list[Any]:
    """This run's decision with its figures, then the model's deployment history."""
    from metaflow.cards import Markdown, Table

    components: list[Any] = [
        Markdown(f"## Decision: {decision.decision}\n{decision.reason}."),
        Markdown(f"Evidence: **{decision.evidence}**."),
    ]
    if decision.figures:
        rows = [[name, _cell(value)] for name, value in sorted(decision.figures.items())]
        components.append(Table(rows, headers=["figure", "value"]))
    components.append(Markdown(f"## Deployment history ({len(history)} newest events)"))
    if history:
        rows = [
            [*(_cell(event.get(name)) for name in HISTORY_COLUMNS), event.get("reason") or ""]
            for event in history
        ]
        components.append(Table(rows, headers=[*HISTORY_COLUMNS, "reason"]))
    else:
        components.append(Markdown("Nothing recorded yet."))
    return components


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return str(value)
