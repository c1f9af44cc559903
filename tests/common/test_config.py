"""Tests for common.config: parsing, placeholder expansion, defaults and validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import (
    DEFAULT_BACKEND,
    DEFAULT_TRACKING_URI,
    ConfigurationError,
    expand_placeholders,
    load_project_configuration,
    parse_project_configuration,
    unexpanded_placeholders,
)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

PLACEHOLDER_VARIABLES = (
    "MLFLOW_TRACKING_URI",
    "ENDPOINT_NAME",
    "BUCKET",
    "AWS_REGION",
    "SAGEMAKER_ROLE",
    "CFG_TEST_VALUE",
    "CFG_TEST_UNSET",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts without the variables the config files refer to."""
    for name in PLACEHOLDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def minimal() -> dict[str, Any]:
    return {
        "project": "demo",
        "dataset": {
            "target": "label",
            "numeric_features": ["width", "height"],
            "categorical_features": ["color"],
        },
    }


def parse(config: Any) -> dict[str, Any]:
    return parse_project_configuration(yaml.safe_dump(config))


def error_message(config_text: str) -> str:
    with pytest.raises(ConfigurationError) as info:
        parse_project_configuration(config_text)
    return str(info.value)


# --- The shipped configuration files -------------------------------------------------


def test_local_config_parses() -> None:
    config = load_project_configuration(CONFIG_DIR / "local.yml")

    assert config["project"] == "penguins"
    assert config["mlflow_tracking_uri"] == DEFAULT_TRACKING_URI
    assert config["backend"]["module"] == "backend.Local"
    assert config["backend"]["target"] == "http://127.0.0.1:8080/invocations"
    assert config["dataset"]["target"] == "species"
    assert config["dataset"]["categorical_features"] == ["island", "sex"]
    assert config["dataset"]["extraneous_values"] == {"sex": ["."]}
    assert config["model"]["name"] == "penguins"
    assert unexpanded_placeholders(config) == []


def test_sagemaker_config_parses_with_defaults_and_reports_unset_bucket() -> None:
    config = load_project_configuration(CONFIG_DIR / "sagemaker.yml")

    backend = config["backend"]
    assert backend["module"] == "backend.Sagemaker"
    assert backend["target"] == "penguins"
    assert backend["region"] == "us-east-1"
    # `${MLFLOW_TRACKING_URI:-}` expands to nothing: the default store is used.
    assert config["mlflow_tracking_uri"] == DEFAULT_TRACKING_URI
    # `${BUCKET}` has no default and is unset: it stays, and is reported.
    assert backend["data_capture_uri"] == "s3://${BUCKET}/datastore"
    assert sorted(set(unexpanded_placeholders(config))) == ["BUCKET"]


def test_sagemaker_config_takes_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET", "my-bucket")
    monkeypatch.setenv("ENDPOINT_NAME", "penguins-staging")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")

    config = load_project_configuration(CONFIG_DIR / "sagemaker.yml")

    assert config["backend"]["data_capture_uri"] == "s3://my-bucket/datastore"
    assert config["backend"]["ground_truth_uri"] == "s3://my-bucket/ground-truth"
    assert config["backend"]["target"] == "penguins-staging"
    assert config["backend"]["region"] == "eu-west-1"
    assert config["mlflow_tracking_uri"] == "http://mlflow.internal:5000"
    assert unexpanded_placeholders(config) == []


# --- Defaults --------------------------------------------------------------------------


def test_missing_tracking_uri_defaults_to_sqlite() -> None:
    assert parse(minimal())["mlflow_tracking_uri"] == "sqlite:///mlflow.db"


def test_missing_tracking_uri_takes_environment_over_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert parse(minimal())["mlflow_tracking_uri"] == "http://127.0.0.1:5000"


def test_explicit_tracking_uri_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    config = minimal() | {"mlflow_tracking_uri": "sqlite:///other.db"}
    assert parse(config)["mlflow_tracking_uri"] == "sqlite:///other.db"


@pytest.mark.parametrize("backend", [None, {}, {"target": "http://x/invocations"}])
def test_missing_backend_module_defaults_to_local(backend: Any) -> None:
    config = minimal()
    if backend is not None:
        config["backend"] = backend
    parsed = parse(config)
    assert parsed["backend"]["module"] == DEFAULT_BACKEND == "backend.Local"
    if backend:
        assert parsed["backend"]["target"] == "http://x/invocations"


def test_model_name_and_extraneous_values_default() -> None:
    parsed = parse(minimal())
    assert parsed["model"] == {"name": "demo"}
    assert parsed["dataset"]["extraneous_values"] == {}


def test_empty_model_section_takes_defaults() -> None:
    # `model:` with every key commented out is YAML null; like an empty `backend:`,
    # it should mean "use the defaults", not crash.
    text = yaml.safe_dump(minimal()) + "model:\n"
    assert parse_project_configuration(text)["model"] == {"name": "demo"}


def test_model_section_of_wrong_type_is_a_configuration_error() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"model": "demo"}))
    assert "model" in message


# --- Placeholder expansion ---------------------------------------------------------------


def test_placeholder_expands_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "from-env")
    text = yaml.safe_dump(minimal()) + "extra: prefix-${CFG_TEST_VALUE}-suffix\n"
    assert parse_project_configuration(text)["extra"] == "prefix-from-env-suffix"


def test_placeholder_default_used_when_unset_and_ignored_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = yaml.safe_dump(minimal()) + "extra: ${CFG_TEST_VALUE:-fallback}\n"
    assert parse_project_configuration(text)["extra"] == "fallback"

    monkeypatch.setenv("CFG_TEST_VALUE", "set")
    assert parse_project_configuration(text)["extra"] == "set"


def test_placeholder_set_to_empty_string_is_not_replaced_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "")
    assert expand_placeholders("x=${CFG_TEST_VALUE:-fallback}") == "x="


def test_unset_placeholder_without_default_stays_and_is_reported() -> None:
    text = yaml.safe_dump(minimal()) + "extra:\n  nested: [a, 's3://${CFG_TEST_UNSET}/x']\n"
    config = parse_project_configuration(text)
    assert config["extra"]["nested"][1] == "s3://${CFG_TEST_UNSET}/x"
    assert unexpanded_placeholders(config) == ["CFG_TEST_UNSET"]


def test_escaped_placeholder_stays_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "expanded")
    assert expand_placeholders("a: $${CFG_TEST_VALUE}") == "a: ${CFG_TEST_VALUE}"
    text = yaml.safe_dump(minimal()) + "extra: $${CFG_TEST_VALUE}\n"
    assert parse_project_configuration(text)["extra"] == "${CFG_TEST_VALUE}"


def test_expand_placeholders_uses_given_environment_only() -> None:
    environ = {"A": "1"}
    assert expand_placeholders("${A} ${B:-2} ${C}", environ) == "1 2 ${C}"


def test_unexpanded_placeholders_ignores_non_strings() -> None:
    assert unexpanded_placeholders({"a": 1, "b": [None, 2.5, {"c": True}]}) == []


# --- Errors ------------------------------------------------------------------------------


def test_unparseable_yaml_is_a_configuration_error() -> None:
    message = error_message("project: [unclosed\ndataset: {")
    assert "not valid YAML" in message
    assert "--config project" in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", ""])
def test_non_mapping_is_a_configuration_error(text: str) -> None:
    assert "must be a YAML mapping" in error_message(text)


def test_missing_project_name() -> None:
    config = minimal()
    del config["project"]
    assert "`project`" in error_message(yaml.safe_dump(config))


@pytest.mark.parametrize("name", ["", "   ", 42, ["demo"]])
def test_project_name_of_wrong_type_or_empty(name: Any) -> None:
    assert "`project`" in error_message(yaml.safe_dump(minimal() | {"project": name}))


@pytest.mark.parametrize("name", ["Penguins", "my-project", "two words"])
def test_invalid_project_name(name: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"project": name}))
    assert "lowercase letters, digits and underscores" in message
    assert repr(name) in message


def test_missing_dataset_section() -> None:
    config = minimal()
    del config["dataset"]
    assert "no `dataset` section" in error_message(yaml.safe_dump(config))


def test_dataset_section_not_a_mapping() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"dataset": ["label"]}))
    assert "`dataset` must be a mapping" in message


@pytest.mark.parametrize("key", ["target", "numeric_features", "categorical_features"])
def test_missing_dataset_key(key: str) -> None:
    config = minimal()
    del config["dataset"][key]
    assert f"`dataset.{key}` is missing" in error_message(yaml.safe_dump(config))


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("numeric_features", "width", "`dataset.numeric_features` must be a list, got str"),
        ("categorical_features", {"a": 1}, "`dataset.categorical_features` must be a list"),
        ("target", ["label"], "`dataset.target` must be a str, got list"),
    ],
)
def test_dataset_key_of_wrong_type(key: str, value: Any, fragment: str) -> None:
    config = minimal()
    config["dataset"][key] = value
    assert fragment in error_message(yaml.safe_dump(config))


def test_feature_names_must_be_non_empty_strings() -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = ["width", 3]
    assert "non-empty strings" in error_message(yaml.safe_dump(config))


def test_no_features_at_all() -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = []
    config["dataset"]["categorical_features"] = []
    assert "no feature columns" in error_message(yaml.safe_dump(config))


def test_target_listed_as_feature() -> None:
    config = minimal()
    config["dataset"]["categorical_features"] = ["color", "label"]
    assert "`label` is also listed as a feature" in error_message(yaml.safe_dump(config))


@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [(["width", "width"], ["color"]), (["width", "height"], ["width"])],
)
def test_duplicate_columns(numeric: list[str], categorical: list[str]) -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = numeric
    config["dataset"]["categorical_features"] = categorical
    assert "appears twice" in error_message(yaml.safe_dump(config))


def test_extraneous_values_on_unknown_column() -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = {"colour": ["."], "color": ["?"]}
    assert "unknown columns: ['colour']" in error_message(yaml.safe_dump(config))


def test_extraneous_values_on_target_is_allowed() -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = {"label": ["unknown"]}
    assert parse(config)["dataset"]["extraneous_values"] == {"label": ["unknown"]}


@pytest.mark.parametrize("value", [["."], {"color": "."}])
def test_extraneous_values_of_wrong_shape(value: Any) -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = value
    assert "maps a column name to a list" in error_message(yaml.safe_dump(config))


@pytest.mark.parametrize("module", ["Local", 3])
def test_backend_module_must_look_like_module_class(module: Any) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"backend": {"module": module}}))
    assert "`backend.module` must look like `module.Class`" in message


def test_backend_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"backend": ["backend.Local"]}))
    assert "`backend` must be a mapping" in message


def test_tracking_uri_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"mlflow_tracking_uri": 5000}))
    assert "`mlflow_tracking_uri` must be a string" in message


# --- Production schedule and retraining on alert ------------------------------------------


def test_monitoring_runs_hourly_and_retraining_is_off_by_default() -> None:
    config = parse(minimal())
    assert config["monitoring"]["schedule"] == "0 * * * ? *"
    assert config["retraining"] == {"event": None}


@pytest.mark.parametrize(
    ("schedule", "cron"),
    [
        ("hourly", "0 * * * ? *"),
        ("Daily", "0 0 * * ? *"),
        ("weekly", "0 0 ? * SUN *"),
        ("30  6 * * ? *", "30 6 * * ? *"),
    ],
)
def test_schedule_shorthands_and_cron_expressions(schedule: str, cron: str) -> None:
    config = parse(minimal() | {"monitoring": {"schedule": schedule}})
    assert config["monitoring"]["schedule"] == cron


@pytest.mark.parametrize("schedule", ["0 * * * *", "every hour", ""])
def test_schedule_that_is_not_a_six_field_cron_names_the_format(schedule: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"monitoring": {"schedule": schedule}}))
    assert "`monitoring.schedule`" in message
    assert "hourly, daily, weekly" in message


def test_schedule_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"monitoring": {"schedule": 60}}))
    assert "`monitoring.schedule` must be hourly, daily, weekly or a cron expression" in message


def test_retraining_event_is_kept() -> None:
    config = parse(minimal() | {"retraining": {"event": "retrain.penguins"}})
    assert config["retraining"]["event"] == "retrain.penguins"


def test_retraining_event_from_an_unset_variable_means_off() -> None:
    config = parse_project_configuration(
        yaml.safe_dump(minimal()) + "retraining:\n  event: ${CFG_TEST_UNSET:-}\n"
    )
    assert config["retraining"]["event"] is None


@pytest.mark.parametrize("event", ["retrain now", "retrain/penguins", 5, ["retrain"]])
def test_retraining_event_that_argo_events_would_refuse(event: Any) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"retraining": {"event": event}}))
    assert "`retraining.event` must be empty" in message
