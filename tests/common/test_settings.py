"""Tests for common.settings: what each section of the project configuration accepts,
its defaults, and the typed settings a parsed configuration gives back.

Values go through the parser Metaflow calls (common.config), as a user's file would;
every refusal is checked for its message: the key, where it is, and how to fix it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from support.configuration import (  # noqa: F401
    backend_module,
    clean_environment,
    error_message,
    minimal,
    parse,
)
from support.paths import LOCAL_CONFIG

from common.config import load_project_configuration, parse_project_configuration
from common.data import DatasetSchema
from common.settings import (
    ConfigurationError,
    DatasetSettings,
    MonitoringSettings,
    ProjectSettings,
    RetrainingSettings,
    project_settings,
)

# --- Refused values --------------------------------------------------------------------------


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


# --- Typed settings ------------------------------------------------------------------------


def test_typed_settings_of_a_parsed_configuration() -> None:
    config = load_project_configuration(LOCAL_CONFIG)
    settings = project_settings(config)
    assert isinstance(settings, ProjectSettings)
    assert settings.project == "penguins"
    assert backend_module(settings) == "backend.Local"
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


# --- Promotion and scoring ----------------------------------------------------------


def test_promotion_defaults() -> None:
    assert parse(minimal())["promotion"] == {
        "min_rows": 200, "min_gain": 0.0, "max_p_value": None, "auto": False, "event": None
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


# --- Ranges: non-finite and out-of-range thresholds (issue 21) --------------------------------


def _monitoring(line: str) -> str:
    """A minimal configuration with one `monitoring:` setting written as YAML text."""
    return yaml.safe_dump(minimal()) + f"monitoring:\n  {line}\n"


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1.0e+400"])
def test_a_threshold_that_is_not_a_finite_number_is_refused_with_its_range(value: str) -> None:
    message = error_message(_monitoring(f"accuracy_threshold: {value}"))
    assert message.startswith("monitoring.accuracy_threshold: must be a finite number, got ")
    assert "a number in [0, 1]" in message


@pytest.mark.parametrize("value", ["1.01", "7", "-0.1"])
def test_an_accuracy_threshold_outside_zero_to_one_is_refused(value: str) -> None:
    message = error_message(_monitoring(f"accuracy_threshold: {value}"))
    assert message == (
        f"monitoring.accuracy_threshold: must be an accuracy in [0, 1], got {float(value)!r}."
    )


@pytest.mark.parametrize("value", [0, 1])
def test_an_accuracy_threshold_may_be_zero_or_one(value: int) -> None:
    assert parse(minimal() | {"monitoring": {"accuracy_threshold": value}})["monitoring"][
        "accuracy_threshold"
    ] == float(value)


@pytest.mark.parametrize("key", ["numeric_drift_threshold", "categorical_drift_threshold"])
def test_a_drift_threshold_that_is_not_finite_is_refused(key: str) -> None:
    message = error_message(_monitoring(f"{key}: .nan"))
    assert message.startswith(f"monitoring.{key}: must be a finite number, got nan.")
    assert "non-negative number, at most 1 for a method that scores a p-value" in message


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"categorical_drift_threshold": 1.5},
            "monitoring.categorical_drift_threshold: must be in [0, 1] for jensenshannon, a "
            "distance between 0 and 1, got 1.5.",
        ),
        (
            {"numeric_drift_method": "ks", "numeric_drift_threshold": 0},
            "monitoring.numeric_drift_threshold: must be a p-value in (0, 1] for ks, which "
            "detects drift when the p-value is under it, got 0.0.",
        ),
        (
            {"categorical_drift_method": "chisquare", "categorical_drift_threshold": 2},
            "monitoring.categorical_drift_threshold: must be a p-value in (0, 1] for chisquare",
        ),
    ],
)
def test_a_drift_threshold_outside_its_methods_range_is_refused(
    settings: dict[str, Any], expected: str
) -> None:
    assert error_message(yaml.safe_dump(minimal() | {"monitoring": settings})).startswith(expected)


def test_an_unbounded_drift_distance_takes_thresholds_above_one() -> None:
    monitoring = {"numeric_drift_threshold": 2.5, "categorical_drift_method": "psi"}
    parsed = parse(minimal() | {"monitoring": monitoring | {"categorical_drift_threshold": 3}})
    assert parsed["monitoring"]["numeric_drift_threshold"] == 2.5
    assert parsed["monitoring"]["categorical_drift_threshold"] == 3.0


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("min_gain: .nan", "promotion.min_gain: must be a finite number, got nan. It is an "
         "accuracy difference in [-1, 1]"),
        ("max_p_value: .inf", "promotion.max_p_value: must be a finite number, got inf. It is a "
         "probability in (0, 1]"),
    ],
)  # fmt: skip
def test_a_promotion_threshold_that_is_not_finite_is_refused_with_its_range(
    line: str, expected: str
) -> None:
    text = yaml.safe_dump(minimal()) + f"promotion:\n  {line}\n"
    assert error_message(text).startswith(expected)


# --- Model names MLflow's filters can hold (issue 21) -------------------------------------------


@pytest.mark.parametrize("name", ["it's", 'say "hi"', "a/b", "x:y", "", " penguins", "-lead"])
def test_a_model_name_outside_the_safe_pattern_is_refused_with_the_pattern(name: str) -> None:
    message = error_message(yaml.safe_dump(minimal() | {"model": {"name": name}}))
    assert message.startswith(
        "model.name: must match [A-Za-z0-9][A-Za-z0-9_.-]{0,255} (letters, digits, `_`, `.` "
    )
    assert repr(name) in message


@pytest.mark.parametrize("name", ["penguins", "Penguins-v2.1_beta", "7"])
def test_a_model_name_in_the_safe_pattern_is_kept(name: str) -> None:
    assert parse(minimal() | {"model": {"name": name}})["model"]["name"] == name
