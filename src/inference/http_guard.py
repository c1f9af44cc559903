"""The model server's front door: every request authenticated and bounded before any
of it is decoded.

`HttpGuard` is an ASGI middleware around MLflow's scoring app. In order, it

1. lets the health check (`/ping`, `/health`) through untouched: load balancers and
   `LocalServer` call it without credentials;
2. with a token configured (`SERVING_AUTH_TOKEN`), answers 401 to any other request
   without `Authorization: Bearer <token>` (compared in constant time);
3. answers 404 to any path but `/invocations` (MLflow's `/version`, FastAPI's `/docs`
   and `/openapi.json` tell a stranger what runs here);
4. answers 415 to a missing or unknown Content-Type, naming the accepted ones, and
   hands the app the type in its canonical spelling (`Application/JSON` works);
5. answers 413 to a body over `SERVING_MAX_REQUEST_BYTES`: at once when Content-Length
   says so, or as soon as a streamed (chunked) body passes it;
6. counts a CSV or Parquet body's rows before decoding it (`request_formats`): over
   `SERVING_MAX_BATCH_SIZE` rows, 413.

With metrics (`inference.metrics`), it counts and times every request but the health
check and answers `GET /metrics` itself, after the token check of step 2.

Every refusal is a short JSON body, `{"error_code": ..., "message": ...}`. Connection
limits (header and body read timeouts, a cap on open connections) belong to the server
that reads the bytes: `backends.local_connections`.

`install_http_guard`, called as the model loads, puts the guard in front of the app
MLflow's scoring server is building, so that `mlflow models serve` and the Local
backend's launcher both serve through it. The guard ships with the model (this
package is its code): a model registered before the guard existed serves without it.
"""

from __future__ import annotations

import hmac
import logging
import sys
import types
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from inference.features import InvalidInput
from inference.metrics import METRICS_PATH, ServerMetrics
from inference.request_formats import (
    UnsupportedMediaType,
    declared_rows,
    media_type,
    too_many_rows,
)
from inference.request_guard import error_body

logger = logging.getLogger(__name__)

APP_MODULE = "mlflow.pyfunc.scoring_server.app"
HEALTH_PATHS = frozenset({"/ping", "/health"})
INVOCATIONS = "/invocations"
TOKEN_VARIABLE = "SERVING_AUTH_TOKEN"
MAX_BYTES_VARIABLE = "SERVING_MAX_REQUEST_BYTES"
# Room for a pretty-printed JSON row; a request body of at least 1 MiB is always allowed.
BYTES_PER_ROW = 1024
MIN_REQUEST_BYTES = 1024 * 1024
MAX_MESSAGE_LENGTH = 500

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def default_max_request_bytes(max_rows: int) -> int:
    """The body limit when none is set: 1 KiB a row of the batch limit, at least 1 MiB."""
    return max(MIN_REQUEST_BYTES, max_rows * BYTES_PER_ROW)


@dataclass(frozen=True)
class HttpLimits:
    """What the guard enforces: the token (None: no authentication), the body size and
    the rows of a CSV or Parquet body."""

    auth_token: str | None
    max_request_bytes: int
    max_rows: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], max_rows: int) -> HttpLimits:
        """The limits the server's environment sets (see the module docstring).

        An empty token is no token. ValueError for a body limit that is not a positive
        integer: a server must not start with a limit it does not understand.
        """
        text = environ.get(MAX_BYTES_VARIABLE, "")
        try:
            max_bytes = int(text) if text else default_max_request_bytes(max_rows)
        except ValueError:
            max_bytes = 0
        if max_bytes < 1:
            raise ValueError(
                f"{MAX_BYTES_VARIABLE} must be a positive number of bytes, got {text!r}."
            )
        return cls(environ.get(TOKEN_VARIABLE) or None, max_bytes, max_rows)


def install_http_guard(limits: HttpLimits, metrics: ServerMetrics | None = None) -> bool:
    """Put `HttpGuard` in front of the scoring app this process is building, if it is
    building one; return whether it did.

    MLflow's `scoring_server/app.py` is one line, `app = init(load_model(path))`: the
    model loads (and calls this) while that module is being imported, before `init`
    has built the app, and `init` was looked up before the model loaded, so patching it
    now would be too late. What is left is import's last step: the module an import
    returns is the one in `sys.modules` once its code has run, which uvicorn then asks
    for `app`. So that entry becomes a module that hands out the app behind the guard.
    """
    module = sys.modules.get(APP_MODULE)
    if module is None or "app" in vars(module):  # not a server, or its app is built
        return False
    sys.modules[APP_MODULE] = _GuardedAppModule(module, limits, metrics)
    return True


class _GuardedAppModule(types.ModuleType):
    """MLflow's app module, whose `app` is `HttpGuard(<MLflow's app>)`."""

    def __init__(
        self, module: types.ModuleType, limits: HttpLimits, metrics: ServerMetrics | None
    ) -> None:
        super().__init__(module.__name__, module.__doc__)
        for name in ("__file__", "__spec__", "__loader__", "__package__", "__path__"):
            if hasattr(module, name):
                setattr(self, name, getattr(module, name))
        self._module = module
        self._limits = limits
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if name == "app":
            value = HttpGuard(value, self._limits, self._metrics)
            self.app = value  # the same guarded app for every later lookup
        return value


class HttpGuard:
    """The ASGI middleware of the module docstring, around `app`."""

    _guarded = True

    def __init__(self, app: App, limits: HttpLimits, metrics: ServerMetrics | None = None) -> None:
        self.app = app
        self.limits = limits
        self.metrics = metrics
        self._token = limits.auth_token.encode() if limits.auth_token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in HEALTH_PATHS:
            return await self.app(scope, receive, send)
        if self.metrics is not None:
            return await self.metrics.measured(self._guarded_call, scope, receive, send)
        await self._guarded_call(scope, receive, send)

    async def _guarded_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = _Request.read(scope)
        if self._token is not None and not self._authorized(request.authorization):
            challenge = [(b"www-authenticate", b'Bearer realm="model server"')]
            return await _refuse(
                send, 401, "UNAUTHENTICATED", _UNAUTHORIZED, request.close, challenge
            )
        if scope["path"] == METRICS_PATH and self.metrics is not None:
            return await self.metrics.serve(send)
        if scope["path"] != INVOCATIONS:
            message = f"No such endpoint: {scope['path'][:100]}. Send requests to {INVOCATIONS}."
            return await _refuse(send, 404, "NOT_FOUND", message, request.close)
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)  # MLflow's 405
        try:
            kind = media_type(request.content_type)
        except UnsupportedMediaType as error:
            return await _refuse(send, 415, "UNSUPPORTED_MEDIA_TYPE", str(error), request.close)
        if request.content_type != kind.encode():
            scope = {**scope, "headers": _with_content_type(scope["headers"], kind)}
        await self._bounded(scope, receive, send, request, kind)

    def _authorized(self, authorization: bytes | None) -> bool:
        scheme, _, credentials = (authorization or b"").partition(b" ")
        # compare_digest takes as long whatever the credentials: it leaks no prefix.
        matches = hmac.compare_digest(credentials.strip(), self._token or b"")
        return scheme.lower() == b"bearer" and matches

    async def _bounded(
        self, scope: Scope, receive: Receive, send: Send, request: _Request, kind: str
    ) -> None:
        """Pass the request on if its body and rows are within the limits; else 413."""
        limit = self.limits.max_request_bytes
        if request.length is not None and request.length > limit:
            return await _refuse(send, 413, "REQUEST_TOO_LARGE", _too_large(limit), request.close)
        # Read here, even within its length: a client that goes away halfway (or that the
        # server cuts off for being slow) is then the end of it, not an error in the app.
        body = await _read_body(receive, limit)
        if body is None:
            return
        if isinstance(body, _TooLarge):  # the rest is dropped as it comes (see `_refuse`)
            return await _refuse(send, 413, "REQUEST_TOO_LARGE", _too_large(limit))
        try:
            rows = declared_rows(body, kind, self.limits.max_rows)
        except InvalidInput as error:
            return await _refuse(send, 400, "BAD_REQUEST", str(error))
        if rows is not None and rows > self.limits.max_rows:
            message = too_many_rows(rows, self.limits.max_rows)
            return await _refuse(send, 413, "REQUEST_TOO_LARGE", message)
        await self.app(scope, _replay(body, receive), send)


_UNAUTHORIZED = (
    "Missing or wrong token: send the header 'Authorization: Bearer <token>' with the "
    "token the server was started with."
)


def _too_large(limit: int) -> str:
    return (
        f"The request body is larger than {limit} bytes, the most this server reads "
        "(backend.max_request_bytes): split the request into smaller batches."
    )


@dataclass
class _Request:
    """The headers the guard reads, from one pass over the request's headers."""

    authorization: bytes | None = None
    content_type: bytes | None = None
    length: int | None = None
    expects_continue: bool = False

    @property
    def close(self) -> bool:
        """Whether a refusal before reading the body must close the connection: a client
        that asked to be told to go on (`Expect: 100-continue`) holds its body back, and
        what it sends next would be read as that body (see `_refuse`)."""
        return self.expects_continue

    @classmethod
    def read(cls, scope: Scope) -> _Request:
        request = cls()
        for name, value in scope["headers"]:
            if name == b"authorization" and request.authorization is None:
                request.authorization = value
            elif name == b"content-type" and request.content_type is None:
                request.content_type = value
            elif name == b"content-length":
                request.length = int(value) if value.isdigit() else None
            elif name == b"expect":
                request.expects_continue = value.lower() == b"100-continue"
        return request


class _TooLarge:
    """What `_read_body` gives for a body over the limit."""


_TOO_LARGE = _TooLarge()


async def _read_body(receive: Receive, limit: int) -> bytes | _TooLarge | None:
    """The request body if it is at most `limit` bytes; `_TOO_LARGE` as soon as it is
    longer; None if the client disconnected first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return _TOO_LARGE
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body`, already read, then waits as the original does."""
    given = False

    async def replayed() -> dict[str, Any]:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


def _with_content_type(headers: list[tuple[bytes, bytes]], kind: str) -> list:
    """`headers` with Content-Type spelled as MLflow's app compares it (`kind`)."""
    return [(name, kind.encode() if name == b"content-type" else value) for name, value in headers]


async def _refuse(
    send: Send,
    status: int,
    code: str,
    message: str,
    close: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer `status` with a JSON error body.

    The connection stays open: uvicorn reads and drops the rest of a body the app did not
    read, so a client that sends its whole body before it reads (most do) gets this
    answer, where closing would reset the connection under it and lose the answer. That
    costs bandwidth, not memory, and the Local server's deadlines bound it (the next
    request's headers are due within `header_timeout` of this answer). `close` is for a
    body that will not come (see `_Request.close`).
    """
    body = error_body(message[:MAX_MESSAGE_LENGTH], code).encode()
    response_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or []),
    ]
    if close:
        response_headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})
