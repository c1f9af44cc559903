"""Project configuration: parse, expand and validate the YAML files under `config/`.

Metaflow calls `parse_project_configuration` once, when a run starts, with the text of
the file given to `--config project <path>` (default `config/local.yml`). The result is
frozen into the run, so every task, local or remote, sees the same settings.

Only the standard library and PyYAML are imported here: every task imports this module.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml
from metaflow.exception import MetaflowException

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_BACKEND = "backend.Local"

# `${NAME}` or `${NAME:-fallback}`; `$${NAME}` stays literal.
_PLACEHOLDER = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# Defaults for every optional key; a key the user leaves out takes this value.
DEFAULTS: dict[str, Any] = {
    "model": {"name": None},
    "monitoring": {
        # Production accuracy under this raises an alert. Simulated labels with
        # --ground-truth-quality 0.8 put a healthy model near 0.8.
        "accuracy_threshold": 0.7,
        # Per-column drift: normed Wasserstein distance for numbers, Jensen-Shannon
        # distance for categories. Rows drawn from the training data score ~0.05 with
        # a few hundred rows; a two-standard-deviation shift scores ~2.
        "numeric_drift_method": "wasserstein",
        "numeric_drift_threshold": 0.2,
        "categorical_drift_method": "jensenshannon",
        "categorical_drift_threshold": 0.2,
        # Reports look at most this many rows of each dataset (a random sample).
        "max_rows": 5000,
        "experiment": "monitoring",
        # When a production scheduler (Argo Workflows CronWorkflow, EventBridge for
        # Step Functions) starts the monitoring pipeline: `hourly`, `daily`, `weekly`
        # or an EventBridge cron expression (six fields, UTC; Argo uses the first five).
        "schedule": "hourly",
    },
    "retraining": {
        # An event name turns on retraining on alert for deployments on Argo Workflows:
        # monitoring publishes it when it raises an alert, training is triggered by it.
        # Off by default because Step Functions cannot deploy a flow with @trigger.
        "event": None,
    },
}

# The `@schedule` shorthands, spelled as Metaflow's own decorator spells them.
SCHEDULE_ALIASES = {
    "hourly": "0 * * * ? *",
    "daily": "0 0 * * ? *",
    "weekly": "0 0 ? * SUN *",
}

# Argo Events accepts these characters in an event name (Metaflow checks the same).
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# What the dataset section must hold, and the type of each key.
DATASET_KEYS: dict[str, type | tuple[type, ...]] = {
    "target": str,
    "numeric_features": list,
    "categorical_features": list,
}


class ConfigurationError(MetaflowException):
    """A project configuration file is unreadable or holds a wrong value."""

    headline = "Project configuration error"


def expand_placeholders(text: str, environ: dict[str, str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}` with values from the environment.

    A placeholder without a default whose variable is unset stays in the text; the
    code that needs the value (a backend, say) fails with a message naming it. This
    lets one file serve steps that never read the unexpanded key.
    """
    environ = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        return fallback if fallback is not None else match.group(0)

    return _PLACEHOLDER.sub(replace, text).replace("$${", "${")


def unexpanded_placeholders(value: Any) -> list[str]:
    """Names of the `${VAR}` placeholders left anywhere inside `value`."""
    if isinstance(value, dict):
        return [name for item in value.values() for name in unexpanded_placeholders(item)]
    if isinstance(value, list):
        return [name for item in value for name in unexpanded_placeholders(item)]
    if isinstance(value, str):
        return [match.group(1) for match in _PLACEHOLDER.finditer(value)]
    return []


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigurationError(message)


def _validate_dataset(section: Any) -> dict[str, Any]:
    _require(
        isinstance(section, dict),
        "`dataset` must be a mapping with `target`, `numeric_features` and "
        "`categorical_features` describing the CSV columns.",
    )
    for key, expected in DATASET_KEYS.items():
        _require(key in section, f"`dataset.{key}` is missing: add it to the config file.")
        _require(
            isinstance(section[key], expected),
            f"`dataset.{key}` must be a {expected.__name__}, "
            f"got {type(section[key]).__name__}: {section[key]!r}.",
        )
    features = section["numeric_features"] + section["categorical_features"]
    _require(
        all(isinstance(name, str) and name for name in features),
        "`dataset.numeric_features` and `dataset.categorical_features` must list column "
        "names (non-empty strings).",
    )
    _require(len(features) > 0, "The dataset config lists no feature columns.")
    _require(
        len(set(features)) == len(features),
        "A column appears twice in `dataset.numeric_features`/`categorical_features`.",
    )
    _require(
        section["target"] not in features,
        f"The target column `{section['target']}` is also listed as a feature.",
    )
    extraneous = section.setdefault("extraneous_values", {})
    _require(
        isinstance(extraneous, dict)
        and all(isinstance(values, list) for values in extraneous.values()),
        "`dataset.extraneous_values` maps a column name to a list of values to treat as "
        "missing, e.g. `{sex: ['.']}`.",
    )
    unknown = set(extraneous) - set(features) - {section["target"]}
    _require(not unknown, f"`dataset.extraneous_values` names unknown columns: {sorted(unknown)}.")
    return section


def _validate_monitoring(section: dict[str, Any]) -> None:
    for key in ("accuracy_threshold", "numeric_drift_threshold", "categorical_drift_threshold"):
        value = section[key]
        _require(
            isinstance(value, int | float) and not isinstance(value, bool) and value >= 0,
            f"`monitoring.{key}` must be a non-negative number, got {value!r}.",
        )
    _require(
        isinstance(section["max_rows"], int) and section["max_rows"] > 0,
        f"`monitoring.max_rows` must be a positive integer, got {section['max_rows']!r}.",
    )
    section["schedule"] = normalize_schedule(section["schedule"])


def normalize_schedule(value: Any) -> str:
    """Turn `monitoring.schedule` into the cron expression `@schedule(cron=...)` takes.

    Both schedulers read the same expression, so it must suit the stricter one:
    EventBridge wants six fields; Argo Workflows drops the sixth (the year).
    """
    _require(
        isinstance(value, str) and value.strip() != "",
        f"`monitoring.schedule` must be hourly, daily, weekly or a cron expression, got {value!r}.",
    )
    cron = SCHEDULE_ALIASES.get(value.strip().lower(), value.strip())
    _require(
        len(cron.split()) == 6,
        f"`monitoring.schedule` {value!r} is not hourly, daily, weekly or a six-field "
        "EventBridge cron expression (minutes hours day-of-month month day-of-week year, "
        "UTC), e.g. `0 6 * * ? *` for 06:00 every day.",
    )
    return " ".join(cron.split())


def _validate_retraining(section: dict[str, Any]) -> None:
    event = section["event"]
    if isinstance(event, str) and event.strip() == "":
        # What `event: ${RETRAINING_EVENT:-}` expands to when the variable is unset.
        event = section["event"] = None
    _require(
        event is None or (isinstance(event, str) and _EVENT_NAME.fullmatch(event) is not None),
        "`retraining.event` must be empty (no retraining on alert) or an event name of "
        f"letters, digits, `_`, `-` and `.`, got {event!r}.",
    )


def _merge_defaults(config: dict[str, Any]) -> dict[str, Any]:
    for key, default in DEFAULTS.items():
        value = config.get(key)
        if value is None:  # Absent, or present with every key commented out.
            value = config[key] = {}
        _require(isinstance(value, dict), f"`{key}` must be a mapping, got {value!r}.")
        for inner, inner_default in default.items():
            value.setdefault(inner, inner_default)
    return config


def validate_project_configuration(config: Any) -> dict[str, Any]:
    """Check a parsed configuration, fill defaults, and return it.

    Raises `ConfigurationError` naming the offending key and what it should hold.
    """
    _require(
        isinstance(config, dict),
        "The project configuration must be a YAML mapping (key: value lines), "
        f"got {type(config).__name__}.",
    )
    _require(
        isinstance(config.get("project"), str) and config["project"].strip() != "",
        "`project` (the project name, e.g. `project: penguins`) is missing or not a string.",
    )
    _require(
        re.fullmatch(r"[a-z0-9_]+", config["project"]) is not None,
        f"`project` must be lowercase letters, digits and underscores (Metaflow's @project "
        f"rule), got {config['project']!r}.",
    )

    uri = config.get("mlflow_tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    config["mlflow_tracking_uri"] = uri or DEFAULT_TRACKING_URI
    _require(
        isinstance(config["mlflow_tracking_uri"], str),
        "`mlflow_tracking_uri` must be a string such as http://localhost:5000.",
    )

    backend = config.get("backend") or {}
    _require(
        isinstance(backend, dict),
        "`backend` must be a mapping with at least `module: backend.Local`.",
    )
    backend.setdefault("module", DEFAULT_BACKEND)
    _require(
        isinstance(backend["module"], str) and "." in backend["module"],
        f"`backend.module` must look like `module.Class`, got {backend['module']!r}.",
    )
    config["backend"] = backend

    _require("dataset" in config, "The config file has no `dataset` section.")
    config["dataset"] = _validate_dataset(config["dataset"])

    config = _merge_defaults(config)
    if config["model"]["name"] is None:
        config["model"]["name"] = config["project"]
    _require(isinstance(config["model"]["name"], str), "`model.name` must be a string.")
    _validate_monitoring(config["monitoring"])
    _validate_retraining(config["retraining"])
    return config


def parse_project_configuration(text: str) -> dict[str, Any]:
    """Metaflow `Config` parser: YAML text in, validated settings out."""
    try:
        config = yaml.safe_load(expand_placeholders(text))
    except yaml.YAMLError as error:
        raise ConfigurationError(
            f"The project configuration is not valid YAML: {error}. Fix the file, or pass "
            "another one with `--config project <path>`."
        ) from None
    return validate_project_configuration(config)


def load_project_configuration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a configuration file outside Metaflow (serving, scripts, tests)."""
    with open(path, encoding="utf-8") as file:
        return parse_project_configuration(file.read())
