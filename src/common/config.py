"""The YAML config loader: read a file under `config/`, expand its `${VAR}` placeholders,
validate it into the typed settings of `common.settings`, and hand Metaflow plain data.

Metaflow calls `parse_project_configuration` once, when a run starts, with the text of
the file given to `--config project <path>` (default `config/local.yml`). The result is
frozen into the run, so every task, local or remote, sees the same settings.

The file is validated into `common.settings.ProjectSettings`: an unknown key at any
level stops the run, naming the key, where it is and the nearest valid name
("monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?").
Keys are snake_case. Metaflow's `Config` holds the settings as plain data (what
`config_expr` reads), defaults filled in; `project_settings()` (`Pipeline.settings` in
a step) gives them back typed. Of `backend`, only `module` is checked here: the rest
belongs to the backend, which checks it when it is built.

Besides the settings modules, only the standard library, PyYAML and Metaflow's
exception are imported here: every task imports this module.
"""

from __future__ import annotations

import os
import re
from typing import Any

import yaml

from common.settings import DEFAULT_TRACKING_URI, ConfigurationError, project_settings
from common.settings_loader import settings_dict

# `${NAME}` or `${NAME:-fallback}`; `$${NAME}` stays literal.
_PLACEHOLDER = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


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


def validate_project_configuration(config: Any) -> dict[str, Any]:
    """Check a parsed configuration, fill defaults, and return it as plain data.

    Raises `ConfigurationError` naming the offending key and what it should hold.
    """
    if not isinstance(config, dict):
        raise ConfigurationError(
            "The project configuration must be a YAML mapping (key: value lines), "
            f"got {type(config).__name__}."
        )
    if not (config.get("mlflow_tracking_uri") or config.get("mlflow-tracking-uri")):
        # Unset, or `${MLFLOW_TRACKING_URI:-}` with the variable unset.
        config = {k: v for k, v in config.items() if k != "mlflow-tracking-uri"}
        uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        config = {**config, "mlflow_tracking_uri": uri}
    return settings_dict(project_settings(config))


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
