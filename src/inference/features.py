"""Request validation and a fast path for the fitted feature transformer.

scikit-learn's ColumnTransformer costs ~3.5 ms to transform one row, most of it
per-call bookkeeping, and pandas adds ~100 µs per column operation. The fitted pieces
we use (imputers, a scaler, a one-hot encoder) are a few array operations, so
`FeatureTransform` rebuilds them in numpy at load time, checks itself against
scikit-learn on sample rows, and falls back to scikit-learn for any transformer it
does not know. Rows travel as `Columns`: one numpy array per feature.

This module runs inside the serving process: numpy and pandas only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Columns = dict[str, np.ndarray]


class InvalidInput(ValueError):
    """A request the model cannot answer; the message names the row and field."""


# What is wrong with a refused row, as `RowProblem.kind`.
NOT_A_NUMBER = "not a number"
NOT_FINITE = "not a finite number"
UNKNOWN_CATEGORY = "unknown category"


@dataclass(frozen=True)
class RowProblem:
    """Why one row is refused: its position, the field, what kind of problem, the message.

    `reason` is what the server says after "Row N, " when it refuses that row.
    """

    row: int
    field: str
    kind: str
    reason: str


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@dataclass
class FeatureTransform:
    """The fitted ColumnTransformer as numpy operations, plus what valid input is."""

    transformer: Any
    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[Any]] = field(default_factory=dict)
    _steps: list[Callable[[Columns, int], np.ndarray]] | None = None

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @classmethod
    def from_transformer(cls, transformer: Any) -> FeatureTransform:
        """Describe the fitted `transformer`; compile it to numpy where possible."""
        fast = cls(transformer=transformer)
        steps: list[Callable[[Columns, int], np.ndarray]] | None = []
        for _, pipeline, columns in transformer.transformers_:
            if isinstance(pipeline, str) or len(columns) == 0:
                if pipeline != "drop" and len(columns):
                    steps = None  # "passthrough" columns: leave them to scikit-learn.
                continue
            parts = list(getattr(pipeline, "named_steps", {}).values()) or [pipeline]
            encoder = next((p for p in parts if type(p).__name__ == "OneHotEncoder"), None)
            if encoder is not None:
                for column, categories in zip(columns, encoder.categories_, strict=True):
                    fast.categorical[column] = [_plain(value) for value in categories]
            else:
                fast.numeric.extend(columns)
            compiled = _compile(parts, list(columns))
            if compiled is None or steps is None:
                steps = None
            else:
                steps.append(compiled)
        fast._steps = steps
        return fast

    # -- validation -------------------------------------------------------------------

    def validate(
        self, data: pd.DataFrame | list[dict[str, Any]], max_rows: int | None = None
    ) -> Columns:
        """Check rows; return them as `Columns` with every feature (missing ones NaN).

        Raises `InvalidInput` for too many rows, unknown fields, non-numeric or
        non-finite numbers, and categories the model never saw.
        """
        if isinstance(data, pd.DataFrame):
            count, fields = len(data), list(data.columns)
            raw = {name: data[name].to_numpy() for name in fields}
        else:
            count, fields = len(data), list(dict.fromkeys(k for row in data for k in row))
            raw = {name: [row.get(name) for row in data] for name in fields}
        if max_rows is not None and count > max_rows:
            raise InvalidInput(
                f"Too many rows: {count}; the maximum per request is {max_rows}. Split the request."
            )
        unknown = [
            name for name in fields if name not in self.numeric and name not in self.categorical
        ]
        if unknown:
            raise InvalidInput(f"Unknown field(s) {unknown}; expected some of {self.columns}.")

        columns, problems = self._check(raw, count)
        for column_problems in problems:
            if column_problems:
                row, problem = next(iter(column_problems.items()))
                raise InvalidInput(f"Row {row}, {problem.reason}")
        return columns

    def validate_rows(self, data: pd.DataFrame) -> tuple[Columns, np.ndarray, list[RowProblem]]:
        """Check every row of a table; keep the valid ones instead of refusing them all.

        Returns the valid rows as `Columns`, their positions in `data`, and one
        `RowProblem` per refused row: the first one `validate` would report for that
        row alone (the same checks, in the same order, with the same message).
        Columns other than the features are ignored; a missing feature is all missing.
        """
        count = len(data)
        raw = {name: data[name].to_numpy() for name in self.columns if name in data.columns}
        columns, problems = self._check(raw, count)
        first: dict[int, RowProblem] = {}
        for column_problems in problems:
            for row, problem in column_problems.items():
                first.setdefault(row, problem)
        if not first:
            return columns, np.arange(count), []
        valid = np.ones(count, dtype=bool)
        valid[list(first)] = False
        kept = np.flatnonzero(valid)
        refused = [first[row] for row in sorted(first)]
        return {name: values[kept] for name, values in columns.items()}, kept, refused

    def _check(
        self, raw: dict[str, Any], count: int
    ) -> tuple[Columns, list[dict[int, RowProblem]]]:
        """Every feature as an array, and per feature the problems found, by row."""
        columns: Columns = {}
        problems: list[dict[int, RowProblem]] = []
        for name in self.numeric:
            columns[name], found = _numeric(raw.get(name), name, count)
            problems.append(found)
        for name, allowed in self.categorical.items():
            columns[name], found = _categorical(raw.get(name), name, count, allowed)
            problems.append(found)
        return columns, problems

    # -- transformation ---------------------------------------------------------------

    def transform(self, columns: Columns) -> np.ndarray:
        """Model-ready float32 features for validated `columns`."""
        if self._steps is None:
            return self.transformer.transform(self.frame(columns)).astype("float32")
        return self._fast(columns).astype("float32")

    def frame(self, columns: Columns) -> pd.DataFrame:
        return pd.DataFrame({name: columns[name] for name in self.columns})

    def records(self, columns: Columns) -> list[dict[str, Any]]:
        """The rows as JSON-ready dicts (missing values as None)."""
        names = self.columns
        return [
            {
                name: (None if _missing(value) else _plain(value))
                for name, value in zip(names, row, strict=True)
            }
            for row in zip(*(columns[name] for name in names), strict=True)
        ]

    def verify(self, columns: Columns) -> bool:
        """Keep the numpy path only if it matches scikit-learn on validated `columns`."""
        if self._steps is None:
            return False
        expected = self.transformer.transform(self.frame(columns))
        if not np.allclose(self._fast(columns), expected, atol=1e-6):
            self._steps = None
        return self._steps is not None

    def _fast(self, columns: Columns) -> np.ndarray:
        count = len(next(iter(columns.values())))
        blocks = [step(columns, count) for step in self._steps or []]
        return np.hstack(blocks) if len(blocks) > 1 else blocks[0]


def _numeric(values: Any, name: str, count: int) -> tuple[np.ndarray, dict[int, RowProblem]]:
    """`values` as float64 (NaN where missing, and where refused), and the refused rows.

    `values` is a list when it comes from a JSON request: there every value is
    checked, and NaN (a non-standard JSON literal) is an error, not a missing value.
    """
    problems: dict[int, RowProblem] = {}
    if values is None:
        return np.full(count, np.nan), problems
    if isinstance(values, list) or np.asarray(values).dtype.kind not in "fiu":
        from_json = isinstance(values, list)
        numbers = np.empty(count, dtype="float64")
        for row, value in enumerate(values.tolist() if hasattr(values, "tolist") else values):
            numbers[row], problem = _number(value, row, name, from_json)
            if problem is not None:
                problems[row] = problem
        return numbers, problems
    array = np.asarray(values).astype("float64")
    for row in np.flatnonzero(np.isinf(array)).tolist():
        problems[row] = RowProblem(
            row, name, NOT_FINITE, f"field {name!r}: {float(array[row])!r} is not a finite number."
        )
        array[row] = np.nan
    return array, problems


def _number(value: Any, row: int, name: str, nan_is_error: bool) -> tuple[float, RowProblem | None]:
    """One value as a finite float (NaN for missing), or NaN and the reason it is refused."""
    if value is None:
        return math.nan, None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        reason = f"field {name!r}: expected a number, got {value!r:.50}."
        return math.nan, RowProblem(row, name, NOT_A_NUMBER, reason)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if math.isnan(number) and not nan_is_error:
        return number, None
    if not math.isfinite(number):
        reason = (
            f"field {name!r}: {_spelled(number)} is not a finite number; "
            "send null for a missing value."
        )
        return math.nan, RowProblem(row, name, NOT_FINITE, reason)
    return number, None


def _spelled(number: float) -> str:
    """A non-finite number as JSON's non-standard literals spell it."""
    return json.dumps(number)


def _categorical(
    values: Any, name: str, count: int, allowed: list[Any]
) -> tuple[np.ndarray, dict[int, RowProblem]]:
    """`values` as an object array (NaN where missing or refused), and the refused rows."""
    problems: dict[int, RowProblem] = {}
    if values is None:
        return np.full(count, np.nan, dtype=object), problems
    allowed_set = set(allowed)
    array = np.empty(count, dtype=object)
    for row, value in enumerate(values):
        if _missing(value):
            array[row] = np.nan
        elif isinstance(value, str | int | float | bool) and value in allowed_set:
            array[row] = value
        else:
            array[row] = np.nan
            reason = f"field {name!r}: unknown value {value!r:.50}; allowed values are {allowed}."
            problems[row] = RowProblem(row, name, UNKNOWN_CATEGORY, reason)
    return array, problems


def _compile(parts: list[Any], columns: list[str]) -> Callable[[Columns, int], np.ndarray] | None:
    """A numpy function equivalent to a known pipeline of fitted transformers, or None."""
    kinds = [type(part).__name__ for part in parts]
    if kinds == ["SimpleImputer", "StandardScaler"]:
        imputer, scaler = parts
        fill = np.asarray(imputer.statistics_, dtype="float64")
        mean = scaler.mean_ if scaler.with_mean else 0.0
        scale = scaler.scale_ if scaler.with_std else 1.0

        def numeric(data: Columns, count: int) -> np.ndarray:
            values = np.column_stack([data[name] for name in columns])
            values = np.where(np.isnan(values), fill, values)
            return (values - mean) / scale

        return numeric

    if kinds == ["SimpleImputer", "OneHotEncoder"]:
        imputer, encoder = parts
        if encoder.drop is not None or encoder.handle_unknown != "ignore":
            return None
        fills = [_plain(value) for value in imputer.statistics_]
        lookups = [
            {_plain(value): index for index, value in enumerate(categories)}
            for categories in encoder.categories_
        ]
        offsets = np.cumsum([0] + [len(c) for c in encoder.categories_])

        def categorical(data: Columns, count: int) -> np.ndarray:
            output = np.zeros((count, offsets[-1]))
            for position, name in enumerate(columns):
                lookup, fill = lookups[position], fills[position]
                for row, value in enumerate(data[name]):
                    index = lookup.get(fill if _missing(value) else value)
                    if index is not None:
                        output[row, offsets[position] + index] = 1.0
            return output

        return categorical
    return None
