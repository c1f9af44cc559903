"""Classification figures that more than one stage reports, on numpy alone.

Training shows the cross-validated confusion matrix on its card; monitoring shows the
champion's and the shadow's side by side. Both count with `confusion_matrix`, so the
two cards can be read the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(actual: Any, predicted: Any, classes: int) -> np.ndarray:
    """Counts of (actual, predicted) class index pairs: rows actual, columns predicted.

    Labels may be shaped (n,) or (n, 1), as the target transformer returns them.
    """
    matrix = np.zeros((classes, classes), dtype=int)
    actual = np.asarray(actual, dtype=int).reshape(-1)
    predicted = np.asarray(predicted, dtype=int).reshape(-1)
    np.add.at(matrix, (actual, predicted), 1)
    return matrix
