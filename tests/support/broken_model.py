"""A deliberately broken model for the deployment rollback tests.

It loads and answers like a real model, but its predictions lack `confidence`: the
deployment's smoke test must reject it and roll back. Logged "from code" by
tests/support/serving.py as a version of the same registered model.
"""

from __future__ import annotations

import uuid
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.models import set_model


class BrokenModel(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: Any, params: dict | None = None) -> pd.DataFrame:
        rows = len(model_input)
        return pd.DataFrame(
            {"prediction": ["Adelie"] * rows, "id": [uuid.uuid4().hex for _ in range(rows)]}
        )


set_model(BrokenModel())
