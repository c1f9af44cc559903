"""Keeping credentials out of everything the pipelines show, store or hand to a child.

A tracking URI may carry a user name and password (`http://alice:S3cret@host:5000`).
Whatever holds such a URI shows it: a log line, a card, a stored Metaflow parameter,
an MLflow tag, a child's command line. So the pipelines never keep one:
`credentials_to_environment` moves the user name and password into
MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, which MLflow's REST client reads
for every request (and which child processes inherit), and returns the URI without
them. `redact` is the one way to show a text that might hold a URI with credentials.

Only the standard library: every task imports this module.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, MutableMapping
from urllib.parse import unquote, urlsplit, urlunsplit

USERNAME_VARIABLE = "MLFLOW_TRACKING_USERNAME"
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"
URI_VARIABLE = "MLFLOW_TRACKING_URI"
REDACTED = "***"

# `scheme://userinfo@`: the user information of a URL runs to the last `@` before the
# path, query or fragment starts (RFC 3986 wants `/`, `?` and `#` percent-encoded in it).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/?#\s\"'<>]*@")


class CredentialsError(ValueError):
    """A URI's credentials disagree with the ones the environment already gives."""


def redact(text: str) -> str:
    """`text` with the user name and password of every URL in it replaced by `***`."""
    return _USERINFO.sub(rf"\g<scheme>{REDACTED}@", text)


def split_credentials(uri: str) -> tuple[str, str | None, str | None]:
    """`uri` without its user information, and the user name and password it held
    (percent-decoded; None when absent)."""
    if "@" not in uri:
        return uri, None, None
    parts = urlsplit(uri)
    if not parts.netloc or "@" not in parts.netloc:
        return uri, None, None
    userinfo, _, host = parts.netloc.rpartition("@")
    username, has_password, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=host))
    return bare, unquote(username) or None, unquote(password) if has_password else None


def credentials_to_environment(uri: str, environ: MutableMapping[str, str] | None = None) -> str:
    """`uri` without credentials; the ones it held go to MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD in `environ` (the process's environment by default).

    Raises `CredentialsError` when those variables already hold different values: which
    ones to use is the user's choice, not a guess. The message names no secret.
    """
    environ = os.environ if environ is None else environ
    bare, username, password = split_credentials(uri)
    moved = {USERNAME_VARIABLE: username, PASSWORD_VARIABLE: password}
    moved = {name: value for name, value in moved.items() if value is not None}
    clashing = [name for name, value in moved.items() if environ.get(name, value) != value]
    if clashing:
        raise CredentialsError(
            f"The tracking URI {redact(uri)} carries credentials, and {' and '.join(clashing)} "
            "holds different ones. Keep one of them: remove the user name and password from "
            f"the URI (recommended: {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or "
            f"{TOKEN_VARIABLE}, are never shown), or unset the variables."
        )
    environ.update(moved)
    return bare


def clean_tracking_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Move the credentials of a MLFLOW_TRACKING_URI variable into their own variables,
    so that no child process inherits a URI that shows them."""
    environ = os.environ if environ is None else environ
    uri = environ.get(URI_VARIABLE)
    if uri:
        environ[URI_VARIABLE] = credentials_to_environment(uri, environ)


def authorization_header(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The `Authorization` header MLflow's client would send, from the same variables:
    basic authentication, else a bearer token (MLflow's order); empty without either."""
    environ = os.environ if environ is None else environ
    username, password = environ.get(USERNAME_VARIABLE), environ.get(PASSWORD_VARIABLE)
    if username and password:
        pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {pair}"}
    if environ.get(TOKEN_VARIABLE):
        return {"Authorization": f"Bearer {environ[TOKEN_VARIABLE]}"}
    return {}
