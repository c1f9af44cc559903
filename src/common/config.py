"""The YAML config loader: read a file under `config/`, expand its `${VAR}` placeholders,
validate it into the typed settings of `common.settings`, and hand Metaflow plain data.

Metaflow calls `parse_project_configuration` once, when a run starts, with the text of
the file given to `--config project <path>` (default `config/local.yml`). The result is
frozen into the run, so every task, local or remote, sees the same settings.

The YAML is parsed before anything is expanded, so a variable's value cannot be YAML:
`${VAR}` and `${VAR:-default}` are replaced inside string values only, each staying
one value whatever it holds (newlines, `key: value`, ` #`); keys are never expanded. A
key written twice in one mapping is refused with both line numbers. What a placeholder
gives is text: the typed loader (`common.settings_loader`) says which settings convert
it (`monitoring.max_rows: ${ROWS}` takes "5000" as 5000; `backend.target` keeps "123"
as text).

The file is validated into `common.settings.ProjectSettings`: an unknown key at any
level stops the run, naming the key, where it is and the nearest valid name
("monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?").
Keys are snake_case. Metaflow's `Config` holds the settings as plain data (what
`config_expr` reads), defaults filled in; `project_settings()` (`Pipeline.settings` in
a step) gives them back typed. Of `backend`, only `module` is checked here: the rest
belongs to the backend, which checks it when it is built.

Besides the settings and secrets modules, only the standard library, PyYAML and Metaflow's
exception are imported here: every task imports this module.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import yaml

from common.secrets import CredentialsError, clean_tracking_environment, credentials_to_environment
from common.settings import DEFAULT_TRACKING_URI, ConfigurationError, project_settings
from common.settings_loader import PlaceholderText, settings_dict

# `${NAME}` or `${NAME:-fallback}`; `$${NAME}` stays literal.
_PLACEHOLDER = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# What expansion replaces, in one pass: an escaped `$${` (no name), or a placeholder.
_EXPANDED = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps
    the last silently) with both lines in the message."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges keys that this mapping may override
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = first_lines.setdefault(key, line)
            except TypeError:
                continue  # unhashable: PyYAML's own error names it
            if first != line:
                raise ConfigurationError(
                    f"`{key}` is set twice in one mapping, on lines {first} and {line} of the "
                    "project configuration: keep one of them."
                )
        return super().construct_mapping(node, deep=deep)


def expand_placeholders(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace `${VAR}` and `${VAR:-default}` in one string value with values from the
    environment; `$${` gives a literal `${`.

    The result is a `PlaceholderText` when a placeholder was replaced: a number or
    yes/no setting then converts it explicitly, any other setting keeps it as text. A
    placeholder without a default whose variable is unset stays in the text; the code
    that needs the value (a backend, say) fails with a message naming it. This lets one
    file serve steps that never read the unexpanded key. A variable's value is not
    expanded again.
    """
    environ = os.environ if environ is None else environ
    replaced = False

    def replace(match: re.Match[str]) -> str:
        nonlocal replaced
        name, fallback = match.group(1), match.group(2)
        if name is None:
            return "${"
        if name not in environ and fallback is None:
            return match.group(0)
        replaced = True
        return environ.get(name, fallback)

    expanded = _EXPANDED.sub(replace, text)
    return PlaceholderText(expanded) if replaced else expanded


def expand_values(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Parsed YAML with the placeholders of its string values expanded.

    Keys are left as written, and a value stays one value whatever the variable holds
    (a newline, `: `, ` #`): expansion cannot add a key or change the structure.
    """
    if isinstance(value, dict):
        return {key: expand_values(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_values(item, environ) for item in value]
    if isinstance(value, str):
        return expand_placeholders(value, environ)
    return value


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
    return _without_credentials(settings_dict(project_settings(config)))


def _without_credentials(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` with no user name or password in the tracking URI: Metaflow stores
    them with every run. They go to the variables MLflow reads (see `common.secrets`),
    out of MLFLOW_TRACKING_URI too, which every child process inherits."""
    try:
        clean_tracking_environment()
        uri = credentials_to_environment(settings["mlflow_tracking_uri"])
    except CredentialsError as error:
        raise ConfigurationError(f"mlflow_tracking_uri: {error}") from None
    return {**settings, "mlflow_tracking_uri": uri}


def parse_project_configuration(text: str) -> dict[str, Any]:
    """Metaflow `Config` parser: YAML text in, validated settings out.

    The YAML is parsed first, then placeholders are expanded inside its string values.
    """
    try:
        config = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as error:
        raise ConfigurationError(
            f"The project configuration is not valid YAML: {error}. Fix the file, or pass "
            "another one with `--config project <path>`."
        ) from None
    return validate_project_configuration(expand_values(config))


def load_project_configuration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and parse a configuration file outside Metaflow (serving, scripts, tests)."""
    with open(path, encoding="utf-8") as file:
        return parse_project_configuration(file.read())
