"""The run's card, drawn by `assemble`: rows scored and refused by reason, classes
against the training data, throughput and the quality gate's verdict."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any


def merged_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The chunk tasks' rows per class, added up."""
    total: dict[str, int] = {}
    for chunk in counts:
        for name, count in chunk.items():
            total[name] = total.get(name, 0) + count
    return total


def class_distribution(
    scored: Counter[str] | dict[str, int], training: Sequence[Any] | None
) -> list[list[Any]]:
    """Rows per class, scored and in the training data, each also as a share."""
    trained = Counter(str(label) for label in training) if training is not None else Counter()
    scored_total, trained_total = sum(scored.values()), sum(trained.values())
    table = []
    for name in sorted(set(scored) | set(trained)):
        table.append(
            [
                name,
                int(scored.get(name, 0)),
                _share(scored.get(name, 0), scored_total),
                int(trained.get(name, 0)),
                _share(trained.get(name, 0), trained_total),
            ]
        )
    return table


def _share(count: int, total: int) -> str:
    return f"{count / total:.1%}" if total else "-"


def scoring_card(
    scored: int,
    rows: int,
    reasons: dict[tuple[str, str], int],
    classes: dict[str, int],
    training_classes: Sequence[Any] | None,
    seconds: float,
    gate: str,
    drift: bool,
    output: str,
) -> list[Any]:
    """The run's card: rows scored and refused by reason, classes against training,
    throughput and the quality gate's verdict."""
    from metaflow.cards import Markdown, Table

    refused = sum(reasons.values())
    rate = scored / seconds if seconds else 0.0
    components = [
        Markdown(
            f"# Batch scoring\n**{scored}** of {rows} rows scored, **{refused}** refused; "
            f"output `{output}`.\n\n**Throughput**: {rate:,.0f} rows/s ({seconds:.1f} s "
            f"from the start of the run to the output in place)."
        ),
        Markdown(f"## Quality gate\n{'**Drift.** ' if drift else ''}{gate}"),
        Markdown("## Refused rows, by reason"),
    ]
    if reasons:
        body = [[field or "(all)", kind, count] for (field, kind), count in sorted(reasons.items())]
        components.append(Table(body, headers=["field", "problem", "rows"]))
    else:
        components.append(Markdown("None."))
    components += [
        Markdown("## Classes, scored and in the training data"),
        Table(
            class_distribution(classes, training_classes),
            headers=["class", "scored rows", "share", "training rows", "training share"],
        ),
    ]
    return components
