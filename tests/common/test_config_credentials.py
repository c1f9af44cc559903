"""common.config keeps no credentials: a tracking URI's `user:password@`, from the file, a
placeholder or MLFLOW_TRACKING_URI, leaves the settings Metaflow stores with every run for
the variables MLflow reads. What the parser does otherwise is tests/common/test_config.py's.
"""

from __future__ import annotations

import json
import os

import pytest
from support.configuration import clean_environment, minimal, parse  # noqa: F401

from common.secrets import PASSWORD_VARIABLE, TOKEN_VARIABLE, URI_VARIABLE, USERNAME_VARIABLE
from common.settings import ConfigurationError

SECRET = "S3cretPw"
WITH_CREDENTIALS = f"http://alice:{SECRET}@tracking.internal:5000"
BARE = "http://tracking.internal:5000"


@pytest.fixture(autouse=True)
def no_tracking_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the variables, and whatever the parser sets in them undone after the test
    (set first, so that monkeypatch records them)."""
    for name in (USERNAME_VARIABLE, PASSWORD_VARIABLE, TOKEN_VARIABLE, "TRACKING"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def assert_moved_to_the_environment(settings: dict) -> None:
    assert settings["mlflow_tracking_uri"] == BARE
    assert SECRET not in json.dumps(settings)
    assert (os.environ[USERNAME_VARIABLE], os.environ[PASSWORD_VARIABLE]) == ("alice", SECRET)


def test_credentials_in_the_file_leave_the_settings() -> None:
    assert_moved_to_the_environment(parse({**minimal(), "mlflow_tracking_uri": WITH_CREDENTIALS}))


def test_credentials_from_a_placeholder_leave_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TRACKING", WITH_CREDENTIALS)
    assert_moved_to_the_environment(parse({**minimal(), "mlflow_tracking_uri": "${TRACKING}"}))


def test_credentials_in_the_tracking_uri_variable_leave_it_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(URI_VARIABLE, WITH_CREDENTIALS)
    assert_moved_to_the_environment(parse(minimal()))
    # Every child process inherits the variable: it no longer shows them either.
    assert os.environ[URI_VARIABLE] == BARE


def test_credentials_that_disagree_with_the_variables_are_refused_unshown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, "Another-Pw")
    with pytest.raises(ConfigurationError) as info:
        parse({**minimal(), "mlflow_tracking_uri": WITH_CREDENTIALS})
    message = str(info.value)
    assert message.startswith("mlflow_tracking_uri: ")
    assert "http://***@tracking.internal:5000" in message and PASSWORD_VARIABLE in message
    assert SECRET not in message and "Another-Pw" not in message
