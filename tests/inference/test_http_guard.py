"""Tests for inference.http_guard: the server's front door, in process around an app that
records what reaches it, and for real in `mlflow models serve` (what `just serve` runs).

The guard in the Local backend's server, and its interplay with MLflow's scoring app,
are tested over HTTP in test_request_guard.py and tests/backends/test_local_exposure.py.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from support.asgi import BEARER, JSON, TOKEN, call
from support.ports import free_port
from support.request_bodies import parquet_body
from support.rows import SPEC_ROW

from inference.http_guard import (
    APP_MODULE,
    MAX_BYTES_VARIABLE,
    TOKEN_VARIABLE,
    HttpGuard,
    HttpLimits,
    default_max_request_bytes,
    install_http_guard,
)

LIMITS = HttpLimits(auth_token=TOKEN, max_request_bytes=1000, max_rows=5)


class RecordingApp:
    """An ASGI app that answers 200 with the body and headers that reached it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        more = scope["type"] == "http" and scope["method"] == "POST"
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.requests.append(
            {"path": scope["path"], "headers": dict(scope["headers"]), "body": body}
        )
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
def app() -> RecordingApp:
    return RecordingApp()


@pytest.fixture
def guard(app: RecordingApp) -> HttpGuard:
    return HttpGuard(app, LIMITS)


def assert_json_error(answer, status: int, *fragments: str) -> None:
    assert answer.status == status, answer
    assert answer.headers[b"content-type"] == b"application/json"
    payload = answer.json()
    assert isinstance(payload["error_code"], str)
    for fragment in fragments:
        assert fragment in payload["message"], payload["message"]


# --- authentication ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/ping", "/health"])
def test_the_health_check_needs_no_token(guard, app, path: str) -> None:
    assert call(guard, path, "GET").status == 200
    assert [r["path"] for r in app.requests] == [path]


@pytest.mark.parametrize(
    "authorization",
    [None, b"", b"Bearer", b"Bearer ", b"Bearer wrong", f"Basic {TOKEN}".encode(),
     f"Bearer {TOKEN}x".encode(), f"Bearer {TOKEN[:-1]}".encode(), TOKEN.encode()],
)  # fmt: skip
def test_a_request_without_the_token_gets_a_401_and_reaches_nothing(guard, app, authorization):
    headers = [JSON] + ([(b"authorization", authorization)] if authorization is not None else [])
    answer = call(guard, headers=headers, chunks=[b'{"inputs": []}'])
    assert_json_error(answer, 401, "Authorization: Bearer")
    assert answer.headers[b"www-authenticate"].startswith(b"Bearer")
    assert app.requests == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_token_is_accepted_with_any_spelling_of_the_scheme(guard, app, scheme) -> None:
    answer = call(guard, headers=[JSON, (b"authorization", f"{scheme} {TOKEN}".encode())])
    assert answer.status == 200
    assert len(app.requests) == 1


def test_the_token_is_compared_in_constant_time(monkeypatch, guard) -> None:
    import hmac

    compared: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest
    monkeypatch.setattr(
        hmac, "compare_digest", lambda a, b: compared.append((a, b)) or original(a, b)
    )
    call(guard, headers=[JSON, (b"authorization", b"Bearer guess")])
    assert compared == [(b"guess", TOKEN.encode())]


def test_without_a_token_configured_no_request_needs_one(app) -> None:
    open_guard = HttpGuard(app, HttpLimits(None, 1000, 5))
    assert call(open_guard, headers=[JSON]).status == 200


@pytest.mark.parametrize("path", ["/version", "/docs", "/openapi.json", "/", "/invocations/x"])
def test_only_invocations_and_the_health_check_are_served(guard, app, path: str) -> None:
    assert_json_error(call(guard, path, "GET", headers=[BEARER]), 404, "/invocations")
    assert call(guard, path, "GET").status == 401  # a stranger learns nothing either way
    assert app.requests == []


# --- content types -------------------------------------------------------------------


def test_a_missing_content_type_gets_a_415_naming_the_accepted_ones(guard, app) -> None:
    answer = call(guard, headers=[BEARER], chunks=[b'{"inputs": []}'])
    assert_json_error(answer, 415, "application/json", "text/csv", "application/vnd.apache.parquet")
    assert app.requests == []


def test_the_content_type_reaches_the_app_in_its_canonical_spelling(guard, app) -> None:
    headers = [BEARER, (b"content-type", b"Application/JSON; Charset=UTF-8")]
    assert call(guard, headers=headers, chunks=[b"{}"]).status == 200
    assert app.requests[0]["headers"][b"content-type"] == b"application/json"


# --- sizes ---------------------------------------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_reading(guard, app) -> None:
    headers = [BEARER, JSON, (b"content-length", b"3000")]
    answer = call(guard, headers=headers, chunks=[b"x" * 3000])
    assert_json_error(answer, 413, "1000 bytes", "max_request_bytes")
    assert app.requests == [] and answer.chunks_read == 0
    # uvicorn reads and drops the body, so that a client sending it whole gets the answer,
    # where a close would reset the connection under it.
    assert b"connection" not in answer.headers


def test_a_client_waiting_to_be_told_to_go_on_is_refused_and_disconnected(guard) -> None:
    """With `Expect: 100-continue` the body never comes: what follows would be taken for it."""
    headers = [BEARER, JSON, (b"content-length", b"100000"), (b"expect", b"100-continue")]
    answer = call(guard, headers=headers)
    assert answer.status == 413 and answer.headers[b"connection"] == b"close"
    assert answer.chunks_read == 0  # reading would have told the client to send it


def test_a_streamed_body_is_refused_once_it_passes_the_limit(guard, app) -> None:
    headers = [BEARER, JSON, (b"transfer-encoding", b"chunked")]
    chunks = [b" " * 400] * 10
    answer = call(guard, headers=headers, chunks=chunks)
    assert_json_error(answer, 413, "1000 bytes")
    assert answer.chunks_read == 3  # it stopped reading at 1200 bytes: the server drops the rest
    assert app.requests == []


def test_a_body_within_the_limit_reaches_the_app_whole_however_it_was_sent(guard, app) -> None:
    body = json.dumps({"inputs": [SPEC_ROW] * 3}).encode()
    chunks = [body[i : i + 50] for i in range(0, len(body), 50)]
    headers = [BEARER, JSON, (b"transfer-encoding", b"chunked")]
    assert call(guard, headers=headers, chunks=chunks, pause=0.001).status == 200
    assert app.requests[0]["body"] == body


def test_a_client_that_leaves_midway_gets_nothing_and_the_app_sees_nothing(app) -> None:
    import asyncio

    guard = HttpGuard(app, LIMITS)
    sent: list[dict] = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": [BEARER, JSON]}
    asyncio.run(guard(scope, receive, send))
    assert sent == [] and app.requests == []


def csv_body(rows: int) -> bytes:
    return b"island,sex\n" + b"Biscoe,MALE\n" * rows


@pytest.mark.parametrize(
    ("kind", "body", "status"),
    [
        (b"text/csv", csv_body(5), 200),
        (b"text/csv", csv_body(6), 413),
        (b"text/csv", b"island\n" + b"\n\n" * 20 + b"Biscoe\n", 200),  # blank lines are no rows
    ],
)
def test_csv_rows_are_counted_before_decoding(guard, app, kind, body, status) -> None:
    answer = call(guard, headers=[BEARER, (b"content-type", kind)], chunks=[body])
    assert answer.status == status
    if status == 413:
        assert_json_error(answer, 413, "Too many rows: 6", "maximum per request is 5")
        assert app.requests == []


def test_a_parquet_bomb_is_refused_from_its_footer(app) -> None:
    bomb = parquet_body(3_000_000)
    guard = HttpGuard(app, HttpLimits(TOKEN, 100_000, 50))
    started = time.perf_counter()
    answer = call(guard, headers=[BEARER, (b"content-type", b"application/vnd.apache.parquet")],
                  chunks=[bomb])  # fmt: skip
    assert time.perf_counter() - started < 1.0
    assert_json_error(answer, 413, "Too many rows: 3000000")
    assert app.requests == []


def test_a_body_that_is_not_parquet_gets_a_400(guard, app) -> None:
    headers = [BEARER, (b"content-type", b"application/vnd.apache.parquet")]
    assert_json_error(call(guard, headers=headers, chunks=[b"PAR1 nope"]), 400, "Parquet")


# --- settings ------------------------------------------------------------------------


def test_limits_come_from_the_environment() -> None:
    limits = HttpLimits.from_environment({TOKEN_VARIABLE: TOKEN, MAX_BYTES_VARIABLE: "2048"}, 7)
    assert limits == HttpLimits(TOKEN, 2048, 7)
    assert HttpLimits.from_environment({TOKEN_VARIABLE: ""}, 7).auth_token is None


def test_the_default_body_limit_is_sized_from_the_batch_limit() -> None:
    assert default_max_request_bytes(1000) == 1024 * 1024  # 1 MiB, as documented
    assert default_max_request_bytes(50) == 1024 * 1024
    assert default_max_request_bytes(10_000) == 10_000 * 1024
    assert HttpLimits.from_environment({}, 10_000).max_request_bytes == 10_000 * 1024


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "lots"])
def test_a_body_limit_that_is_not_a_positive_integer_stops_the_server(value: str) -> None:
    with pytest.raises(ValueError, match=MAX_BYTES_VARIABLE):
        HttpLimits.from_environment({MAX_BYTES_VARIABLE: value}, 7)


# --- installation --------------------------------------------------------------------


def test_the_guard_is_put_in_front_of_the_app_being_built(monkeypatch, app) -> None:
    """As MLflow's app module runs `app = init(load_model(...))`: the model loads (and
    installs the guard) before `app` exists; the importer then asks the module for it."""
    building = types.ModuleType(APP_MODULE)
    monkeypatch.setitem(sys.modules, APP_MODULE, building)
    assert install_http_guard(LIMITS)
    building.app = app  # `init` returns, the module's code assigns it
    served = sys.modules[APP_MODULE]
    assert served is not building
    assert isinstance(served.app, HttpGuard) and served.app.app is app
    assert served.app is served.app  # one guard, however often it is asked for


def test_nothing_is_installed_outside_a_server_or_once_its_app_is_built(monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, APP_MODULE, raising=False)
    assert not install_http_guard(LIMITS)
    built = types.ModuleType(APP_MODULE)
    built.app = object()
    monkeypatch.setitem(sys.modules, APP_MODULE, built)
    assert not install_http_guard(LIMITS)
    assert sys.modules[APP_MODULE] is built


# --- `mlflow models serve`, as `just serve` runs it ----------------------------------


@pytest.fixture(scope="module")
def mlflow_models_serve(serving_models, tmp_path_factory) -> Any:
    """`mlflow models serve` of a good version with a token and 50 rows a request."""
    directory = tmp_path_factory.mktemp("models-serve")
    port = free_port()
    environment = {
        **os.environ,
        TOKEN_VARIABLE: TOKEN,
        "SERVING_MAX_BATCH_SIZE": "50",
        "SERVING_CAPTURE_DATABASE": str(directory / "capture.db"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m",
               serving_models.uri(serving_models.good[0]), "--env-manager", "local",
               "-h", "127.0.0.1", "-p", str(port)]  # fmt: skip
    with open(directory / "server.log", "wb") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if request(url, "/ping", "GET")[0] == 200:
                break
            time.sleep(0.5)
        else:
            pytest.fail(
                f"mlflow models serve did not start:\n{(directory / 'server.log').read_text()}"
            )
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def request(url: str, path: str, method: str = "POST", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str]:  # fmt: skip
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url + path, body, headers or {}, method=method), timeout=30
        ) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


def announce_body(url: str, path: str, headers: dict[str, str], length: int) -> tuple[int, str]:
    """POST headers announcing a `length`-byte body and waiting to be told to send it
    (`Expect: 100-continue`); the status and body of the answer."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        for name, value in {**headers, "Content-Length": str(length)}.items():
            connection.putheader(name, value)
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.e2e
def test_mlflow_models_serve_checks_the_token_and_the_limits(mlflow_models_serve) -> None:
    url = mlflow_models_serve
    row = json.dumps({"inputs": [SPEC_ROW]}).encode()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    status, text = request(
        url, "/invocations", body=row, headers={"Content-Type": "application/json"}
    )
    assert status == 401, text
    status, text = request(url, "/invocations", body=row,
                           headers={**auth, "Content-Type": "Application/JSON"})  # fmt: skip
    assert status == 200, text
    assert json.loads(text)["predictions"][0]["prediction"] == "Gentoo"
    assert request(url, "/invocations", body=row, headers=auth)[0] == 415
    assert request(url, "/version", "GET", headers=auth)[0] == 404
    # The body is announced, not sent: urllib sends a whole body before it reads, and under
    # plain `mlflow models serve` the early 413 then sometimes meets a broken pipe instead
    # (seen in 2 runs of 7; the Local launcher's tests send whole bodies).
    status, text = announce_body(
        url,
        "/invocations",
        {**auth, "Content-Type": "application/json"},
        default_max_request_bytes(50) + 1,
    )
    assert status == 413, text
    assert "max_request_bytes" in json.loads(text)["message"]
