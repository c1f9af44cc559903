"""Tests for common.config: parsing, placeholder expansion, defaults and validation.

Every refusal is checked for its message: the key, where it is, and how to fix it.
"""

from __future__ import annotations

import ast
import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

from common.config import (
    expand_placeholders,
    load_project_configuration,
    parse_project_configuration,
    unexpanded_placeholders,
)
from common.data import DatasetSchema
from common.settings import (
    DEFAULT_BACKEND,
    DEFAULT_TRACKING_URI,
    ConfigurationError,
    DatasetSettings,
    MonitoringSettings,
    ProjectSettings,
    RetrainingSettings,
    project_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "config"

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


def test_missing_project_name() -> None:
    config = minimal()
    del config["project"]
    message = error_message(yaml.safe_dump(config))
    assert message.startswith("project: missing required setting.")
    assert "e.g. `project: penguins`" in message


@pytest.mark.parametrize("name", [42, ["demo"]])
def test_project_name_of_wrong_type(name: Any) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"project": name}))
    assert message.startswith("project: expected str")
    assert "e.g. `project: penguins`" in message


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_project_name(name: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"project": name}))
    assert message.startswith("project: must be lowercase letters, digits and underscores")


@pytest.mark.parametrize("name", ["Penguins", "my-project", "two words"])
def test_invalid_project_name(name: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"project": name}))
    assert "lowercase letters, digits and underscores" in message
    assert repr(name) in message


def test_missing_dataset_section() -> None:
    config = minimal()
    del config["dataset"]
    message = error_message(yaml.safe_dump(config))
    assert message.startswith("dataset: missing required setting.")
    assert "`target`, `numeric_features` and `categorical_features`" in message


def test_dataset_section_not_a_mapping() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"dataset": ["label"]}))
    assert message.startswith("dataset: expected a mapping of settings, got list")


@pytest.mark.parametrize("key", ["target", "numeric_features", "categorical_features"])
def test_missing_dataset_key(key: str) -> None:
    config = minimal()
    del config["dataset"][key]
    assert error_message(yaml.safe_dump(config)).startswith(
        f"dataset: missing required setting {key}."
    )


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("numeric_features", "width", "dataset.numeric_features: expected list[str], got str"),
        ("categorical_features", {"a": 1}, "dataset.categorical_features: expected list[str]"),
        ("target", ["label"], "dataset.target: expected str, got list"),
    ],
)
def test_dataset_key_of_wrong_type(key: str, value: Any, fragment: str) -> None:
    config = minimal()
    config["dataset"][key] = value
    assert fragment in error_message(yaml.safe_dump(config))


def test_feature_names_must_be_non_empty_strings() -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = ["width", 3]
    assert "dataset.numeric_features[1]: expected str, got int 3" in error_message(
        yaml.safe_dump(config)
    )
    config["dataset"]["numeric_features"] = ["width", " "]
    assert "dataset.numeric_features: column names must be non-empty strings" in error_message(
        yaml.safe_dump(config)
    )


def test_no_features_at_all() -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = []
    config["dataset"]["categorical_features"] = []
    assert error_message(yaml.safe_dump(config)).startswith(
        "dataset.numeric_features: the dataset lists no feature columns"
    )


def test_target_listed_as_feature() -> None:
    config = minimal()
    config["dataset"]["categorical_features"] = ["color", "label"]
    message = error_message(yaml.safe_dump(config))
    assert message.startswith("dataset.target: the target column `label` is also listed")


@pytest.mark.parametrize(
    ("numeric", "categorical"),
    [(["width", "width"], ["color"]), (["width", "height"], ["width"])],
)
def test_duplicate_columns(numeric: list[str], categorical: list[str]) -> None:
    config = minimal()
    config["dataset"]["numeric_features"] = numeric
    config["dataset"]["categorical_features"] = categorical
    message = error_message(yaml.safe_dump(config))
    assert "['width'] appear twice" in message and "list each column once" in message


def test_extraneous_values_on_unknown_column() -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = {"colour": ["."], "color": ["?"]}
    message = error_message(yaml.safe_dump(config))
    assert message.startswith("dataset.extraneous_values: names unknown columns: ['colour']")


def test_extraneous_values_on_target_is_allowed() -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = {"label": ["unknown"]}
    assert parse(config)["dataset"]["extraneous_values"] == {"label": ["unknown"]}


@pytest.mark.parametrize(
    ("value", "where"),
    [(["."], "dataset.extraneous_values:"), ({"color": "."}, "dataset.extraneous_values.color:")],
)
def test_extraneous_values_of_wrong_shape(value: Any, where: str) -> None:
    config = minimal()
    config["dataset"]["extraneous_values"] = value
    message = error_message(yaml.safe_dump(config))
    assert message.startswith(where)
    assert "maps a column name to a list of values to treat as missing" in message


@pytest.mark.parametrize("module", ["Local", 3])
def test_backend_module_must_look_like_module_class(module: Any) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"backend": {"module": module}}))
    assert message.startswith("backend.module: must look like `module.Class`")


def test_backend_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"backend": ["backend.Local"]}))
    assert message.startswith("backend: expected dict[str, Any], got list")
    assert "a mapping with at least `module: backend.Local`" in message


def test_tracking_uri_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"mlflow_tracking_uri": 5000}))
    assert message.startswith("mlflow_tracking_uri: expected str, got int 5000.")
    assert "such as http://localhost:5000" in message


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
    assert message.startswith(f"monitoring.schedule: {schedule!r} is not hourly, daily, weekly")
    assert "e.g. `0 6 * * ? *`" in message


def test_schedule_of_wrong_type() -> None:
    message = error_message(yaml.safe_dump(minimal() | {"monitoring": {"schedule": 60}}))
    assert message.startswith("monitoring.schedule: expected str, got int 60.")
    assert "Write hourly, daily, weekly or a six-field EventBridge cron expression" in message


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
    assert message.startswith("retraining.event: ")
    assert "no retraining on alert" in message


def test_thresholds_must_be_non_negative_numbers() -> None:
    message = error_message(
        yaml.safe_dump(minimal() | {"monitoring": {"numeric_drift_threshold": -0.1}})
    )
    assert message == "monitoring.numeric_drift_threshold: must be a non-negative number, got -0.1."
    message = error_message(
        yaml.safe_dump(minimal() | {"monitoring": {"accuracy_threshold": "high"}})
    )
    assert message.startswith("monitoring.accuracy_threshold: expected float, got str 'high'")
    message = error_message(
        yaml.safe_dump(minimal() | {"monitoring": {"accuracy_threshold": True}})
    )
    assert message.startswith("monitoring.accuracy_threshold: expected float, got bool True")


@pytest.mark.parametrize(
    ("rows", "fragment"), [(0, "must be a positive integer, got 0"), (2.5, "expected int")]
)
def test_max_rows_must_be_a_positive_integer(rows: Any, fragment: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"monitoring": {"max_rows": rows}}))
    assert message.startswith(f"monitoring.max_rows: {fragment}")


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
        "backend, model, monitoring, retraining, promotion, scoring."
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


# --- Typed settings ------------------------------------------------------------------------


def test_typed_settings_of_a_parsed_configuration() -> None:
    config = load_project_configuration(CONFIG_DIR / "local.yml")
    settings = project_settings(config)
    assert isinstance(settings, ProjectSettings)
    assert settings.project == "penguins"
    assert settings.backend_module == "backend.Local"
    assert settings.model.name == "penguins"
    assert settings.monitoring.accuracy_threshold == 0.7
    assert settings.monitoring.schedule == "0 * * * ? *"
    assert settings.retraining.event is None
    assert settings.dataset.numeric_features == (
        "culmen_length_mm", "culmen_depth_mm", "flipper_length_mm", "body_mass_g",
    )  # fmt: skip
    assert settings.dataset.schema == DatasetSchema.from_config(config["dataset"])


def test_typed_settings_round_trip_through_the_plain_configuration() -> None:
    # What Metaflow stores (plain data) gives back the same typed settings in a task.
    parsed = parse(
        minimal()
        | {"monitoring": {"schedule": "daily"}, "retraining": {"event": ""}, "model": None}
    )
    settings = project_settings(parsed)
    assert dataclasses.asdict(settings) == dataclasses.asdict(project_settings(parsed))
    assert parse_project_configuration(yaml.safe_dump(parsed)) == parsed
    assert settings.monitoring.schedule == "0 0 * * ? *"
    assert settings.retraining.event is None
    assert settings.model.name == "demo"


def test_settings_are_frozen() -> None:
    settings = project_settings(parse(minimal()))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.monitoring.accuracy_threshold = 0.1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.project = "other"  # type: ignore[misc]


def test_defaults_of_each_section() -> None:
    assert MonitoringSettings().max_rows == 5000
    assert MonitoringSettings().schedule == "0 * * * ? *"
    assert RetrainingSettings().event is None
    with pytest.raises(TypeError):
        DatasetSettings()  # type: ignore[call-arg]


def test_project_settings_refuses_like_the_parser() -> None:
    with pytest.raises(ConfigurationError, match=r"^monitoring\.max_row: unknown setting"):
        project_settings(minimal() | {"monitoring": {"max_row": 3}})


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


# --- Promotion and scoring ----------------------------------------------------------


def test_promotion_defaults() -> None:
    assert parse(minimal())["promotion"] == {
        "min_rows": 200, "min_gain": 0.0, "max_p_value": None, "auto": False
    }  # fmt: skip
    assert parse(minimal())["scoring"]["schedule"] == "0 0 * * ? *"


@pytest.mark.parametrize(
    ("promotion", "message"),
    [
        ({"min_gain": 1.5}, r"promotion\.min_gain: must be an accuracy difference in \[-1, 1\]"),
        ({"min_gain": "big"}, r"promotion\.min_gain"),
        ({"min_rows": 0}, r"promotion\.min_rows: must be a positive integer"),
        ({"max_p_value": 0}, r"promotion\.max_p_value: must be a probability"),
        ({"auto": "yes"}, r"promotion\.auto"),
        ({"min_gian": 0.1}, r"did you mean min_gain"),
    ],
)
def test_bad_promotion_settings_are_refused(promotion, message) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse(minimal() | {"promotion": promotion})
