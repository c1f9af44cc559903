"""common.secrets: credentials leave URIs for the variables MLflow reads, and are shown
as `***` wherever a URI with them would be."""

from __future__ import annotations

import base64

import pytest

from common.secrets import (
    PASSWORD_VARIABLE,
    TOKEN_VARIABLE,
    URI_VARIABLE,
    USERNAME_VARIABLE,
    CredentialsError,
    authorization_header,
    clean_tracking_environment,
    credentials_to_environment,
    redact,
    split_credentials,
)

SECRET = "S3cretPw"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"http://alice:{SECRET}@host:5000/", "http://***@host:5000/"),
        (f"https://alice:{SECRET}@host", "https://***@host"),
        (f"https://{SECRET}@host/path?x=1", "https://***@host/path?x=1"),
        # A password with an unencoded `@`: everything up to the host goes.
        (f"http://alice:p@{SECRET}@host:5000", "http://***@host:5000"),
        (
            f"The server at http://alice:{SECRET}@h:1 and postgresql://u:{SECRET}@db/x failed",
            "The server at http://***@h:1 and postgresql://***@db/x failed",
        ),
        (f"'http://alice:{SECRET}@h'", "'http://***@h'"),
    ],
)
def test_redact_hides_the_user_information_of_every_url(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert SECRET not in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "http://127.0.0.1:5000",
        "sqlite:///tmp/mlflow.db",
        "models:/penguins/3",
        "models:/penguins@champion",
        "mailto:alice@example.com",
        "s3://bucket/key@2024",
        "a user@host said hello",
    ],
)
def test_redact_leaves_text_without_credentials_alone(text: str) -> None:
    assert redact(text) == text


def test_split_credentials_percent_decodes_and_keeps_the_rest_of_the_uri() -> None:
    assert split_credentials("http://al%40ice:p%3Ass%2Fw@host:5000/x?y=1") == (
        "http://host:5000/x?y=1",
        "al@ice",
        "p:ss/w",
    )
    assert split_credentials("https://token@host") == ("https://host", "token", None)
    assert split_credentials("http://alice:@host") == ("http://host", "alice", "")
    for plain in ("http://host:5000", "sqlite:///a@b.db", "models:/m@champion", ""):
        assert split_credentials(plain) == (plain, None, None)


def test_credentials_move_to_the_variables_mlflow_reads() -> None:
    environ: dict[str, str] = {}
    assert credentials_to_environment(f"http://alice:{SECRET}@host:5000", environ) == (
        "http://host:5000"
    )
    assert environ == {USERNAME_VARIABLE: "alice", PASSWORD_VARIABLE: SECRET}
    # Again, with the same credentials (a second parse in the same process): accepted.
    assert credentials_to_environment(f"http://alice:{SECRET}@host:5000", environ) == (
        "http://host:5000"
    )
    # A URI without credentials leaves the variables alone.
    assert credentials_to_environment("http://host:5000", environ) == "http://host:5000"
    assert environ == {USERNAME_VARIABLE: "alice", PASSWORD_VARIABLE: SECRET}


def test_credentials_that_disagree_with_the_variables_are_refused_without_showing_them() -> None:
    environ = {USERNAME_VARIABLE: "alice", PASSWORD_VARIABLE: "other-password"}
    with pytest.raises(CredentialsError) as info:
        credentials_to_environment(f"http://alice:{SECRET}@host:5000", environ)
    message = str(info.value)
    assert "http://***@host:5000" in message
    assert f"and {PASSWORD_VARIABLE} holds different ones" in message
    assert SECRET not in message and "other-password" not in message
    assert environ == {USERNAME_VARIABLE: "alice", PASSWORD_VARIABLE: "other-password"}


def test_a_tracking_uri_variable_loses_its_credentials_too() -> None:
    environ = {URI_VARIABLE: f"http://alice:{SECRET}@host:5000", "OTHER": "x"}
    clean_tracking_environment(environ)
    assert environ == {
        URI_VARIABLE: "http://host:5000",
        USERNAME_VARIABLE: "alice",
        PASSWORD_VARIABLE: SECRET,
        "OTHER": "x",
    }
    clean_tracking_environment(environ)  # nothing left to move
    assert environ[URI_VARIABLE] == "http://host:5000"


def test_the_authorization_header_is_the_one_mlflow_sends() -> None:
    basic = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    both = {USERNAME_VARIABLE: "alice", PASSWORD_VARIABLE: SECRET, TOKEN_VARIABLE: "tok"}
    assert authorization_header(both) == {"Authorization": f"Basic {basic}"}
    assert authorization_header({TOKEN_VARIABLE: "tok"}) == {"Authorization": "Bearer tok"}
    assert authorization_header({USERNAME_VARIABLE: "alice"}) == {}
    assert authorization_header({}) == {}
