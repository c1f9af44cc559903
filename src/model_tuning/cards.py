"""The tuning pipeline's card: the verdict, every trial, and where the objective came from.

- the objective per trial (pruned trials in grey, at their last running mean) and the
  best so far;
- each searched hyperparameter against the objective;
- parameter importance (`search.parameter_importance`);
- a table of the trials and the defaults.

Charts are SVG (`model_tuning.charts`), put on the card as images, as the training
card's curves are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from model_tuning.search import is_better, searched_values

if TYPE_CHECKING:
    from common.settings import TuningSettings
    from model_tuning.comparison import Verdict
    from model_tuning.trials import TrialRecord


def verdict_summary(
    best: int | None, verdict: Verdict, trials: Sequence[TrialRecord], settings: TuningSettings
) -> list[Any]:
    """What the search found, and whether it recommends the winner or the defaults stand."""
    from metaflow.cards import Markdown

    pruned = sum(record.pruned for record in trials)
    lines = [
        f"## Hyperparameter search\n{len(trials)} trials ({pruned} pruned), objective: mean "
        f"fold {settings.objective}.",
    ]
    if best is None:
        lines.append("No trial ran every fold: **the defaults stand**.")
    else:
        winner = searched_values(trials[best], settings)
        lines.append(f"Best: trial {best}, `{_format(winner)}`.")
        decision = (
            "**Recommended** over the defaults" if verdict.recommended else "**The defaults stand**"
        )
        lines.append(
            f"{decision}: {verdict.reason} (corrected paired t-test on the "
            f"{len(verdict.default_scores)} folds)."
        )
    return [Markdown("\n\n".join(lines))]


def _format(values: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in values.items()
    )


def objective_chart(
    trials: Sequence[TrialRecord], baseline: TrialRecord, settings: TuningSettings
) -> list[Any]:
    """The objective per trial and the best so far, then each parameter against it."""
    from metaflow.cards import Image, Markdown

    from common.charts import svg_data_uri
    from model_tuning.charts import Scatter, scatter_svg

    objective = settings.objective
    values = [record.mean(objective) for record in trials]
    muted = [record.pruned for record in trials]
    best_so_far: list[tuple[float, float]] = []
    for number, (value, pruned) in enumerate(zip(values, muted, strict=True)):
        if not pruned and (not best_so_far or is_better(value, best_so_far[-1][1], objective)):
            best_so_far.append((number, value))
        elif best_so_far:
            best_so_far.append((number, best_so_far[-1][1]))
    per_trial = Scatter(
        f"{objective} per trial (defaults {baseline.mean(objective):.4f}), best so far",
        list(enumerate(values)),
        x_label="trial",
        muted=muted,
        line=best_so_far,
    )
    panels = [per_trial, *_parameter_panels(trials, values, muted, settings)]
    return [
        Markdown(f"### Mean fold {objective} of each trial (grey: pruned)"),
        Image(svg_data_uri(scatter_svg(panels))),
    ]


def _parameter_panels(
    trials: Sequence[TrialRecord],
    values: list[float],
    muted: list[bool],
    settings: TuningSettings,
) -> list[Any]:
    from model_tuning.charts import Scatter

    panels = []
    for name, searched in settings.parameters.ranges().items():
        chosen = [record.hyperparameters[name] for record in trials]
        names: list[str] = []
        if searched.choices is not None:
            names = [f"{choice:g}" for choice in searched.choices]
            chosen = [list(searched.choices).index(value) for value in chosen]
        panels.append(
            Scatter(
                f"{settings.objective} by {name}",
                list(zip(chosen, values, strict=True)),
                x_label=name,
                muted=muted,
                log_x=searched.log,
                x_names=names,
            )
        )
    return panels


def importance_chart(importance: dict[str, float]) -> list[Any]:
    """Parameter importance as bars, most important first."""
    from metaflow.cards import Image, Markdown

    from common.charts import svg_data_uri
    from model_tuning.charts import bars_svg

    if not importance:
        return [Markdown("### Parameter importance\nToo few finished trials to tell.")]
    ordered = dict(sorted(importance.items(), key=lambda item: -item[1]))
    return [
        Markdown("### Parameter importance (PED-ANOVA, finished trials)"),
        Image(svg_data_uri(bars_svg("importance", ordered))),
    ]


def trials_table(
    trials: Sequence[TrialRecord], baseline: TrialRecord, settings: TuningSettings
) -> list[Any]:
    """Every trial's searched values, mean accuracy and loss, folds run and state."""
    from metaflow.cards import Markdown, Table

    names = list(settings.parameters.ranges())
    rows = []
    for label, record in [("defaults", baseline), *enumerate(trials)]:
        values = [_cell(record.hyperparameters[name]) for name in names]
        state = "pruned" if record.pruned else "complete"
        scores = [f"{record.mean('accuracy'):.4f}", f"{record.mean('loss'):.4f}"]
        rows.append([label, *values, *scores, len(record.accuracy), state])
    headers = ["trial", *names, "accuracy", "loss", "folds", "state"]
    return [Markdown("### Trials"), Table(rows, headers=headers)]


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
