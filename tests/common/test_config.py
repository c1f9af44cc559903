"""Tests for common.config: parsing, placeholder expansion, defaults, unknown keys, and
every shipped configuration file. What each setting accepts is tests/common/test_settings.py's.

Every refusal is checked for its message: the key, where it is, and how to fix it.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.configuration import clean_environment, error_message, minimal, parse  # noqa: F401

from common.config import (
    expand_placeholders,
    load_project_configuration,
    parse_project_configuration,
    unexpanded_placeholders,
)
from common.settings import (
    DEFAULT_BACKEND,
    DEFAULT_TRACKING_URI,
    ConfigurationError,
    project_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"

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
    assert "s3://${BUCKET}/datastore" in backend.values()
    assert sorted(set(unexpanded_placeholders(config))) == ["BUCKET"]


def test_sagemaker_config_takes_values_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUCKET", "my-bucket")
    monkeypatch.setenv("ENDPOINT_NAME", "penguins-staging")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")

    config = load_project_configuration(CONFIG_DIR / "sagemaker.yml")

    assert "s3://my-bucket/datastore" in config["backend"].values()
    assert "s3://my-bucket/ground-truth" in config["backend"].values()
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
    assert parsed["model"]["name"] == "demo"
    assert parsed["model"]["intended_use"] and parsed["model"]["limitations"]
    assert parsed["dataset"]["extraneous_values"] == {}


def test_empty_model_section_takes_defaults() -> None:
    # `model:` with every key commented out is YAML null; like an empty `backend:`,
    # it should mean "use the defaults", not crash.
    text = yaml.safe_dump(minimal()) + "model:\n"
    assert parse_project_configuration(text)["model"]["name"] == "demo"


def test_model_section_of_wrong_type_is_a_configuration_error() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"model": "demo"}))
    assert message.startswith("model: expected a mapping of settings, got str 'demo'")


# --- Placeholder expansion ---------------------------------------------------------------


def test_placeholder_expands_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "from-env")
    text = yaml.safe_dump(minimal()) + "backend:\n  extra: prefix-${CFG_TEST_VALUE}-suffix\n"
    assert parse_project_configuration(text)["backend"]["extra"] == "prefix-from-env-suffix"


def test_placeholder_default_used_when_unset_and_ignored_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = yaml.safe_dump(minimal()) + "backend:\n  extra: ${CFG_TEST_VALUE:-fallback}\n"
    assert parse_project_configuration(text)["backend"]["extra"] == "fallback"

    monkeypatch.setenv("CFG_TEST_VALUE", "set")
    assert parse_project_configuration(text)["backend"]["extra"] == "set"


def test_placeholder_set_to_empty_string_is_not_replaced_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "")
    assert expand_placeholders("x=${CFG_TEST_VALUE:-fallback}") == "x="


def test_unset_placeholder_without_default_stays_and_is_reported() -> None:
    text = yaml.safe_dump(minimal()) + "backend:\n  nested: [a, 's3://${CFG_TEST_UNSET}/x']\n"
    config = parse_project_configuration(text)
    assert config["backend"]["nested"][1] == "s3://${CFG_TEST_UNSET}/x"
    assert unexpanded_placeholders(config) == ["CFG_TEST_UNSET"]


def test_escaped_placeholder_stays_literal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "expanded")
    assert expand_placeholders("a: $${CFG_TEST_VALUE}") == "a: ${CFG_TEST_VALUE}"
    text = yaml.safe_dump(minimal()) + "backend:\n  extra: $${CFG_TEST_VALUE}\n"
    assert parse_project_configuration(text)["backend"]["extra"] == "${CFG_TEST_VALUE}"


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


# --- Unknown keys, at every level ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"monitoring": {"accuracy_treshold": 0.95}},
            "monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?",
        ),
        (
            {"monitoring": {"max_row": 10}},
            "monitoring.max_row: unknown setting, did you mean max_rows?",
        ),
        (
            {"retraining": {"events": "x"}},
            "retraining.events: unknown setting, did you mean event?",
        ),
        ({"model": {"nmae": "x"}}, "model.nmae: unknown setting, did you mean name?"),
        ({"modle": {"name": "x"}}, "modle: unknown setting, did you mean model?"),
        (
            {"mlflow_tracking_url": "http://x"},
            "mlflow_tracking_url: unknown setting, did you mean mlflow_tracking_uri?",
        ),
    ],
)
def test_an_unknown_key_is_refused_with_the_nearest_name(
    change: dict[str, Any], expected: str
) -> None:
    message = error_message(yaml.safe_dump(minimal() | change))
    assert message.startswith(expected), message
    assert "Valid settings: " in message
    assert "\n" not in message


def test_an_unknown_dataset_key_is_refused() -> None:
    config = minimal()
    config["dataset"]["numeric_feature"] = ["depth"]
    message = error_message(yaml.safe_dump(config))
    assert message.startswith(
        "dataset.numeric_feature: unknown setting, did you mean numeric_features?"
    )


def test_a_key_like_nothing_lists_the_valid_ones() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"zzz": 1}))
    assert message == (
        "zzz: unknown setting. Valid settings: project, dataset, mlflow_tracking_uri, "
        "backend, model, monitoring, retraining, promotion, scoring, tuning."
    )


def test_the_backend_keeps_its_own_keys_for_the_backend_to_check() -> None:
    # Only `module` is the project's: a backend types and checks the rest when built.
    config = parse(minimal() | {"backend": {"module": "my.Backend", "anything-goes": 3}})
    assert config["backend"] == {"module": "my.Backend", "anything-goes": 3}


def test_a_typo_stops_the_parser_as_a_configuration_error_with_one_line() -> None:
    text = (
        (CONFIG_DIR / "local.yml").read_text().replace("accuracy_threshold:", "accuracy_treshold:")
    )
    with pytest.raises(ConfigurationError) as info:
        parse_project_configuration(text)
    assert info.value.headline == "Project configuration error"
    message = str(info.value)
    assert message.startswith(
        "monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?"
    )
    assert "\n" not in message


# --- One key style -------------------------------------------------------------------------


def test_hyphenated_keys_still_load_with_a_warning_and_come_out_snake_case() -> None:
    config = minimal() | {"monitoring": {"max-rows": 10, "accuracy-threshold": 0.5}}
    with pytest.warns(FutureWarning, match="monitoring.max-rows: write it as max_rows"):
        parsed = parse(config)
    assert parsed["monitoring"]["max_rows"] == 10
    assert parsed["monitoring"]["accuracy_threshold"] == 0.5
    assert "max-rows" not in parsed["monitoring"]


def test_hyphenated_tracking_uri_is_not_replaced_by_the_default() -> None:
    with pytest.warns(FutureWarning, match="write it as mlflow_tracking_uri"):
        parsed = parse(minimal() | {"mlflow-tracking-uri": "sqlite:///other.db"})
    assert parsed["mlflow_tracking_uri"] == "sqlite:///other.db"


def test_the_shipped_files_use_one_key_style() -> None:
    # The backend's own keys belong to the backend (and its engineer); the rest is ours.
    for path in CONFIG_DIR.glob("*.yml"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            raw = yaml.safe_load(path.read_text())
            assert "-" not in "".join(key for key in raw if key != "backend"), path
            for name, section in raw.items():
                if name != "backend" and isinstance(section, dict):
                    assert all("-" not in key for key in section), (path, name)
            load_project_configuration(path)


# --- Every configuration file in the repository loads ---------------------------------------


def bench_monitoring_config() -> str:
    """bench/monitoring.py's CONFIG, read from its source (running the module would not do)."""
    tree = ast.parse((REPO_ROOT / "bench" / "monitoring.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["CONFIG"]:  # type: ignore[attr-defined]
            return ast.literal_eval(node.value).format(database="captures.db", state="serving")
    raise AssertionError("bench/monitoring.py has no CONFIG")


def test_every_config_file_loads() -> None:
    paths = sorted(CONFIG_DIR.glob("*.yml"))
    assert {path.name for path in paths} >= {"local.yml", "sagemaker.yml"}
    for path in paths:
        assert project_settings(load_project_configuration(path)).project == "penguins"
    assert parse_project_configuration(bench_monitoring_config())["project"] == "penguins"
