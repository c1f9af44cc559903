"""`start`'s split of the input: read chunk by chunk, every row checked as the server
checks it, each chunk's valid rows staged for its own scoring task and the refused ones
set aside with their reasons, and a sample of the valid rows kept for the gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from batch_scoring.output import stage_part
from batch_scoring.quality_gate import Sample
from batch_scoring.reading import InputFile, numbers_from_text, read_chunks
from batch_scoring.rows import reject_counts, rejects_frame, valid_frame
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

    def count_refusals(self, problems: list[RowProblem]) -> None:
        for key, count in reject_counts(problems).items():
            self.reject_reasons[key] = self.reject_reasons.get(key, 0) + count
        self.examples += [f"row {p.row + self.rows}: {p.reason}" for p in problems[:3]]
        self.rejected_rows += len(problems)

    def refusal_warnings(self) -> list[str]:
        """What the log says of the refused rows: counts by reason, then a few examples."""
        counts = [
            f"Refused {count} row(s): {kind} in field {name!r}."
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
    for index, chunk in enumerate(read_chunks(source.path, source.file_format, chunk_rows)):
        if source.file_format == "csv":
            chunk = numbers_from_text(chunk, schema.numeric_features)
        columns, kept, problems = features.validate_rows(chunk)
        valid = valid_frame(chunk, kept, columns)
        valid["__row__"] = kept + staged.rows  # the row's place in the input, for rejects
        sample.add(valid[schema.features])
        location = stage_part(valid, staging, f"chunk-{index:05d}.parquet", directory)
        staged.chunks.append({"index": index, "rows": len(valid), "location": location})
        if problems:
            rejects = rejects_frame(chunk, problems, staged.rows)
            name = f"rejects-{index:05d}.parquet"
            staged.rejects_parts.append(stage_part(rejects, staging, name, directory))
            staged.count_refusals(problems)
        staged.rows += len(chunk)
    if not staged.chunks:
        staged.chunks = [dict(NO_CHUNK)]
    staged.sample = sample.rows
    return staged
