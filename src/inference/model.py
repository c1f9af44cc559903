"""The MLflow pyfunc model served in production.

MLflow logs this file as the model's code ("models from code") and ships the
`inference` package beside it (`code_paths`). Its artifacts, written by the training
pipeline:

- `model`: the Keras classifier (`.keras` file),
- `features_transformer`: the fitted scikit-learn ColumnTransformer (pickle),
- `target_transformer`: the fitted OrdinalEncoder that maps labels back to class names,
- `forward` (optional): the classifier's Dense weights as numpy (`inference.forward`),
- `transform` (optional): the features transformer compiled to numpy and the class
  names, as JSON (`inference.features.export_transform`).

With the last two the server loads neither Keras nor scikit-learn; each is checked at
load on rows recorded when it was written, and is not used if that check fails.

Input: rows with the feature columns; a missing value is imputed, a wrong type, a
non-finite number or a category the model never saw is rejected, naming the row and
the field. Output: per row, `prediction` (a class name), `confidence` and `id`.

Serving settings come from the environment, set by whoever starts the server (the
Local backend does):

- `SERVING_CAPTURE_DATABASE`: SQLite file, or `postgresql://user@host:port/dbname`
  URL, where every prediction is captured under its id. Unset: nothing is captured.
- `SERVING_CAPTURE_PASSWORD`: that PostgreSQL user's password, unless libpq's
  PGPASSWORD or ~/.pgpass gives it (`inference.capture_stores`).
- `SERVING_MODEL_VERSION`: the registry version recorded with each capture.
- `SERVING_MAX_BATCH_SIZE`: most rows accepted per request (default 1000).
- `SERVING_MAX_REQUEST_BYTES`: the largest request body read (default 1 KiB a row of
  the batch limit, at least 1 MiB).
- `SERVING_AUTH_TOKEN`: when set, every request but the health check must carry
  `Authorization: Bearer <token>` (see inference/http_guard.py).
- `SERVING_CAPTURE_RETENTION`: how long captures are kept (`inference.retention`).
- `SERVING_SHADOW_MODEL_PATH`: directory of a downloaded registered model that
  scores every request too, in shadow: its answers are captured, never returned.
- `SERVING_SHADOW_VERSION`: the registry version of that shadow model (required
  with the path: it marks the capture rows the shadow answered, or failed to).
- `SERVING_SHADOW_BUDGET_MS`: the shadow's time budget per request (default 2 ms;
  see inference/shadow.py for how it is kept).
- `PROMETHEUS_MULTIPROC_DIR`, `SERVING_METRICS`: where the workers' metrics are summed
  for `GET /metrics`, and `off` to count none (inference/metrics.py).

A shadow whose input features (columns, categories) differ from the champion's stops
the server at load, naming the difference.

Outside a server, `load_scorer(directory)` (inference/scorer.py, which holds the
scoring path this class adds MLflow's interface, capture and the shadow to) loads a
downloaded model in process with the same validation, transform and forward pass,
without importing MLflow: the pipelines that compare or batch-score models use it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from inference.capture import CaptureError, StoreBase, prediction_ids
from inference.capture_stores import from_environment as capture_from_environment
from inference.features import Columns, InvalidInput
from inference.http_guard import HttpLimits, install_http_guard
from inference.metrics import ServerMetrics
from inference.request_guard import install_request_guard
from inference.scorer import Scorer, load_features, load_scorer, model_artifacts
from inference.shadow import DEFAULT_BUDGET_MS, ShadowScorer, check_compatible

DEFAULT_MAX_BATCH_SIZE = 1000
OUTPUT_COLUMNS = ["prediction", "confidence", "id"]

logger = logging.getLogger(__name__)


class Model(Scorer, mlflow.pyfunc.PythonModel):
    """Validate rows, transform features, classify, capture, return named classes."""

    max_rows: int | None = None
    model_version: str | None = None
    shadow: ShadowScorer | None = None
    capture: StoreBase | None = None
    metrics: ServerMetrics | None = None

    def load_context(self, context: Any) -> None:
        """Load as the model server does: artifacts, then capture and the guards."""
        self.load_artifacts(context.artifacts)
        self.max_rows = int(os.environ.get("SERVING_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE))
        self.model_version = os.environ.get("SERVING_MODEL_VERSION")
        self.shadow = self.load_shadow(os.environ)
        self.capture = capture_from_environment(os.environ)
        shadow_version = self.shadow.version if self.shadow else None
        self.metrics = ServerMetrics.from_environment(
            os.environ, self.model_version, self.classes.tolist(), shadow_version, context.artifacts
        )
        install_http_guard(HttpLimits.from_environment(os.environ, self.max_rows), self.metrics)
        install_request_guard(self.features, self.max_rows, self.answer)

    def load_shadow(self, environment: Mapping[str, str]) -> ShadowScorer | None:
        """The shadow model the environment names, checked against this one; or None."""
        path = environment.get("SERVING_SHADOW_MODEL_PATH")
        if not path:
            return None
        version = environment.get("SERVING_SHADOW_VERSION")
        if not version:
            raise ValueError(
                f"SERVING_SHADOW_MODEL_PATH is set ({path}) but SERVING_SHADOW_VERSION is not: "
                "set it to the shadow's registry version, which its captures are marked with."
            )
        budget = environment.get("SERVING_SHADOW_BUDGET_MS", str(DEFAULT_BUDGET_MS))
        try:
            budget_ms = float(budget)
        except ValueError:
            budget_ms = math.nan
        if not (budget_ms > 0 and math.isfinite(budget_ms)):
            raise ValueError(
                f"SERVING_SHADOW_BUDGET_MS must be a positive number of milliseconds, got "
                f"{budget!r}."
            )
        # Checked before the shadow's classifier loads: that may not even fit other input.
        check_compatible(self.features, load_features(model_artifacts(path)), version)
        scorer = load_scorer(path)
        logger.info("Scoring every request in shadow with version %s from %s.", version, path)
        return ShadowScorer(scorer.score, version, budget_ms)

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Predict rows of `model_input` (DataFrame or records); see the module docstring.

        The DataFrame hint is one MLflow infers no schema from: it keeps its own input
        handling (the signature's) and stops warning, at every load, that hints are missing.
        """
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        if len(model_input) == 0:
            return pd.DataFrame({name: [] for name in OUTPUT_COLUMNS})
        try:
            columns = self.features.validate(model_input, self.max_rows)
        except InvalidInput as error:
            raise MlflowException(str(error), INVALID_PARAMETER_VALUE) from None

        predictions, confidences, ids = self.answer(columns)
        return pd.DataFrame({"prediction": predictions, "confidence": confidences, "id": ids})

    def answer(self, columns: Columns) -> tuple[list[str], list[float], list[str]]:
        """Classify validated rows and capture them: (predictions, confidences, ids).

        With a shadow, it scores the same columns and its answers are captured in the
        same rows; whatever happens to it, the champion's answers are returned.
        Safe to call from several threads at once, as the scoring server does.
        """
        started = time.perf_counter()
        predictions, confidences = self.score(columns)
        shadow = None
        if self.shadow is not None:
            took = time.perf_counter() - started
            shadow = self.shadow.answer(columns, len(predictions), took)
        ids = prediction_ids(len(predictions))
        if self.capture is not None:
            try:
                self.capture.save(
                    ids,
                    self.features.records(columns),
                    predictions,
                    confidences,
                    self.model_version,
                    shadow=shadow,
                )
            except CaptureError:
                if self.metrics is not None:
                    self.metrics.capture_failed()
                raise
        if self.metrics is not None:
            self.metrics.answered(predictions, confidences, shadow)
        return predictions, confidences, ids


set_model(Model())
