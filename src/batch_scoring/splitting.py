"""`start`'s split of the input: read chunk by chunk, every row checked as the server
checks it, each chunk's valid rows staged for its own scoring task and the refused ones
set aside with their reasons, and a sample of the valid rows kept for the gate.

A CSV row whose number of fields is not the header's is refused there too, at its
place in the input: its values are never shifted into other columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from batch_scoring.output import stage_part
from batch_scoring.quality_gate import Sample
from batch_scoring.reading import InputChunk, InputFile, numbers_from_text, read_chunks
from batch_scoring.rows import (
    RaggedProblem,
    ragged_problem,
    ragged_rejects,
    reject_counts,
    rejects_frame,
    valid_frame,
)
from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

    from inference.features import FeatureTransform, RowProblem

# Refused rows quoted in the log, with their reasons (all are in the rejects file).
LOGGED_EXAMPLES = 5
# A chunk task's place in the foreach when the input has no row: it has nothing to score.
NO_CHUNK = {"index": 0, "rows": 0, "location": None}


@dataclass
class StagedInput:
    """The input as the chunk tasks find it in the staging area, and what was refused."""

    chunks: list[dict[str, Any]] = field(default_factory=list)  # one per scoring task
    rejects_parts: list[str] = field(default_factory=list)
    rows: int = 0
    rejected_rows: int = 0
    reject_reasons: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    sample: pd.DataFrame | None = None  # the gate's sample of the valid rows

    def count_refusals(self, problems: list[RowProblem | RaggedProblem]) -> None:
        """Count refusals whose `row` is their place among the chunk's rows."""
        for key, count in reject_counts(problems).items():
            self.reject_reasons[key] = self.reject_reasons.get(key, 0) + count
        self.examples += [f"row {p.row + self.rows}: {p.reason}" for p in problems[:3]]
        self.rejected_rows += len(problems)

    def refusal_warnings(self) -> list[str]:
        """What the log says of the refused rows: counts by reason, then a few examples."""
        counts = [
            f"Refused {count} row(s): {kind}{f' in field {name!r}' if name else ''}."
            for (name, kind), count in sorted(self.reject_reasons.items())
        ]
        return counts + [f"Refused {example}" for example in self.examples[:LOGGED_EXAMPLES]]


def stage_chunks(
    source: InputFile,
    features: FeatureTransform,
    schema: DatasetSchema,
    *,
    staging: str,
    chunk_rows: int,
    sample_size: int,
    directory: str,
) -> StagedInput:
    """Validate each chunk of the input; stage its valid rows and its refused ones."""
    staged = StagedInput()
    sample = Sample(sample_size)
    chunks = read_chunks(source.path, source.file_format, chunk_rows, source.name)
    for index, chunk in enumerate(chunks):
        frame = chunk.rows
        if source.file_format == "csv":
            frame = numbers_from_text(frame, schema.numeric_features)
        columns, kept, problems = features.validate_rows(frame)
        valid = valid_frame(frame, kept, columns)
        valid["__row__"] = chunk.positions[kept] + staged.rows  # its place, for rejects
        sample.add(valid[schema.features])
        location = stage_part(valid, staging, f"chunk-{index:05d}.parquet", directory)
        staged.chunks.append({"index": index, "rows": len(valid), "location": location})
        rejects, refused = chunk_rejects(chunk, frame, problems, source.columns, staged.rows)
        if rejects is not None:
            name = f"rejects-{index:05d}.parquet"
            staged.rejects_parts.append(stage_part(rejects, staging, name, directory))
            staged.count_refusals(refused)
        staged.rows += chunk.size
    if not staged.chunks:
        staged.chunks = [dict(NO_CHUNK)]
    staged.sample = sample.rows
    return staged


def chunk_rejects(
    chunk: InputChunk,
    frame: pd.DataFrame,
    problems: list[RowProblem],
    input_columns: list[str],
    first_row: int,
) -> tuple[pd.DataFrame | None, list[RowProblem | RaggedProblem]]:
    """A chunk's refused rows in the input's order (None without any): those the checks
    refused, their values as text, and the ragged ones; and each one's problem at its
    place among the chunk's rows.

    `problems` give rows by their place in `frame`, the chunk's well-formed rows.
    """
    import pandas as pd

    placed = [replace(problem, row=int(chunk.positions[problem.row])) for problem in problems]
    width = len(input_columns)
    ragged = [ragged_problem(r.position, r.fields, width, r.text) for r in chunk.ragged]
    if not placed and not ragged:
        return None, []
    parts = []
    if problems:
        checked = rejects_frame(frame, problems, first_row)
        checked["row"] = [first_row + problem.row for problem in placed]
        parts.append(checked)
    if ragged:
        parts.append(ragged_rejects(input_columns, ragged, first_row))
    rejects = pd.concat(parts, ignore_index=True).sort_values("row", kind="stable")
    refused: list[RowProblem | RaggedProblem] = [*placed, *ragged]
    return rejects.reset_index(drop=True), sorted(refused, key=lambda problem: problem.row)
