"""Checks that a freshly deployed model answers sensibly.

The smoke test's rows are real requests to the new deployment, sent by
`promotion.rollout` with the capture source `smoke` (`inference.capture.SMOKE`): they
are stored like any answer but never read back as production evidence, labelled, or
monitored (`Backend.invoke`, `Backend.load`).
"""

from __future__ import annotations

from typing import Any


class SmokeTestError(RuntimeError):
    """The deployed model's answers are missing or malformed."""


def check_predictions(response: Any, rows: int, classes: set[str] | None = None) -> None:
    """Raise SmokeTestError unless `response` holds one valid prediction per row."""
    if not isinstance(response, dict) or not isinstance(response.get("predictions"), list):
        raise SmokeTestError(f"Expected {{'predictions': [...]}}, got {str(response)[:200]}.")
    predictions = response["predictions"]
    if len(predictions) != rows:
        raise SmokeTestError(f"Sent {rows} rows, got {len(predictions)} predictions.")
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, dict) or not {"prediction", "confidence", "id"} <= set(
            prediction
        ):
            raise SmokeTestError(f"Prediction {index} lacks prediction/confidence/id: {prediction}")
        confidence = prediction["confidence"]
        valid = isinstance(confidence, int | float) and not isinstance(confidence, bool)
        if not valid or not 0 <= confidence <= 1:
            raise SmokeTestError(f"Prediction {index} has confidence {confidence!r}.")
        if not isinstance(prediction["id"], str) or not prediction["id"]:
            raise SmokeTestError(f"Prediction {index} has no id: {prediction['id']!r}.")
        if classes is not None and prediction["prediction"] not in classes:
            raise SmokeTestError(
                f"Prediction {index} is {prediction['prediction']!r}, not one of {sorted(classes)}."
            )
