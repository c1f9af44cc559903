"""A chunk task's job: score the chunk's staged rows as the server would, stage its part
of the output (and the rows no forward pass can answer, as refused), and slice the
answers for capture.

The capture itself is the flow's: it holds the backend, which a stage does not import.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch_scoring.model_files import load_packed_scorer
from batch_scoring.output import scored_frame, stage_part
from batch_scoring.rows import ForwardProblem, rejects_frame, score_rows
from inference.capture import uuid7

if TYPE_CHECKING:
    import pandas as pd

    from inference.features import Columns, FeatureTransform

# Rows per capture transaction: the Local store's JSON records of 100,000 rows take
# ~150 MB beside the chunk's own rows.
CAPTURE_ROWS_PER_CALL = 25_000
# The column `start` adds to each staged row: its place in the input, for the rejects.
INPUT_ROW = "__row__"
# How a chunk's prediction ids fill the 62 bits UUIDv7 leaves after its variant:
# 16 bits of the run's hash (12 more in rand_a), the chunk's index, the row's position.
_CHUNK_BITS, _ROW_BITS = 16, 30


@dataclass
class ScoredChunk:
    """A chunk's answers, where its parts were staged, and what capture needs."""

    scored_part: str
    output: pd.DataFrame  # the scored rows, as staged
    features: FeatureTransform
    columns: Columns  # every staged row's validated features
    answered: list[int]  # positions, in `columns`, of the rows in `output`
    unanswered_part: str | None = None
    unanswered_rows: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)


def chunk_prediction_ids(
    run: str, started_ms: int, chunk_index: int, positions: Sequence[int]
) -> list[str]:
    """The prediction ids of a chunk's rows at `positions`: UUIDv7s (RFC 9562) as 32 hex
    digits that a retry of the chunk reproduces, so that its captures replace the
    failed attempt's instead of adding to them (remote workers run `--with retry`).

    Each begins with `started_ms`, the millisecond the run started (time-ordered, as
    the capture stores and SageMaker's `label_by_id` expect), then 28 bits of a hash of
    `run` (two runs starting in the same millisecond stay apart), the chunk's index and
    the row's position: increasing with both, so a chunk lands at the store index's end.
    """
    import hashlib

    if not 0 <= chunk_index < 1 << _CHUNK_BITS:
        raise ValueError(
            f"chunk {chunk_index} is past the {1 << _CHUNK_BITS} chunks a run's prediction "
            "ids can number: raise --chunk-rows."
        )
    if len(positions) and max(positions) >= 1 << _ROW_BITS:
        raise ValueError(
            f"a chunk holds at most {1 << _ROW_BITS} rows a run's prediction ids can number, "
            f"got row {max(positions)}: lower --chunk-rows."
        )
    digest = int.from_bytes(hashlib.blake2b(run.encode(), digest_size=4).digest())
    random_a, run_bits = digest >> 20, (digest >> 4) & 0xFFFF
    base = uuid7(
        started_ms, random_a, run_bits << (_CHUNK_BITS + _ROW_BITS) | chunk_index << _ROW_BITS
    )
    return [f"{base + position:032x}" for position in positions]


def score_staged_chunk(
    chunk: dict[str, Any],
    model_files: dict[str, bytes],
    feature_names: Sequence[str],
    staging: str,
    model_version: str,
    run: tuple[str, int],
) -> ScoredChunk:
    """Read the chunk's staged rows, validate, score, and stage its part of the output.

    `run` is the run's (pathspec, start millisecond): the answers' ids come from it
    (`chunk_prediction_ids`), the same on every attempt.
    """
    import pandas as pd

    from batch_scoring.locations import fetch

    index = chunk["index"]
    with tempfile.TemporaryDirectory() as directory:
        scorer = load_packed_scorer(model_files, directory)
        rows = pd.read_parquet(fetch(chunk["location"], directory))
        columns = scorer.features.validate(rows[list(feature_names)])
        predictions, confidences, answered = score_rows(scorer, columns)
        output = scored_frame(
            rows.iloc[answered].drop(columns=INPUT_ROW), predictions, confidences,
            chunk_prediction_ids(*run, index, answered), model_version,
            pd.Timestamp.now(tz="UTC"),
        )  # fmt: skip
        scored = ScoredChunk(
            scored_part=stage_part(output, staging, f"scored-{index:05d}.parquet", directory),
            output=output,
            features=scorer.features,
            columns=columns,
            answered=answered,
            class_counts=dict(Counter(predictions)),
        )
        if len(answered) < len(rows):  # rows no forward pass can answer: refused too
            unanswered = rows.drop(index=answered)
            name = f"unanswered-{index:05d}.parquet"
            scored.unanswered_part = stage_part(
                unanswered_rejects(unanswered), staging, name, directory
            )
            scored.unanswered_rows = len(unanswered)
    return scored


def unanswered_rejects(refused: pd.DataFrame) -> pd.DataFrame:
    """Rows the model could not answer, as rejects at their places in the input."""
    problems = [ForwardProblem(position) for position in range(len(refused))]
    rejects = rejects_frame(refused.drop(columns=INPUT_ROW), problems, 0)
    rejects["row"] = refused[INPUT_ROW].tolist()
    return rejects


def capture_slices(
    scored: ScoredChunk, rows_per_slice: int = CAPTURE_ROWS_PER_CALL
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """The answered rows' features and outputs, for the backend's `save`, in slices: the
    records a capture builds cost more memory than the rows."""
    outputs = scored.output[["prediction", "confidence", "id", "model_version"]]
    answered = scored.answered
    for start in range(0, len(answered), rows_per_slice):
        positions = answered[start : start + rows_per_slice]
        features = scored.features.frame({n: v[positions] for n, v in scored.columns.items()})
        part = outputs.iloc[start : start + rows_per_slice]
        yield features, part.reset_index(drop=True)
