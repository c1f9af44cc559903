"""Tests for backends.local_connections: slow clients cannot hold the Local server.

The limits read from the environment first; then a real server (one worker, a tiny
registered model of the session) started with short timeouts (1.5 s) and a cap of 6
connections in its environment, talked to over raw sockets. The Local backend's settings
that set them: tests/backends/test_local_exposure.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
from support.places import ModelServer, Place
from support.rows import SPEC_ROW

from backends.local_connections import (
    BODY_TIMEOUT_VARIABLE,
    HEADER_TIMEOUT_VARIABLE,
    MAX_CONNECTIONS_VARIABLE,
    ConnectionLimits,
)

TIMEOUT = 1.5  # seconds, for headers and for a body
CAP = 6  # connections per worker
# How much later than its deadline a connection may be closed on a shared, busy machine.
SLACK = 5.0


def test_limits_come_from_the_environment_with_defaults() -> None:
    assert ConnectionLimits.from_environment({}) == ConnectionLimits(30.0, 30.0, 256)
    environment = {HEADER_TIMEOUT_VARIABLE: "2.5", BODY_TIMEOUT_VARIABLE: "4",
                   MAX_CONNECTIONS_VARIABLE: "9"}  # fmt: skip
    assert ConnectionLimits.from_environment(environment) == ConnectionLimits(2.5, 4.0, 9)


@pytest.mark.parametrize(
    ("variable", "value"),
    [(HEADER_TIMEOUT_VARIABLE, "0"), (BODY_TIMEOUT_VARIABLE, "-1"), (BODY_TIMEOUT_VARIABLE, "nan"),
     (HEADER_TIMEOUT_VARIABLE, "inf"), (MAX_CONNECTIONS_VARIABLE, "1.5"),
     (MAX_CONNECTIONS_VARIABLE, "many")],
)  # fmt: skip
def test_a_limit_that_is_not_a_positive_number_stops_the_server(variable, value) -> None:
    with pytest.raises(ValueError, match=variable):
        ConnectionLimits.from_environment({variable: value})


@dataclass(kw_only=True)
class LimitedServer(ModelServer):
    """A model server whose environment sets short deadlines and a small cap."""

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            HEADER_TIMEOUT_VARIABLE: str(TIMEOUT),
            BODY_TIMEOUT_VARIABLE: str(TIMEOUT),
            MAX_CONNECTIONS_VARIABLE: str(CAP),
        }


@pytest.fixture(scope="module")
def limited(serving_models, tmp_path_factory) -> Iterator[Place]:
    version = serving_models.good[0]
    server = LimitedServer(tmp_path_factory.mktemp("limited-server"), workers=1,
                           model_uri=serving_models.uri(version), version=version)  # fmt: skip
    try:
        server.start()
        yield server
    finally:
        server.stop()


def connect(place: Place) -> socket.socket:
    parsed = urlparse(place.target)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=TIMEOUT + 2 * SLACK)
    return sock


def seconds_until_closed(sock: socket.socket) -> tuple[float, bytes]:
    """How long until the server closes `sock`, and what it sent before."""
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - started, received


def request_bytes(body: bytes, close: bool = False) -> bytes:
    return (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )


ROW = json.dumps({"inputs": [SPEC_ROW]}).encode()


@pytest.mark.e2e
def test_a_client_sending_its_headers_slowly_is_cut_off(limited) -> None:
    """Issue 21: connections sending their headers slowly were all open after 130 s."""
    with connect(limited) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for _ in range(3):  # a header line now and then: each keeps uvicorn waiting
            time.sleep(0.3)
            sock.sendall(b"X-Slow: 1\r\n")
        took, received = seconds_until_closed(sock)
    assert TIMEOUT - 0.2 <= time.monotonic() - started <= TIMEOUT + SLACK, took
    assert received == b""


@pytest.mark.e2e
def test_a_connection_that_sends_nothing_is_closed_too(limited) -> None:
    with connect(limited) as sock:
        took, received = seconds_until_closed(sock)
    assert TIMEOUT - 0.2 <= took <= TIMEOUT + SLACK and received == b""


@pytest.mark.e2e
def test_the_next_request_on_a_kept_alive_connection_has_the_same_deadline(limited) -> None:
    with connect(limited) as sock:
        sock.sendall(request_bytes(ROW))
        answer = b""
        while b"predictions" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"POST /invocations HTTP/1.1\r\n")
        took, _ = seconds_until_closed(sock)
    assert took <= TIMEOUT + SLACK


@pytest.mark.e2e
def test_a_body_that_does_not_arrive_in_time_gets_a_408(limited) -> None:
    before = limited.captured_count()
    with connect(limited) as sock:
        sock.sendall(request_bytes(ROW)[:-10])  # all but the end of the body
        took, received = seconds_until_closed(sock)
    assert TIMEOUT - 0.2 <= took <= TIMEOUT + SLACK
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    assert json.loads(body)["error_code"] == "REQUEST_TIMEOUT"
    assert limited.captured_count() == before


@pytest.mark.e2e
def test_a_body_sent_slowly_within_the_deadline_is_answered(limited) -> None:
    message = request_bytes(ROW, close=True)
    with connect(limited) as sock:
        for start in range(0, len(message), 60):
            sock.sendall(message[start : start + 60])
            time.sleep(0.05)
        _, received = seconds_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]


@pytest.mark.e2e
def test_a_worker_at_its_connection_cap_answers_503_and_recovers(limited) -> None:
    held = [connect(limited) for _ in range(CAP)]
    try:
        time.sleep(0.2)  # let the worker accept them all
        with connect(limited) as extra:
            _, received = seconds_until_closed(extra)
    finally:
        for sock in held:
            sock.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503"), received[:200]
    assert json.loads(body)["error_code"] == "TOO_MANY_CONNECTIONS"
    time.sleep(0.2)
    with connect(limited) as sock:
        sock.sendall(request_bytes(ROW, close=True))
        _, received = seconds_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 200"), received[:200]


@pytest.mark.e2e
def test_connections_closed_for_a_limit_are_logged_in_summary(limited) -> None:
    from backends.local_server import LocalServer

    with connect(limited) as sock:
        seconds_until_closed(sock)
    log = LocalServer(limited.state_dir).state().log
    assert "connection(s) for a limit" in Path(log).read_text()
