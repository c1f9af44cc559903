"""Rows in, rows out (src/batch_scoring/rows.py): refused rows with their reasons, and
the rows the model cannot answer set aside while the rest are scored."""

from __future__ import annotations

import numpy as np
import pandas as pd

from batch_scoring.rows import OUT_OF_RANGE, ForwardProblem, rejects_frame, score_rows
from inference.features import Columns, InvalidInput
from inference.scorer import Scorer


class HugeValuesUnanswered(Scorer):
    """Answers every row but those whose `x` is huge, as `Scorer.score` refuses them."""

    def __init__(self) -> None:
        self.calls = 0

    def score(self, columns: Columns) -> tuple[list[str], list[float]]:
        self.calls += 1
        if (columns["x"] > 1e30).any():
            raise InvalidInput("Row 0: the values are too far out of range")
        return [f"class-{int(v)}" for v in columns["x"]], [0.5] * len(columns["x"])


def test_rows_the_model_cannot_answer_are_set_aside_and_the_rest_scored() -> None:
    values = np.array([0, 1, 1e40, 3, 4, 5, 1e40, 7], dtype="float64")
    scorer = HugeValuesUnanswered()
    predictions, confidences, answered = score_rows(scorer, {"x": values})
    assert answered == [0, 1, 3, 4, 5, 7]
    assert predictions == [f"class-{i}" for i in answered]
    assert len(confidences) == len(answered)
    assert scorer.calls < len(values) * 2  # halves, not row by row and then some
    assert score_rows(HugeValuesUnanswered(), {"x": values[:0]}) == ([], [], [])


def test_refused_rows_keep_their_values_as_text_and_their_place_in_the_input() -> None:
    frame = pd.DataFrame({"x": [1.0, "forty", np.nan], "c": ["a", "b", None]})
    problems = [ForwardProblem(1), ForwardProblem(2)]
    rejects = rejects_frame(frame, problems, first_row=100)
    assert rejects["row"].tolist() == [101, 102]
    assert rejects["x"].tolist() == ["forty", None]
    assert rejects["problem"].tolist() == [OUT_OF_RANGE, OUT_OF_RANGE]
    assert list(rejects.columns) == ["x", "c", "row", "field", "problem", "reason"]
