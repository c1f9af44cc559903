"""The figures of the batch-scoring run's card (src/batch_scoring/scoring_card.py); the
card itself is checked on a real run (tests/pipelines/test_scoring.py)."""

from __future__ import annotations

from batch_scoring.scoring_card import class_distribution, merged_counts


def test_the_class_distribution_compares_scored_with_training() -> None:
    table = class_distribution({"a": 3, "b": 1}, ["a", "c", "c", "a"])
    assert table == [
        ["a", 3, "75.0%", 2, "50.0%"],
        ["b", 1, "25.0%", 0, "0.0%"],
        ["c", 0, "0.0%", 2, "50.0%"],
    ]


def test_the_chunks_class_counts_add_up() -> None:
    assert merged_counts([{"a": 2, "b": 1}, {}, {"b": 3, "c": 1}]) == {"a": 2, "b": 4, "c": 1}
