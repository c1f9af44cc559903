"""Short, precise HTTP errors from `mlflow models serve`.

MLflow's scoring server turns any error into a message that repeats the whole input
and often a stack trace. `install_request_guard` wraps its request handler so that:

- malformed JSON, JSON nested too deeply to read, a wrong top-level shape, wrong
  types, non-finite numbers, unknown categories and oversized batches get a 400 naming
  the row and field, before MLflow parses anything;
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
from collections.abc import Callable
from typing import Any

from inference.capture import CaptureError
from inference.features import Columns, FeatureTransform, InvalidInput

logger = logging.getLogger(__name__)

EXPECTED_SHAPE = 'Send JSON like {"inputs": [{"<feature>": <value>, ...}, ...]}.'
# Thousands of nested arrays make `json.loads` (and repr) raise RecursionError, which
# is not a ValueError: without this it escaped as a plain-text 500.
TOO_DEEP = "The JSON nests too deeply to read."
MAX_MESSAGE_LENGTH = 500


def error_body(message: str, code: str = "BAD_REQUEST") -> str:
    return json.dumps({"error_code": code, "message": message[:MAX_MESSAGE_LENGTH]})


def check_payload(body: bytes | str, features: FeatureTransform, max_rows: int) -> Columns | None:
    """Validate a JSON request body; return its rows as columns, or None for formats
    left to MLflow (`dataframe_records`, `dataframe_split`, `instances`).

    Raises `InvalidInput` with a message fit to return to the caller.
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(f"Malformed JSON: {error}. {EXPECTED_SHAPE}") from None
    except RecursionError:
        raise InvalidInput(f"{TOO_DEEP} {EXPECTED_SHAPE}") from None
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
    try:
        return features.validate(rows, max_rows)
    except RecursionError:  # repr of a deeply nested value, in a message about it
        raise InvalidInput(f"A value in 'inputs' nests too deeply. {EXPECTED_SHAPE}") from None


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


def install_request_guard(
    features: FeatureTransform,
    max_rows: int,
    answer: Callable[[Columns], tuple[list[str], list[float], list[str]]],
) -> None:
    """Wrap the scoring server's request handler, if this process is that server.

    A server process loads one model. A process that loads several (tests, notebooks)
    gets the guard of the one loaded last, wrapped around MLflow's own handler: a
    guard left by an earlier model would answer with that model.
    """
    server = sys.modules.get("mlflow.pyfunc.scoring_server")
    if server is None:
        return
    from mlflow.exceptions import MlflowException

    original = getattr(server.invocations, "_original", server.invocations)
    response = server.InvocationsResponse
    json_type = "application/json"

    def guarded(data: Any, content_type: str, model: Any, input_schema: Any) -> Any:
        if (content_type or "").split(";")[0].strip() != json_type:
            return guard(lambda: original(data, content_type, model, input_schema))
        try:
            columns = check_payload(data, features, max_rows)
        except InvalidInput as error:
            return response(error_body(str(error)), 400, json_type)
        if columns is None:
            return guard(lambda: original(data, content_type, model, input_schema))
        if not columns or len(next(iter(columns.values()))) == 0:
            return response(json.dumps({"predictions": []}), 200, json_type)
        # The body is parsed and validated already: answer from it directly rather than
        # let MLflow parse it again (it turns a null category into "None") and check
        # it against the signature a second time (~0.5 ms a request).
        return guard(lambda: predictions_response(*answer(columns)))

    def predictions_response(predictions: list, confidences: list, ids: list) -> Any:
        rows = [
            {"prediction": p, "confidence": c, "id": i}
            for p, c, i in zip(predictions, confidences, ids, strict=True)
        ]
        return response(json.dumps({"predictions": rows}), 200, json_type)

    def guard(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except RecursionError:  # MLflow re-parsing a deep body of its other formats
            return response(error_body(f"{TOO_DEEP} {EXPECTED_SHAPE}"), 400, json_type)
        except InvalidInput as error:  # rows the model found out of its range
            return response(error_body(str(error)), 400, json_type)
        except Exception as error:
            return error_response(error)

    def error_response(error: Exception) -> Any:
        cause = _capture_error(error)
        if cause is not None:
            logger.error("Capture failed: %s", cause)
            message = f"Prediction not stored, so not returned: {cause}"
            return response(error_body(message, "UNAVAILABLE"), 503, json_type)
        if isinstance(error, MlflowException) and error.get_http_status_code() < 500:
            message = _short(error.message)
            return response(
                error_body(message, error.error_code), error.get_http_status_code(), json_type
            )
        logger.error("Prediction failed", exc_info=error)  # A bug: log it, say little.
        message = f"Internal error: {type(error).__name__}"
        return response(error_body(message, "INTERNAL_ERROR"), 500, json_type)

    guarded._guarded = True  # type: ignore[attr-defined]
    guarded._original = original  # type: ignore[attr-defined]
    server.invocations = guarded
