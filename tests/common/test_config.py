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


# --- Placeholders are expanded inside values, after parsing (issue 21) -----------------------


def test_a_variable_holding_yaml_cannot_set_the_backend_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backends.sagemaker.settings import SettingsError, parse_settings

    monkeypatch.setenv("BUCKET", "my-bucket")
    monkeypatch.setenv("ENDPOINT_NAME", "penguins\n  module: evil.Backend")

    config = load_project_configuration(CONFIG_DIR / "sagemaker.yml")

    assert config["backend"]["module"] == "backend.Sagemaker"
    assert config["backend"]["target"] == "penguins\n  module: evil.Backend"
    # The whole value is the endpoint name, which SageMaker's rule refuses.
    with pytest.raises(SettingsError, match=r"^backend\.target: .* is not a valid endpoint name"):
        parse_settings(config["backend"])


def test_a_multi_line_value_cannot_override_a_top_level_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = "x\nmlflow_tracking_uri: http://evil.example:5000\nproject: evil"
    monkeypatch.setenv("CFG_TEST_VALUE", value)
    text = yaml.safe_dump(minimal()) + "backend:\n  extra: ${CFG_TEST_VALUE}\n"

    config = parse_project_configuration(text)

    assert config["backend"]["extra"] == value
    assert config["project"] == "demo"
    assert "evil" not in config["mlflow_tracking_uri"]


@pytest.mark.parametrize("value", ["S3cret #pw", "a: b", "[1, 2]", "{x: y}", "- item", "'q"])
def test_a_value_that_looks_like_yaml_is_kept_whole(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", value)
    text = yaml.safe_dump(minimal()) + "backend:\n  extra: ${CFG_TEST_VALUE}\n"
    assert parse_project_configuration(text)["backend"]["extra"] == value


def test_a_number_from_a_placeholder_stays_text_in_a_backend_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BUCKET", "my-bucket")
    monkeypatch.setenv("ENDPOINT_NAME", "123")
    config = load_project_configuration(CONFIG_DIR / "sagemaker.yml")
    assert config["backend"]["target"] == "123"
    assert type(config["backend"]["target"]) is str  # plain text, as Metaflow stores it


def test_placeholders_in_keys_are_not_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "module")
    text = yaml.safe_dump(minimal()) + "backend:\n  ${CFG_TEST_VALUE}: x\n"
    assert parse_project_configuration(text)["backend"]["${CFG_TEST_VALUE}"] == "x"


def test_a_variables_value_is_not_expanded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "${CFG_TEST_OTHER} $${CFG_TEST_OTHER}")
    monkeypatch.setenv("CFG_TEST_OTHER", "expanded")
    assert expand_placeholders("${CFG_TEST_VALUE}") == "${CFG_TEST_OTHER} $${CFG_TEST_OTHER}"


def test_placeholders_expand_in_lists_and_nested_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "v")
    text = yaml.safe_dump(minimal()) + (
        "backend:\n  nested: {list: ['${CFG_TEST_VALUE}', 3], map: {k: 'a-${CFG_TEST_VALUE}'}}\n"
    )
    nested = parse_project_configuration(text)["backend"]["nested"]
    assert nested == {"list": ["v", 3], "map": {"k": "a-v"}}


# --- What a placeholder gives a typed setting --------------------------------------------


def _monitoring_text(line: str) -> str:
    """A minimal configuration with one `monitoring:` setting written as YAML text."""
    return yaml.safe_dump(minimal()) + f"monitoring:\n  {line}\n"


def test_a_number_setting_converts_a_placeholders_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "123")
    text = _monitoring_text(
        "max_rows: ${CFG_TEST_VALUE}\n  accuracy_threshold: ${CFG_TEST_UNSET:-0.5}"
    )
    monitoring = parse_project_configuration(text)["monitoring"]
    assert monitoring["max_rows"] == 123 and type(monitoring["max_rows"]) is int
    assert monitoring["accuracy_threshold"] == 0.5


def test_a_placeholder_that_spells_no_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "12 rows")
    message = error_message(_monitoring_text("max_rows: ${CFG_TEST_VALUE}"))
    assert message == (
        "monitoring.max_rows: expected int, got '12 rows' from a ${VAR} placeholder: the "
        "variable must hold a whole number."
    )


def test_a_number_written_as_text_stays_text() -> None:
    message = error_message(_monitoring_text("max_rows: '123'"))
    assert message.startswith("monitoring.max_rows: expected int, got str '123'.")


def test_a_string_setting_keeps_a_placeholders_number_as_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFG_TEST_VALUE", "0123")
    text = yaml.safe_dump(minimal()) + "model:\n  name: ${CFG_TEST_VALUE}\n"
    assert parse_project_configuration(text)["model"]["name"] == "0123"


def test_an_empty_placeholder_leaves_an_optional_setting_unset() -> None:
    text = yaml.safe_dump(minimal()) + (
        "model:\n  name: ${CFG_TEST_UNSET:-}\npromotion:\n  max_p_value: ${CFG_TEST_UNSET:-}\n"
    )
    config = parse_project_configuration(text)
    assert config["model"]["name"] == "demo"  # unset: the project name
    assert config["promotion"]["max_p_value"] is None


# --- Duplicate keys ---------------------------------------------------------------------------


def test_a_duplicate_top_level_key_is_refused_naming_both_lines() -> None:
    text = yaml.safe_dump(minimal()) + "project: other\n"
    first = 1 + yaml.safe_dump(minimal()).splitlines().index("project: demo")
    last = len(text.splitlines())
    message = error_message(text)
    assert message == (
        f"`project` is set twice in one mapping, on lines {first} and {last} of the project "
        "configuration: keep one of them."
    )


def test_a_duplicate_key_in_a_section_is_refused_naming_both_lines() -> None:
    text = (CONFIG_DIR / "local.yml").read_text()
    text = text.replace(
        "  accuracy_threshold: 0.7\n", "  accuracy_threshold: 0.7\n  accuracy_threshold: 0.1\n"
    )
    line = 1 + text.splitlines().index("  accuracy_threshold: 0.7")
    message = error_message(text)
    assert message.startswith(f"`accuracy_threshold` is set twice in one mapping, on lines {line}")
    assert f"and {line + 1}" in message


def test_a_merged_mapping_may_be_overridden() -> None:
    # `<<:` merges keys that the mapping then overrides: not a duplicate.
    config = parse_project_configuration(
        yaml.safe_dump(minimal())
        + "backend:\n  <<: {module: backend.Local, target: http://x/invocations}\n"
        + "  target: http://y/invocations\n"
    )
    assert config["backend"] == {"module": "backend.Local", "target": "http://y/invocations"}
