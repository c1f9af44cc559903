"""Simulated production traffic: rows shaped like the dataset, optionally drifted."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from common.data import DatasetSchema

if TYPE_CHECKING:
    import pandas as pd

DRIFT_STANDARD_DEVIATIONS = 2.0


def drift_column(schema: DatasetSchema) -> str:
    """The column `--drift` shifts: the first numeric feature."""
    if not schema.numeric_features:
        raise ValueError("--drift needs at least one numeric feature to shift.")
    return schema.numeric_features[0]


def sample_requests(
    data: pd.DataFrame, schema: DatasetSchema, samples: int, drift: bool, seed: int | None
) -> list[dict[str, Any]]:
    """`samples` feature rows drawn from `data` (target removed), as JSON-ready dicts.

    With `drift`, the first numeric feature is shifted up by two standard deviations:
    a change in the inputs that monitoring must notice.
    """
    rows = data[schema.features].sample(n=samples, replace=samples > len(data), random_state=seed)
    if drift:
        column = drift_column(schema)
        rows[column] = rows[column] + DRIFT_STANDARD_DEVIATIONS * data[column].std()
    return [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
        for row in rows.to_dict("records")
    ]


def batches(rows: list[Any], size: int) -> list[list[Any]]:
    """Consecutive slices of `rows`, each at most `size` long."""
    return [rows[start : start + size] for start in range(0, len(rows), size)]
