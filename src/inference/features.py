"""The serving side of the features: validate request rows, and apply the fitted
feature transformer to them fast. Fitting it is the training side's job
(`model_training.preprocessing`); this module runs what was fitted.

scikit-learn's ColumnTransformer costs ~3.5 ms to transform one row, most of it
per-call bookkeeping, and pandas adds ~100 µs per column operation. The fitted pieces
we use (imputers, a scaler, a one-hot encoder) are a few array operations, so
`FeatureTransform` rebuilds them in numpy at load time, checks itself against
scikit-learn on sample rows, and falls back to scikit-learn for any transformer it
does not know. Rows travel as `Columns`: one numpy array per feature.

The compiled transform is also written beside the pickle when a model is logged
(`export_transform`: its parameters and the class names as JSON, with rows and the
output scikit-learn gave for them). A model that has it loads without unpickling
anything, so without importing scikit-learn (~2-3 s a process: scipy.stats comes
with it); a description whose rows no longer give that output is not used.

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


# From this many rows on, a categorical column is looked up in one pandas call (~60 µs
# whatever its length) instead of a dictionary lookup per value (~0.15 µs each): server
# requests, a row or a few, keep the per-value path; a batch-scoring chunk does not.
COLUMN_LOOKUP_ROWS = 512

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


# The compiled transformer is a list of blocks, one per ColumnTransformer part, whose
# outputs are stacked in order; each block is JSON-ready:
#   {"kind": "scaled", "columns": [...], "fill": [...], "mean": [...], "scale": [...]}
#   {"kind": "one_hot", "columns": [...], "fill": [...], "categories": [[...], ...]}
Block = dict[str, Any]
DESCRIPTION_FORMAT = 1


@dataclass
class FeatureTransform:
    """The fitted ColumnTransformer as numpy operations, plus what valid input is.

    `transformer` is None when it was loaded from its description (`from_description`):
    then every part is compiled, and there is no scikit-learn object to fall back to.
    """

    transformer: Any
    numeric: list[str] = field(default_factory=list)
    categorical: dict[str, list[Any]] = field(default_factory=dict)
    _steps: list[Callable[[Columns, int], np.ndarray]] | None = None
    _blocks: list[Block] | None = None

    @property
    def columns(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @classmethod
    def from_transformer(cls, transformer: Any) -> FeatureTransform:
        """Describe the fitted `transformer`; compile it to numpy where possible."""
        fast = cls(transformer=transformer)
        blocks: list[Block] | None = []
        for _, pipeline, columns in transformer.transformers_:
            if isinstance(pipeline, str) or len(columns) == 0:
                if pipeline != "drop" and len(columns):
                    blocks = None  # "passthrough" columns: leave them to scikit-learn.
                continue
            parts = list(getattr(pipeline, "named_steps", {}).values()) or [pipeline]
            encoder = next((p for p in parts if type(p).__name__ == "OneHotEncoder"), None)
            if encoder is not None:
                for column, categories in zip(columns, encoder.categories_, strict=True):
                    fast.categorical[column] = [_plain(value) for value in categories]
            else:
                fast.numeric.extend(columns)
            block = _describe(parts, list(columns))
            if block is None or blocks is None:
                blocks = None
            else:
                blocks.append(block)
        fast._blocks = blocks
        fast._steps = None if blocks is None else [_compile(block) for block in blocks]
        return fast

    @classmethod
    def from_blocks(cls, blocks: list[Block]) -> FeatureTransform:
        """The transform `blocks` describe, compiled (unchecked: see `from_description`).

        Raises KeyError, TypeError or ValueError for blocks it cannot read.
        """
        fast = cls(transformer=None, _blocks=blocks)
        for block in blocks:
            if block["kind"] == "one_hot":
                fast.categorical.update(zip(block["columns"], block["categories"], strict=True))
            else:
                fast.numeric.extend(block["columns"])
        fast._steps = [_compile(block) for block in blocks]
        return fast

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> FeatureTransform | None:
        """The transform `describe` wrote, checked on its own rows; None if unusable."""
        try:
            if description.get("format") != DESCRIPTION_FORMAT:
                return None
            fast = cls.from_blocks(description["blocks"])
            check = description["check"]
            columns = fast.validate(pd.DataFrame(check["rows"], columns=fast.columns))
            expected = np.asarray(check["expected"], dtype="float64")
            if not np.allclose(fast._fast(columns), expected, atol=1e-6):
                return None
        except (KeyError, TypeError, ValueError):  # InvalidInput is a ValueError
            return None
        return fast

    def describe(self, sample: Columns | None = None) -> dict[str, Any] | None:
        """The compiled transform as JSON-ready data, with rows to check it by (`sample`:
        `sample_rows()` validated, if the caller has them already); None if some part
        is left to scikit-learn (or did not match it)."""
        if self._steps is None or self._blocks is None:
            return None
        if sample is None:
            sample = self.validate(self.sample_rows())
        return {
            "format": DESCRIPTION_FORMAT,
            "blocks": self._blocks,
            "check": {"rows": self.records(sample), "expected": self._fast(sample).tolist()},
        }

    def sample_rows(self) -> pd.DataFrame:
        """Rows exercising every category and an all-missing row, for self-checks."""
        rows: list[dict[str, Any]] = [dict.fromkeys(self.columns, np.nan)]
        longest = max((len(v) for v in self.categorical.values()), default=1)
        for index in range(longest):
            row: dict[str, Any] = {name: float(index) * 3.3 - 1 for name in self.numeric}
            for name, categories in self.categorical.items():
                row[name] = categories[index % len(categories)]
            rows.append(row)
        return pd.DataFrame(rows, columns=self.columns)

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
        """Model-ready float32 features for `columns`, validated ones in the server.

        Unvalidated columns (the training pipeline's folds, whose test rows may hold a
        category their training rows lacked) transform as with scikit-learn's encoder:
        an unknown category encodes as zeros, a missing value is imputed.
        """
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
        if self.transformer is None:  # loaded from a description: checked on its rows
            return True
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
    known = _known_strings(values, allowed)
    if known is not None:  # the allowed rows at once; the others one by one, below
        array = np.where(known, values, np.nan).astype(object)
        checked: Any = ((row, values[row]) for row in np.flatnonzero(~known).tolist())
    else:
        array = np.empty(count, dtype=object)
        checked = enumerate(values)
    allowed_set = set(allowed)
    for row, value in checked:
        if _missing(value):
            array[row] = np.nan
        elif isinstance(value, str | int | float | bool) and value in allowed_set:
            array[row] = value
        else:
            array[row] = np.nan
            reason = f"field {name!r}: unknown value {value!r:.50}; allowed values are {allowed}."
            problems[row] = RowProblem(row, name, UNKNOWN_CATEGORY, reason)
    return array, problems


def _known_strings(values: Any, allowed: list[Any]) -> np.ndarray | None:
    """Which values are among `allowed` (all strings), in one pandas lookup; None when
    that lookup would not say what the per-value check says (other categories, a list
    from JSON, unhashable values) or would cost more (a short column), and the values
    are checked one by one."""
    if not isinstance(values, np.ndarray) or values.ndim != 1 or values.dtype != object:
        return None
    if len(values) < COLUMN_LOOKUP_ROWS:
        return None
    if not all(isinstance(value, str) for value in allowed):
        return None
    try:
        # Only a string (or a subclass of str) equals a string, so a match passes the
        # per-value check's type test too.
        return pd.Index(allowed, dtype=object).get_indexer(values) >= 0
    except TypeError:
        return None


def _describe(parts: list[Any], columns: list[str]) -> Block | None:
    """The block for a known pipeline of fitted transformers, or None."""
    kinds = [type(part).__name__ for part in parts]
    if kinds == ["SimpleImputer", "StandardScaler"]:
        imputer, scaler = parts
        count = len(columns)
        return {
            "kind": "scaled",
            "columns": columns,
            "fill": [float(value) for value in imputer.statistics_],
            "mean": [float(v) for v in scaler.mean_] if scaler.with_mean else [0.0] * count,
            "scale": [float(v) for v in scaler.scale_] if scaler.with_std else [1.0] * count,
        }
    if kinds == ["SimpleImputer", "OneHotEncoder"]:
        imputer, encoder = parts
        if encoder.drop is not None or encoder.handle_unknown != "ignore":
            return None
        return {
            "kind": "one_hot",
            "columns": columns,
            "fill": [_plain(value) for value in imputer.statistics_],
            "categories": [[_plain(value) for value in c] for c in encoder.categories_],
        }
    return None


def _compile(block: Block) -> Callable[[Columns, int], np.ndarray]:
    """The numpy function a block describes."""
    columns = list(block["columns"])
    if block["kind"] == "scaled":
        fill = np.asarray(block["fill"], dtype="float64")
        mean = np.asarray(block["mean"], dtype="float64")
        scale = np.asarray(block["scale"], dtype="float64")

        def numeric(data: Columns, count: int) -> np.ndarray:
            values = np.column_stack([data[name] for name in columns])
            values = np.where(np.isnan(values), fill, values)
            return (values - mean) / scale

        return numeric

    if block["kind"] != "one_hot":
        raise ValueError(f"Unknown kind of transform block: {block['kind']!r}.")
    categories = [list(values) for values in block["categories"]]
    encoders = [
        _one_hot_column(fill, values)
        for fill, values in zip(block["fill"], categories, strict=True)
    ]
    offsets = np.cumsum([0] + [len(c) for c in categories]).tolist()

    def categorical(data: Columns, count: int) -> np.ndarray:
        output = np.zeros((count, offsets[-1]))
        for position, name in enumerate(columns):
            encoders[position](data[name], output, offsets[position])
        return output

    return categorical


def _one_hot_column(fill: Any, categories: list[Any]) -> Callable[[Any, np.ndarray, int], None]:
    """A function setting, for each value of a column, the 1 of its category in `output`
    from column `offset` on (missing values imputed with `fill`; a value not among
    `categories` leaves its row at 0, as scikit-learn's encoder with
    handle_unknown="ignore" does). A dictionary lookup per value, as scikit-learn's;
    for a long column of string categories, one pandas lookup for all of them."""
    lookup = {value: position for position, value in enumerate(categories)}
    strings = all(isinstance(value, str) for value in categories)
    index = pd.Index(categories, dtype=object) if strings else None

    def encode(values: Any, output: np.ndarray, offset: int) -> None:
        if index is not None and len(values) >= COLUMN_LOOKUP_ROWS:
            # Validated values are a category or NaN, so pandas' idea of missing is the
            # same as `_missing`'s here.
            values = np.asarray(values, dtype=object)
            missing = pd.isna(values)
            codes = index.get_indexer(np.where(missing, fill, values) if missing.any() else values)
            rows = np.flatnonzero(codes >= 0)
            output[rows, offset + codes[rows]] = 1.0
            return
        for row, value in enumerate(values):
            position = lookup.get(fill if _missing(value) else value)
            if position is not None:
                output[row, offset + position] = 1.0

    return encode


def export_transform(features_transformer: Any, target_transformer: Any, path: str) -> bool:
    """Write the compiled transform and the class names to `path` (JSON), checked
    against scikit-learn first; False, writing nothing, if some part is not compiled."""
    fast = FeatureTransform.from_transformer(features_transformer)
    sample = fast.validate(fast.sample_rows())
    if not fast.verify(sample):
        return False
    description = fast.describe(sample)
    if description is None:
        return False
    description["classes"] = [_plain(value) for value in target_transformer.categories_[0]]
    with open(path, "w", encoding="utf-8") as file:
        json.dump(description, file)
    return True


def load_transform(path: str) -> tuple[FeatureTransform, list[Any]] | None:
    """The transform and class names `export_transform` wrote; None if unusable."""
    try:
        with open(path, encoding="utf-8") as file:
            description = json.load(file)
        classes = list(description["classes"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    fast = FeatureTransform.from_description(description)
    return None if fast is None or not classes else (fast, classes)
