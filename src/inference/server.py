"""Short, precise HTTP errors from `mlflow models serve`.

MLflow's scoring server turns any error into a message that repeats the whole input
and often a stack trace. `install_request_guard` wraps its request handler so that:

- malformed JSON, a wrong top-level shape, wrong types, non-finite numbers, unknown
  categories and oversized batches get a 400 naming the row and field, before MLflow
  parses anything;
- `{"inputs": []}` gets an empty list of predictions;
- a prediction that could not be captured fails with 503, never a silent 200;
- other errors keep their status with a one-line message; the traceback goes to the
  server log only.

It patches the server only when the model is loaded inside it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from inference.capture import CaptureError
from inference.features import FeatureTransform, InvalidInput

logger = logging.getLogger(__name__)

EXPECTED_SHAPE = 'Send JSON like {"inputs": [{"<feature>": <value>, ...}, ...]}.'
MAX_MESSAGE_LENGTH = 500


def error_body(message: str, code: str = "BAD_REQUEST") -> str:
    return json.dumps({"error_code": code, "message": message[:MAX_MESSAGE_LENGTH]})


def check_payload(body: bytes | str, features: FeatureTransform, max_rows: int) -> list | None:
    """Validate a JSON request body; return its rows, or None for formats left to MLflow.

    Raises `InvalidInput` with a message fit to return to the caller.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"Malformed JSON: {error}. {EXPECTED_SHAPE}") from None
    if not isinstance(payload, dict):
        raise InvalidInput(
            f"Expected a JSON object, got {type(payload).__name__}. {EXPECTED_SHAPE}"
        )
    if "inputs" not in payload:
        if {"dataframe_records", "dataframe_split", "instances"} & payload.keys():
            return None  # MLflow's other formats: the model validates them after parsing.
        raise InvalidInput(f"Missing key 'inputs'; got {sorted(payload)}. {EXPECTED_SHAPE}")
    rows = payload["inputs"]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise InvalidInput(f"'inputs' must be a list of objects, one per row. {EXPECTED_SHAPE}")
    if len(rows) > max_rows:
        raise InvalidInput(
            f"Too many rows: {len(rows)}; the maximum per request is {max_rows}. Split the request."
        )
    if rows:
        features.validate(rows, max_rows)
    return rows


def _short(message: str) -> str:
    """MLflow prefixes prediction errors with the whole input: keep what follows."""
    _, marker, rest = message.rpartition("Error: ")
    return (rest if marker else message).strip()


def _capture_error(error: BaseException | None) -> CaptureError | None:
    """The CaptureError somewhere in the chain of causes of `error`, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, CaptureError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_request_guard(features: FeatureTransform, max_rows: int) -> None:
    """Wrap the scoring server's request handler, if this process is that server."""
    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    if server is None or getattr(server.invocations, "_guarded", False):
        return
    from mlflow.exceptions import MlflowException

    original = server.invocations
    response = server.InvocationsResponse
    json_type = "application/json"

    def guarded(data: Any, content_type: str, model: Any, input_schema: Any) -> Any:
        if (content_type or "").split(";")[0].strip() == json_type:
            try:
                rows = check_payload(data, features, max_rows)
            except InvalidInput as error:
                return response(error_body(str(error)), 400, json_type)
            if rows == []:
                return response(json.dumps({"predictions": []}), 200, json_type)
        try:
            return original(data, content_type, model, input_schema)
        except MlflowException as error:
            cause = _capture_error(error)
            if cause is not None:
                logger.error("Capture failed: %s", cause)
                return response(
                    error_body(f"Prediction not stored, so not returned: {cause}", "UNAVAILABLE"),
                    503,
                    json_type,
                )
            if error.get_http_status_code() >= 500:
                logger.exception("Prediction failed")
            return response(
                error_body(_short(error.message), error.error_code),
                error.get_http_status_code(),
                json_type,
            )
        except Exception as error:  # A bug, not the caller's fault: log it, say little.
            logger.exception("Prediction failed")
            return response(error_body(f"Internal error: {type(error).__name__}"), 500, json_type)

    guarded._guarded = True  # type: ignore[attr-defined]
    server.invocations = guarded
