"""Who may call the Local backend's server, and what a request and a connection may take.

The server answers anyone who can reach its `backend.target`. On 127.0.0.1 that is this
machine's users; on any other address, the network. So:

- The token lives in an environment variable, `PENGUINS_API_TOKEN` unless
  `backend.auth_token_variable` names another: never in a config file, which Metaflow
  stores with every run. When it is set, the server requires `Authorization: Bearer
  <token>` on every request but its health check, and the pipelines' clients send it.
- A target that is not a loopback address refuses to deploy without a token, unless
  `backend.allow_unauthenticated: true` says that is meant.
- `server_environment` hands the server its token and limits through its environment
  (never its command line, which `ps` shows to every user): the HTTP guard's body
  limit (`inference.http_guard`) and the connection limits
  (`backends.local_connections`).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import urlparse

from backends.base import BackendError

DEFAULT_TOKEN_VARIABLE = "PENGUINS_API_TOKEN"
# The variables the server's process reads: inference.http_guard's (in the model's copy of
# that package), backends.local_launcher's and backends.local_connections'. Spelled here
# so that a deployment imports neither pandas nor uvicorn for them (a test checks they agree).
SERVER_TOKEN_VARIABLE = "SERVING_AUTH_TOKEN"
SERVER_MAX_BYTES_VARIABLE = "SERVING_MAX_REQUEST_BYTES"
HEADER_TIMEOUT_VARIABLE = "SERVING_HEADER_TIMEOUT"
BODY_TIMEOUT_VARIABLE = "SERVING_BODY_TIMEOUT"
MAX_CONNECTIONS_VARIABLE = "SERVING_MAX_CONNECTIONS"
MIN_TOKEN_LENGTH = 16
MAKE_A_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def auth_token(variable: str) -> str | None:
    """The token in environment variable `variable`, None if it is unset or empty.

    BackendError for a token too short to resist guessing, or one that cannot be sent
    in an HTTP header (spaces, control or non-ASCII characters).
    """
    token = os.environ.get(variable)
    if not token:
        return None
    if len(token) < MIN_TOKEN_LENGTH or not all(33 <= ord(c) <= 126 for c in token):
        raise BackendError(
            f"{variable} must hold at least {MIN_TOKEN_LENGTH} printable ASCII characters "
            f"without spaces (it holds {len(token)} characters). Make one with: {MAKE_A_TOKEN}"
        )
    return token


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name may resolve to any address: take it for a reachable one


def check_exposure(
    target: str, token: str | None, allow_unauthenticated: bool, variable: str
) -> None:
    """BackendError if the server would answer anyone beyond this machine without a token."""
    host = urlparse(target).hostname or ""
    if token is not None or allow_unauthenticated or is_loopback(host):
        return
    raise BackendError(
        f"backend.target {target} listens on {host}, which other machines can reach, and no "
        f"token is set: anyone there could use the model and fill the capture store. Set "
        f"{variable} to a token (make one with: {MAKE_A_TOKEN}; backend.auth_token_variable "
        "names another variable), or set backend.allow_unauthenticated: true if something "
        "in front of the server authenticates its callers."
    )


def server_environment(settings: Any, token: str | None) -> dict[str, str]:
    """What the server process reads for its token and limits, from the `backend:`
    settings (see `backends.local.LocalSettings`).

    Every variable is set, even to nothing: the server must not take a token or a limit
    from the environment of whoever deploys it.
    """
    return {
        SERVER_TOKEN_VARIABLE: token or "",
        SERVER_MAX_BYTES_VARIABLE: str(settings.max_request_bytes or ""),
        HEADER_TIMEOUT_VARIABLE: str(settings.header_timeout),
        BODY_TIMEOUT_VARIABLE: str(settings.body_timeout),
        MAX_CONNECTIONS_VARIABLE: str(settings.max_connections),
    }


def authorization_header(token: str | None) -> dict[str, str]:
    """The header a client sends with `token` (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}
