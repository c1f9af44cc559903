"""Tests for common.registry: model URIs, and version look-ups whose search filters a
model name cannot break (issue 21: a quote in the name raised a raw MlflowException).

The look-ups run against the session's real MLflow registry.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from common.registry import equals_filter, model_uri, resolve_version


def test_model_uri() -> None:
    assert model_uri("penguins", "3") == "models:/penguins/3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("penguins", "name = 'penguins'"),
        ("it's", 'name = "it\'s"'),
        ('say "hi"', "name = 'say \"hi\"'"),
    ],
)
def test_equals_filter_quotes_with_the_quote_the_value_lacks(value: str, expected: str) -> None:
    assert equals_filter("name", value) == expected


def test_equals_filter_refuses_a_value_with_both_quotes() -> None:
    with pytest.raises(ValueError, match="holds both ' and \", which an MLflow search filter"):
        equals_filter("name", 'it\'s "quoted"')


def _registered(client: Any, name: str, directory: Path, versions: int = 2) -> str:
    """`name` registered with `versions` versions (no files: only the registry is read)."""
    client.create_registered_model(name)
    for _ in range(versions):
        client.create_model_version(name, source=str(directory))
    return name


@pytest.mark.parametrize("stem", ["it's", 'say "hi"', "100%_sure"])
def test_the_newest_version_of_a_name_with_quotes_is_found(
    mlflow_client: Any, tmp_path: Path, stem: str
) -> None:
    name = _registered(mlflow_client, f"{stem} {uuid.uuid4().hex[:8]}", tmp_path)
    assert resolve_version(mlflow_client, name, None) == "2"
    assert resolve_version(mlflow_client, name, "latest") == "2"
    assert resolve_version(mlflow_client, name, "1") == "1"


def test_a_name_no_filter_can_hold_is_a_lookup_error(mlflow_client: Any, tmp_path: Path) -> None:
    name = _registered(mlflow_client, f'it\'s "both" {uuid.uuid4().hex[:8]}', tmp_path, 1)
    with pytest.raises(LookupError) as info:
        resolve_version(mlflow_client, name, None)
    assert str(info.value).startswith(f"Model {name!r} cannot be looked up: ")
    assert "rename it (model.name in the project configuration)" in str(info.value)


def test_a_name_with_nothing_registered_says_how_to_register(mlflow_client: Any) -> None:
    with pytest.raises(LookupError, match='No version of model "nobody\'s" is registered'):
        resolve_version(mlflow_client, "nobody's", None)
