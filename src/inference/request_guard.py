"""The request guard: short, precise HTTP answers from `mlflow models serve`.

Not a server: the guard wraps the request handler of MLflow's scoring server, in the
server's own process, when the model loads there (`inference.model.Model.load_context`).
It sees a request's body once the HTTP guard (`inference.http_guard`) has let it in:
authenticated and within the size limits.

MLflow's scoring server turns any error into a message that repeats the whole input
and often a stack trace. `install_request_guard` wraps its request handler so that:

- malformed JSON, JSON nested too deeply to read, a wrong top-level shape, wrong
  types, non-finite numbers, unknown categories and oversized batches get a 400 naming
  the row and field, before MLflow parses anything;
- a missing or unknown content type gets a 415 naming the accepted ones, whatever its
  capitals; a CSV whose lines do not all have the header's number of fields gets a 400
  naming the row, and a CSV or Parquet body of too many rows a 413, before MLflow
  decodes them (`inference.request_formats`);
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
from inference.request_formats import (
    CSV_TYPE,
    JSON_TYPE,
    UnsupportedMediaType,
    check_csv,
    media_type,
    parquet_rows,
    too_many_rows,
)

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
    original = getattr(server.invocations, "_original", server.invocations)
    server.invocations = _RequestGuard(
        server.InvocationsResponse, original, features, max_rows, answer
    )


class _RequestGuard:
    """MLflow's `invocations(data, content_type, model, input_schema)`, guarded.

    `_original` is MLflow's own handler, which the guard calls for what it leaves to it.
    """

    _guarded = True

    def __init__(
        self,
        response: Callable[[str, int, str], Any],
        original: Callable[..., Any],
        features: FeatureTransform,
        max_rows: int,
        answer: Callable[[Columns], tuple[list[str], list[float], list[str]]],
    ) -> None:
        self._response = response  # MLflow's InvocationsResponse(body, status, mimetype)
        self._original = original
        self._features = features
        self._max_rows = max_rows
        self._answer = answer

    def __call__(self, data: Any, content_type: str | None, model: Any, input_schema: Any) -> Any:
        try:
            kind = media_type(content_type)
        except UnsupportedMediaType as error:
            return self._json(error_body(str(error), "UNSUPPORTED_MEDIA_TYPE"), 415)
        if kind != JSON_TYPE:
            return self._tabular(data, kind, model, input_schema)

        def mlflows_own() -> Any:
            return self._original(data, kind, model, input_schema)

        try:
            columns = check_payload(data, self._features, self._max_rows)
        except InvalidInput as error:
            return self._json(error_body(str(error)), 400)
        if columns is None:
            return self._guard(mlflows_own)
        if not columns or len(next(iter(columns.values()))) == 0:
            return self._json(json.dumps({"predictions": []}), 200)
        # The body is parsed and validated already: answer from it directly rather than
        # let MLflow parse it again (it turns a null category into "None") and check
        # it against the signature a second time (~0.5 ms a request).
        return self._guard(lambda: self._predictions(*self._answer(columns)))

    def _tabular(self, data: Any, kind: str, model: Any, input_schema: Any) -> Any:
        """A CSV or Parquet body: checked and counted here, decoded by MLflow."""
        body = data.encode() if isinstance(data, str) else data
        try:
            rows = check_csv(body) if kind == CSV_TYPE else parquet_rows(body)
        except InvalidInput as error:
            return self._json(error_body(str(error)), 400)
        if rows > self._max_rows:
            message = too_many_rows(rows, self._max_rows)
            return self._json(error_body(message, "REQUEST_TOO_LARGE"), 413)
        # MLflow reads a CSV with the pandas types of the model's signature, which it
        # cannot give for the columns that take any type: let pandas infer them instead.
        schema = None if kind == CSV_TYPE else input_schema
        return self._guard(lambda: self._original(body, kind, model, schema))

    def _json(self, body: str, status: int) -> Any:
        return self._response(body, status, JSON_TYPE)

    def _predictions(self, predictions: list, confidences: list, ids: list) -> Any:
        rows = [
            {"prediction": p, "confidence": c, "id": i}
            for p, c, i in zip(predictions, confidences, ids, strict=True)
        ]
        return self._json(json.dumps({"predictions": rows}), 200)

    def _guard(self, call: Callable[[], Any]) -> Any:
        """`call()`'s answer, or the error response for what it raised."""
        try:
            return call()
        except RecursionError:  # MLflow re-parsing a deep body of its other formats
            return self._json(error_body(f"{TOO_DEEP} {EXPECTED_SHAPE}"), 400)
        except InvalidInput as error:  # rows the model found out of its range
            return self._json(error_body(str(error)), 400)
        except Exception as error:
            return self._error_response(error)

    def _error_response(self, error: Exception) -> Any:
        from mlflow.exceptions import MlflowException

        cause = _capture_error(error)
        if cause is not None:
            logger.error("Capture failed: %s", cause)
            message = f"Prediction not stored, so not returned: {cause}"
            return self._json(error_body(message, "UNAVAILABLE"), 503)
        if isinstance(error, MlflowException) and error.get_http_status_code() < 500:
            message = _short(error.message)
            return self._json(error_body(message, error.error_code), error.get_http_status_code())
        logger.error("Prediction failed", exc_info=error)  # A bug: log it, say little.
        message = f"Internal error: {type(error).__name__}"
        return self._json(error_body(message, "INTERNAL_ERROR"), 500)
