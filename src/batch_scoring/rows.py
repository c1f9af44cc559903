"""Rows in, rows out: the valid rows of a chunk, the refused ones with their reasons, and
the scorer's answers for the valid ones.

Every row goes through the model server's own checks (`inference.features`) and scorer
(`inference.scorer`): a row the server would refuse is refused here too, with the same
reason, and lands in the rejects file instead of the output. So does a CSV row whose
number of fields is not the header's (`reading.RaggedRow`), quoted as it was written.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from inference.features import Columns, RowProblem
    from inference.scorer import Scorer

# What a rejects file holds besides the input columns (as text, as they came).
REJECT_COLUMNS = ("row", "field", "problem", "reason")
# A refused kind of the forward pass, beside inference.features' kinds.
OUT_OF_RANGE = "out of range"
# A CSV row with more or fewer fields than the header.
WRONG_FIELD_COUNT = "wrong number of fields"


@dataclass(frozen=True)
class ForwardProblem:
    """A row the model could not answer (its values overflow the network)."""

    row: int
    field: str = ""
    kind: str = OUT_OF_RANGE
    reason: str = (
        "the values are too far out of range for the model to answer; check the units "
        "of the numbers."
    )


@dataclass(frozen=True)
class RaggedProblem:
    """A CSV row whose fields cannot be matched to the columns: too many or too few."""

    row: int
    reason: str
    field: str = ""
    kind: str = WRONG_FIELD_COUNT


def ragged_problem(position: int, fields: int, columns: int, text: str) -> RaggedProblem:
    """Why the row at `position`, of `fields` fields (written `text`), is refused."""
    return RaggedProblem(
        position,
        f"it has {fields} fields where the header has {columns} columns: its values cannot "
        f"be matched to the columns (a missing or extra delimiter, or a comma in an "
        f"unquoted value?). The row: {text!r}",
    )


def ragged_rejects(
    input_columns: Sequence[str], problems: Sequence[RaggedProblem], first_row: int
) -> pd.DataFrame:
    """Ragged rows as rejects: no input column holds their values (the reason quotes
    the row); `row` is each one's place in the whole input."""
    import pandas as pd

    empty = pd.Series([None] * len(problems), dtype=object)
    return pd.DataFrame({
        **{column: empty for column in input_columns},
        "row": [first_row + problem.row for problem in problems],
        "field": [problem.field for problem in problems],
        "problem": [problem.kind for problem in problems],
        "reason": [problem.reason for problem in problems],
    })  # fmt: skip


def valid_frame(frame: pd.DataFrame, kept: np.ndarray, columns: Columns) -> pd.DataFrame:
    """The kept rows of `frame`, their features as validated (numbers as float64)."""
    valid = frame.iloc[kept].reset_index(drop=True)
    for name, values in columns.items():
        if name in valid:
            valid[name] = values
    return valid


def rejects_frame(
    frame: pd.DataFrame, problems: Sequence[RowProblem | ForwardProblem], first_row: int
) -> pd.DataFrame:
    """Refused rows with their input values as text (as they came) and why each was refused.

    `problems` give each row's position in `frame`; `row` in the result is the row's
    position in the whole input (0 is the first data row).
    """
    import pandas as pd

    positions = [problem.row for problem in problems]
    rejected = frame.iloc[positions].reset_index(drop=True)
    texts = {
        column: [None if _absent(value) else str(value) for value in rejected[column]]
        for column in rejected.columns
    }
    details = {
        "row": [first_row + position for position in positions],
        "field": [problem.field for problem in problems],
        "problem": [problem.kind for problem in problems],
        "reason": [problem.reason for problem in problems],
    }
    return pd.DataFrame({**texts, **details})


def no_rejects(input_columns: Sequence[str]) -> pd.DataFrame:
    """An empty rejects table, so a rerun never leaves an older run's refusals beside it."""
    import pandas as pd

    columns = [*input_columns, *REJECT_COLUMNS]
    frame = pd.DataFrame({column: pd.Series(dtype="string") for column in columns})
    return frame.astype({"row": "int64"})


def reject_counts(
    problems: Sequence[RowProblem | ForwardProblem | RaggedProblem],
) -> Counter[tuple[str, str]]:
    """Refused rows by (field, kind of problem)."""
    return Counter((problem.field, problem.kind) for problem in problems)


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def score_rows(scorer: Scorer, columns: Columns) -> tuple[list[Any], list[float], list[int]]:
    """`scorer.score` on validated rows, setting aside the rows it cannot answer.

    The server refuses a whole request for one such row; here the rows around it are
    still scored: halves are scored until each unanswerable row stands alone (few
    extra forward passes: it is rare). Returns (predictions, confidences, positions of
    the answered rows).
    """
    from inference.features import InvalidInput

    count = len(next(iter(columns.values()))) if columns else 0
    predictions: list[Any] = []
    confidences: list[float] = []
    answered: list[int] = []
    pending = [(0, count)]
    while pending:
        start, stop = pending.pop()
        if start == stop:
            continue
        part = {name: values[start:stop] for name, values in columns.items()}
        try:
            scored, confidence = scorer.score(part)
        except InvalidInput:
            if stop - start > 1:
                middle = (start + stop) // 2
                pending += [(middle, stop), (start, middle)]  # the first half next
            continue
        predictions += scored
        confidences += confidence
        answered += range(start, stop)
    return predictions, confidences, answered
