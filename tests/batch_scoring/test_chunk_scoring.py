"""batch_scoring.chunk_scoring: the prediction ids a retried chunk reproduces.

The retry itself, a chunk failing once under `--with retry` and its captures counted,
is a real run in tests/pipelines/test_scoring.py.
"""

from __future__ import annotations

import uuid

import pytest

from batch_scoring.chunk_scoring import chunk_prediction_ids

STARTED_MS = 1_765_000_000_123
RUN = "Scoring/1765000000123456"


def test_a_retry_of_a_chunk_gets_the_same_ids() -> None:
    first = chunk_prediction_ids(RUN, STARTED_MS, 3, [0, 1, 2, 5])
    assert chunk_prediction_ids(RUN, STARTED_MS, 3, [0, 1, 2, 5]) == first
    assert len(set(first)) == 4


def test_chunk_ids_are_uuid7_of_the_runs_start_and_increase_with_chunk_and_row() -> None:
    ids = chunk_prediction_ids(RUN, STARTED_MS, 0, [0, 99]) + chunk_prediction_ids(
        RUN, STARTED_MS, 1, [0, 7]
    )
    assert ids == sorted(ids) and len(set(ids)) == 4
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert int(value[:12], 16) == STARTED_MS  # what label_by_id reads the time from
    # A later run's ids sort after this one's, whatever its chunks and rows.
    later = chunk_prediction_ids("Scoring/2", STARTED_MS + 1, 0, [0])
    assert later[0] > max(ids)


def test_runs_starting_in_the_same_millisecond_get_different_ids() -> None:
    ours = set(chunk_prediction_ids(RUN, STARTED_MS, 0, range(1000)))
    others = [f"Scoring/{n}" for n in range(50)]
    for other in others:
        assert not ours & set(chunk_prediction_ids(other, STARTED_MS, 0, range(1000)))


def test_ids_past_their_bits_are_refused_naming_the_parameter() -> None:
    with pytest.raises(ValueError, match="raise --chunk-rows"):
        chunk_prediction_ids(RUN, STARTED_MS, 1 << 16, [0])
    with pytest.raises(ValueError, match="lower --chunk-rows"):
        chunk_prediction_ids(RUN, STARTED_MS, 0, [1 << 30])
