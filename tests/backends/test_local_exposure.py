"""Tests for backends.local_exposure: who may call the Local backend's server.

The checks alone first; then a real server deployed with a token (the session's tiny
registered models, support/serving.py), which every request but the health check must
carry, and which the Local backend's client sends.
"""

from __future__ import annotations

import http.server
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import pytest
from support.http_threads import serving_in_thread
from support.places import Place
from support.ports import free_port
from support.rows import SPEC_ROW

from backends import local_connections, local_exposure, local_launcher
from backends.base import BackendError, SettingsError
from backends.local import Local
from backends.local_exposure import (
    DEFAULT_TOKEN_VARIABLE,
    auth_token,
    check_exposure,
    is_loopback,
    server_environment,
)
from backends.local_server import LocalServer, ping

TOKEN = "a-token-long-enough-to-use-0123456789"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("LocalHost", True), ("0.0.0.0", False), ("::", False),
     ("10.1.2.3", False), ("192.168.1.5", False), ("example.com", False), ("", False)],
)  # fmt: skip
def test_only_loopback_hosts_count_as_this_machine(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_an_open_bind_without_a_token_is_refused_saying_what_to_do() -> None:
    with pytest.raises(BackendError) as raised:
        check_exposure("http://0.0.0.0:8080/invocations", None, False, DEFAULT_TOKEN_VARIABLE)
    message = str(raised.value)
    for fragment in ("0.0.0.0", DEFAULT_TOKEN_VARIABLE, "allow_unauthenticated: true",
                     "secrets.token_urlsafe"):  # fmt: skip
        assert fragment in message, message


@pytest.mark.parametrize(
    ("target", "token", "allowed"),
    [("http://0.0.0.0:8080/invocations", TOKEN, False),
     ("http://0.0.0.0:8080/invocations", None, True),
     ("http://127.0.0.1:8080/invocations", None, False),
     ("http://localhost:8080/invocations", None, False)],
)  # fmt: skip
def test_a_token_a_loopback_target_or_an_explicit_allowance_may_serve(target, token, allowed):
    check_exposure(target, token, allowed, DEFAULT_TOKEN_VARIABLE)


def test_deploying_on_an_open_address_without_a_token_starts_nothing(tmp_path, monkeypatch):
    """Issue 21: `backend.target: http://0.0.0.0:8080/invocations` was taken without a word."""
    monkeypatch.delenv(DEFAULT_TOKEN_VARIABLE, raising=False)
    port = free_port()
    backend = Local({
        "target": f"http://0.0.0.0:{port}/invocations",
        "state_dir": str(tmp_path / "serving"),
        "database": str(tmp_path / "capture.db"),
    })  # fmt: skip
    with pytest.raises(BackendError, match="allow_unauthenticated"):
        backend.deploy("models:/any/1", "1")
    with pytest.raises(BackendError, match="allow_unauthenticated"):
        backend.prepare("models:/any/1", "1")
    assert not (tmp_path / "serving" / "server.json").exists()
    assert backend.deployed_version() is None


def test_the_token_comes_from_the_variable_the_settings_name(monkeypatch) -> None:
    monkeypatch.delenv("MY_TOKEN", raising=False)
    assert auth_token("MY_TOKEN") is None
    monkeypatch.setenv("MY_TOKEN", "")
    assert auth_token("MY_TOKEN") is None
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    assert auth_token("MY_TOKEN") == TOKEN


@pytest.mark.parametrize("token", ["short", "has a space in it 0123456789", "tab\there-0123456789",
                                   "naïve-non-ascii-0123456789"])  # fmt: skip
def test_a_token_that_is_short_or_cannot_go_in_a_header_is_refused(monkeypatch, token) -> None:
    monkeypatch.setenv("MY_TOKEN", token)
    with pytest.raises(BackendError, match="MY_TOKEN must hold at least 16"):
        auth_token("MY_TOKEN")


def test_the_new_settings_have_safe_defaults() -> None:
    settings = Local({}).settings
    assert settings.auth_token_variable == "PENGUINS_API_TOKEN"
    assert settings.allow_unauthenticated is False
    assert settings.max_request_bytes is None
    assert (settings.header_timeout, settings.body_timeout) == (30.0, 30.0)
    assert settings.max_connections == 256


@pytest.mark.parametrize(
    ("key", "value"),
    [("header_timeout", 0), ("body_timeout", -1.0), ("max_request_bytes", 0),
     ("max_connections", 0)],
)  # fmt: skip
def test_limits_must_be_positive(key: str, value: float) -> None:
    with pytest.raises(SettingsError, match=f"backend.{key}: must be (a )?positive"):
        Local({key: value})


def test_a_token_written_in_the_config_is_refused_pointing_at_the_variable() -> None:
    """The config is stored with every Metaflow run: the token stays in the environment."""
    with pytest.raises(SettingsError, match="did you mean auth_token_variable"):
        Local({"auth_token": TOKEN})


def test_the_server_is_given_every_limit_and_never_an_inherited_token(monkeypatch) -> None:
    monkeypatch.setenv("SERVING_AUTH_TOKEN", "inherited-from-whoever-deploys")
    settings = Local({"max_request_bytes": 5000, "header_timeout": 2.5}).settings
    assert server_environment(settings, None) == {
        "SERVING_AUTH_TOKEN": "",
        "SERVING_MAX_REQUEST_BYTES": "5000",
        "SERVING_HEADER_TIMEOUT": "2.5",
        "SERVING_BODY_TIMEOUT": "30.0",
        "SERVING_MAX_CONNECTIONS": "256",
    }
    assert server_environment(settings, TOKEN)["SERVING_AUTH_TOKEN"] == TOKEN


def test_the_variable_names_agree_with_what_the_server_reads() -> None:
    from inference import http_guard

    assert local_exposure.SERVER_TOKEN_VARIABLE == http_guard.TOKEN_VARIABLE
    assert local_exposure.SERVER_TOKEN_VARIABLE == local_launcher.TOKEN_VARIABLE
    assert local_exposure.SERVER_MAX_BYTES_VARIABLE == http_guard.MAX_BYTES_VARIABLE
    for name in ("HEADER_TIMEOUT_VARIABLE", "BODY_TIMEOUT_VARIABLE", "MAX_CONNECTIONS_VARIABLE"):
        assert getattr(local_exposure, name) == getattr(local_connections, name)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every POST with no predictions (or `status`), recording its headers."""

    status: ClassVar[int] = 200
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        _Recorder.seen.append(dict(self.headers))
        body = b'{"predictions": []}' if self.status == 200 else b'{"message": "no"}'
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[str]:
    _Recorder.seen, _Recorder.status = [], 200
    server = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    with serving_in_thread(server) as port:
        yield f"http://127.0.0.1:{port}/invocations"


def test_the_client_sends_the_token_when_one_is_set(recorder, monkeypatch) -> None:
    monkeypatch.setenv("MY_TOKEN", TOKEN)
    Local({"target": recorder, "auth_token_variable": "MY_TOKEN"}).invoke([SPEC_ROW])
    monkeypatch.delenv("MY_TOKEN")
    Local({"target": recorder, "auth_token_variable": "MY_TOKEN"}).invoke([SPEC_ROW])
    assert [headers.get("Authorization") for headers in _Recorder.seen] == [f"Bearer {TOKEN}", None]


def test_a_401_says_which_variable_to_set(recorder, monkeypatch) -> None:
    monkeypatch.delenv(DEFAULT_TOKEN_VARIABLE, raising=False)
    _Recorder.status = 401
    with pytest.raises(BackendError, match=f"answered 401.*Set {DEFAULT_TOKEN_VARIABLE} to the"):
        Local({"target": recorder}).invoke([SPEC_ROW])


# --- a real server with a token --------------------------------------------------------


@pytest.fixture(scope="module")
def token_server(serving_models, tmp_path_factory) -> Iterator[tuple[Place, Local]]:
    """A good version deployed by the Local backend with PENGUINS_API_TOKEN set."""
    place = Place(tmp_path_factory.mktemp("token-server"), workers=1, max_batch_size=50)
    saved = os.environ.get(DEFAULT_TOKEN_VARIABLE)
    os.environ[DEFAULT_TOKEN_VARIABLE] = TOKEN
    backend = Local(place.backend_config())
    try:
        backend.deploy(serving_models.uri(serving_models.good[0]), serving_models.good[0])
        yield place, backend
    finally:
        backend.stop()
        if saved is None:
            os.environ.pop(DEFAULT_TOKEN_VARIABLE, None)
        else:
            os.environ[DEFAULT_TOKEN_VARIABLE] = saved


def post(url: str, authorization: str | None) -> tuple[int, dict]:
    import http.client

    parsed = urlparse(url)
    client = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    try:
        client.request("POST", parsed.path, json.dumps({"inputs": [SPEC_ROW]}), headers)
        response = client.getresponse()
        return response.status, json.loads(response.read())
    finally:
        client.close()


def captured_count(place: Place) -> int:
    with sqlite3.connect(place.database) as connection:
        return connection.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


@pytest.mark.e2e
def test_the_pipelines_client_sends_the_token_and_gets_answers(token_server) -> None:
    place, backend = token_server
    (prediction,) = backend.invoke([SPEC_ROW])["predictions"]
    assert prediction["prediction"] == "Gentoo"
    assert prediction["id"] in place.captured_rows([prediction["id"]])


@pytest.mark.e2e
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", f"Basic {TOKEN}"])
def test_a_request_without_the_token_gets_a_401_and_nothing_is_captured(
    token_server, authorization
) -> None:
    place, _ = token_server
    before = captured_count(place)
    status, payload = post(place.target, authorization)
    assert status == 401
    assert "Authorization: Bearer" in payload["message"]
    assert captured_count(place) == before


@pytest.mark.e2e
def test_the_health_check_needs_no_token(token_server) -> None:
    place, backend = token_server
    assert ping(place.target)
    assert backend.deployed_version() is not None


@pytest.mark.e2e
def test_the_token_reaches_the_server_by_its_environment_only(token_server) -> None:
    place, _ = token_server
    state = LocalServer(place.state_dir).state()
    assert TOKEN.encode() not in Path(f"/proc/{state.pid}/cmdline").read_bytes()
    assert f"SERVING_AUTH_TOKEN={TOKEN}".encode() in Path(f"/proc/{state.pid}/environ").read_bytes()
    for path in place.state_dir.glob("*.json"):
        assert TOKEN not in path.read_text(), path
    assert TOKEN not in Path(state.log).read_text()


@pytest.mark.e2e
def test_a_model_that_checks_no_token_is_not_served_with_one(token_server, serving_models) -> None:
    """A model registered before the HTTP guard (here: one without it) would answer anyone:
    its server stops before accepting, and the server that was serving still does."""
    place, backend = token_server
    serving = backend.deployed_version()
    with pytest.raises(BackendError, match="registered before servers checked tokens"):
        backend.deploy(serving_models.uri(serving_models.broken), serving_models.broken)
    assert backend.deployed_version() == serving
    assert post(place.target, f"Bearer {TOKEN}")[0] == 200
