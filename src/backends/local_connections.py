"""The Local server's connection limits: slow clients cannot hold it.

uvicorn closes a keep-alive connection that stays idle (5 s), but not one that sends its
request slowly: a client sending a header byte now and then held a connection, and its
file descriptor, forever. `LimitedHttpProtocol` (uvicorn's httptools protocol, which
`backends.local_launcher` serves with) adds, per connection:

- a header deadline: a request whose headers are not complete within `header_timeout`
  seconds of the connection opening, or of the previous answer, is closed;
- a body deadline: a body not complete within `body_timeout` seconds of its headers
  gets a 408 and is closed (deadlines are checked every tenth of the shorter one, at
  most every second: a connection may get that much longer);
- a cap: a worker holding `max_connections` connections answers the next one 503 and
  closes it.

What a request may hold (its size, its rows, its token) is checked once it is read, by
the model's HTTP guard (`inference.http_guard`).

The launcher's workers import this module: only the standard library and uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("uvicorn.error")

HEADER_TIMEOUT_VARIABLE = "SERVING_HEADER_TIMEOUT"
BODY_TIMEOUT_VARIABLE = "SERVING_BODY_TIMEOUT"
MAX_CONNECTIONS_VARIABLE = "SERVING_MAX_CONNECTIONS"
# Under attack every closed connection would be a log line: one summary at most this often.
LOG_INTERVAL_SECONDS = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """Seconds a request's headers, then its body, may take; connections per worker."""

    header_timeout: float = 30.0
    body_timeout: float = 30.0
    max_connections: int = 256

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> ConnectionLimits:
        """The limits the server's environment sets; the defaults for those it does not.

        ValueError naming the variable for a value that is not a positive number.
        """
        values: dict[str, Any] = {}
        for name, variable, kind in (
            ("header_timeout", HEADER_TIMEOUT_VARIABLE, float),
            ("body_timeout", BODY_TIMEOUT_VARIABLE, float),
            ("max_connections", MAX_CONNECTIONS_VARIABLE, int),
        ):
            text = environ.get(variable)
            if not text:
                continue
            try:
                values[name] = kind(text)
            except ValueError:
                values[name] = 0
            if not 0 < values[name] < float("inf"):
                raise ValueError(f"{variable} must be a positive number, got {text!r}.")
        return cls(**values)


class LimitedConfig(uvicorn.Config):
    """uvicorn's Config, serving with `LimitedHttpProtocol` under `connection_limits`."""

    def __init__(self, app: Any, connection_limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedHttpProtocol, **kwargs)
        self.connection_limits = connection_limits


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the deadlines and the cap of the module docstring.

    A connection records when its current phase (headers, then body) must end; one
    `_Sweeper` a worker closes those past it. A timer armed and cancelled for each phase
    of each request cost ~10 µs a request; recording a time costs next to nothing.
    """

    def __init__(self, config: uvicorn.Config, server_state: Any, app_state: Any, _loop=None):
        super().__init__(config, server_state, app_state, _loop)
        self.limits: ConnectionLimits = getattr(config, "connection_limits", ConnectionLimits())
        self.deadline: float | None = None  # loop time by which the current phase must end
        self._late: Callable[[], None] = self._headers_late

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _closed.note("at the connection cap", self.client)
            self._answer_and_close(503, "The server holds as many connections as it takes; retry.")
            return
        _Sweeper.watch(self.loop, self.connections, self.limits)
        self._due(self.limits.header_timeout, self._headers_late)

    def on_headers_complete(self) -> None:
        self._due(self.limits.body_timeout, self._body_late)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self.deadline = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.pipeline:
            self._due(self.limits.header_timeout, self._headers_late)  # the next request's

    def expire_if_late(self, now: float) -> None:
        """Called by the sweeper: close the connection if its phase is overdue."""
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            if not self.transport.is_closing():
                self._late()

    def _due(self, seconds: float, late: Callable[[], None]) -> None:
        self.deadline = self.loop.time() + seconds
        self._late = late

    def _headers_late(self) -> None:
        _closed.note(f"request headers not complete in {self.limits.header_timeout:g} s",
                     self.client)  # fmt: skip
        self.transport.close()

    def _body_late(self) -> None:
        _closed.note(f"request body not complete in {self.limits.body_timeout:g} s", self.client)
        if self.cycle is not None and not self.cycle.response_started:
            message = f"The request body did not arrive within {self.limits.body_timeout:g} s."
            self._answer_and_close(408, message)
        else:
            self.transport.close()

    def _answer_and_close(self, status: int, message: str) -> None:
        """Write a JSON error and close, outside any request cycle (none may answer now)."""
        code = "TOO_MANY_CONNECTIONS" if status == 503 else "REQUEST_TIMEOUT"
        body = json.dumps({"error_code": code, "message": message}).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s"
            % (status, b"Service Unavailable" if status == 503 else b"Request Timeout",
               len(body), body)
        )  # fmt: skip
        if self.cycle is not None:  # the app waiting for the body: it is gone, as it will be
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


class _Sweeper:
    """Every so often, closes the connections of this worker that are past a deadline.

    One per worker process (and event loop), started by its first connection; it looks
    again every tenth of the shorter timeout, at most every second, so a connection is
    closed at most that late.
    """

    current: _Sweeper | None = None

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set, interval: float):
        self.loop, self.connections, self.interval = loop, connections, interval
        loop.call_later(interval, self.sweep)

    @classmethod
    def watch(cls, loop: asyncio.AbstractEventLoop, connections: set, limits: ConnectionLimits):
        if cls.current is None or cls.current.loop is not loop:
            shorter = min(limits.header_timeout, limits.body_timeout)
            cls.current = cls(loop, connections, min(max(shorter / 10, 0.05), 1.0))

    def sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            expire = getattr(connection, "expire_if_late", None)  # not a WebSocket's
            if expire is not None:
                expire(now)
        self.loop.call_later(self.interval, self.sweep)


class _ClosedConnections:
    """Counts the connections closed for a limit; logs a summary now and then."""

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = 0.0

    def note(self, why: str, client: tuple[str, int] | None) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_INTERVAL_SECONDS:
            where = f"{client[0]}:{client[1]}" if client else "a client"
            logger.warning(
                "Closed %d connection(s) for a limit in the last %.0f s; the last from %s: %s.",
                self.count, min(now - self.logged_at, LOG_INTERVAL_SECONDS), where, why,
            )  # fmt: skip
            self.count, self.logged_at = 0, now


_closed = _ClosedConnections()
