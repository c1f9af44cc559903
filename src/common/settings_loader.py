"""The generic typed-settings loader: any frozen settings dataclass, filled from a
config mapping, with every value checked against its annotation and every typo refused.

It knows no setting of this project (those are `common.settings`, and each backend's
own); `load_settings` is what turns a mapping into one of them:

    @dataclass(frozen=True)
    class Thresholds:
        accuracy_threshold: float = 0.7
        max_rows: int = 5000

    load_settings(Thresholds, {"accuracy_treshold": 0.9}, "monitoring")
    # SettingsError: monitoring.accuracy_treshold: unknown setting, did you mean
    # accuracy_threshold? Valid settings: accuracy_threshold, max_rows.

Keys are snake_case. A kebab-case spelling (`max-rows`) is still accepted, with a
warning naming the new spelling, so older config files keep working. Values are
checked against the field's annotation: str, int, float (an int is accepted), bool,
`X | None`, `list[X]` / `tuple[X, ...]`, `dict[str, X]`, `Literal[...]` and nested
settings dataclasses; an empty section (YAML null) takes the defaults. A float must be
finite: `.nan` and `.inf` are refused, so no threshold is silently never reached.

Text stays text: a number setting refuses `"10"` as written in a file. Only text that a
`${VAR}` placeholder put there (`PlaceholderText`, made by `common.config`) is converted
explicitly, and strictly, by a number or yes/no setting: an int takes `123`, a float
`0.7` or `1e-3`, a bool `true` or `false`; an optional setting takes an empty one as
unset. A string setting keeps `123` as the text "123". Outside the process that parsed
the file (a Metaflow task reads the configuration back as plain data) placeholder text
is plain text again: a backend, which checks its `backend:` section there, takes its
numbers and yes/no settings as written in the file, never from a placeholder.

A field's `metadata={"hint": "..."}` is a sentence saying how to write it; it follows
every message about that field. Checks that need more than a type (a range, a value
that depends on another) go in `__post_init__`, raising `SettingValueError(key, why)`;
the message then names the key where it is, as for a type error
(`require_positive_integers` is the common one). Only the standard library: every task
process imports this.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class PlaceholderText(str):
    """Text that a `${VAR}` placeholder put into a configuration value.

    A number or yes/no setting converts it explicitly; any other text stays text.
    """


# What a placeholder must hold for a number setting: YAML's spelling of a number (an
# integer's digits bounded, as Python's int() refuses thousands of them).
_INTEGER_TEXT = re.compile(r"[-+]?[0-9]{1,30}")
_DECIMAL_TEXT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
_BOOLEAN_TEXT = {"true": True, "false": False}
_UNSPELLED = object()


class SettingsError(ValueError):
    """A setting is unknown, missing or of the wrong type; the message says which."""


class SettingValueError(ValueError):
    """Raised by a settings class's `__post_init__`: `key` (relative to the class) is wrong.

    `load_settings` turns it into a SettingsError naming the key where it is.
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def require_positive_integers(settings: Any, *names: str) -> None:
    """For a settings class's `__post_init__`: refuse the first of `names` below 1."""
    for name in names:
        value = getattr(settings, name)
        if value < 1:
            raise SettingValueError(name, f"must be a positive integer, got {value!r}.")


def load_settings(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """`cls` (a dataclass) filled from `data`; `where` names the section in messages.

    `where=""` is the top level: messages then start with the key itself.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SettingsError(
            f"{where or 'settings'}: expected a mapping of settings, "
            f"got {type(data).__name__} {data!r}."
        )
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = _field_name(str(key), fields, where)
        values[name] = _check(value, hints[name], _join(where, name), _hint(fields[name]))
    missing = [
        name
        for name, field in fields.items()
        if name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        hint = _hint(fields[missing[0]])
        if where:
            message = f"{where}: missing required setting {', '.join(missing)}."
        else:
            message = f"{', '.join(missing)}: missing required setting."
        raise SettingsError(f"{message} {hint}".rstrip())
    try:
        return cls(**values)
    except SettingValueError as error:
        raise SettingsError(f"{_join(where, error.key)}: {error.message}") from None


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings object as plain data (lists, dicts), e.g. for Metaflow's Config."""
    return _plain(dataclasses.asdict(settings))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)  # a `PlaceholderText` in a section kept as data, e.g. `backend:`
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _hint(field: dataclasses.Field) -> str:
    return str(field.metadata.get("hint", ""))


def _field_name(key: str, fields: Mapping[str, Any], where: str) -> str:
    if key in fields:
        return key
    snake = key.replace("-", "_")
    if snake in fields:
        warnings.warn(
            f"{_join(where, key)}: write it as {snake}; the hyphenated spelling is deprecated.",
            FutureWarning,
            stacklevel=4,
        )
        return snake
    close = difflib.get_close_matches(snake, fields, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]}?" if close else "."
    raise SettingsError(
        f"{_join(where, key)}: unknown setting{hint} Valid settings: {', '.join(fields)}."
    )


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (list, tuple) and arguments:
        # A config file writes both as a YAML list.
        return f"list[{_describe(arguments[0])}]"
    if origin is dict and len(arguments) == 2:
        return f"dict[{_describe(arguments[0])}, {_describe(arguments[1])}]"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _wrong(where: str, value: Any, annotation: Any, hint: str = "") -> SettingsError:
    message = f"{where}: expected {_describe(annotation)}, got {type(value).__name__} {value!r}."
    # Quoted in the file, or a placeholder's text read back as plain data. (YAML 1.1 reads
    # an exponent without a dot, 1e-3, as text: that is not a matter of quotes.)
    spelled = isinstance(value, str) and _spelled(value, annotation) is not _UNSPELLED
    if spelled and "e" not in value.lower():
        message += " Write it unquoted, in the file: text stays text."
    return SettingsError(f"{message} {hint}".rstrip())


def _check(value: Any, annotation: Any, where: str, hint: str = "") -> Any:
    """`value` if it fits `annotation` (converted where lossless), else SettingsError.

    `hint` says how to write the field; it ends every message about it.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, annotation, where, hint)
    if origin is typing.Literal:
        arguments = typing.get_args(annotation)
        if value in arguments:
            return arguments[arguments.index(value)]
        message = f"{where}: must be one of {', '.join(map(repr, arguments))}, got {value!r}."
        raise SettingsError(f"{message} {hint}".rstrip())
    if origin in (list, tuple):
        return _check_sequence(value, annotation, where, hint)
    if origin is dict:
        return _check_mapping(value, annotation, where, hint)
    if dataclasses.is_dataclass(annotation):
        if value is not None and not isinstance(value, Mapping):
            raise _wrong(where, value, "a mapping of settings", hint)
        return load_settings(annotation, value, where)  # type: ignore[arg-type]
    return _check_scalar(value, annotation, where, hint)


def _check_union(value: Any, annotation: Any, where: str, hint: str) -> Any:
    arguments = typing.get_args(annotation)
    empty_placeholder = isinstance(value, PlaceholderText) and not value.strip()
    if type(None) in arguments and (value is None or empty_placeholder):
        return None  # `${VAR:-}` with VAR unset leaves an optional setting unset.
    options = [option for option in arguments if option is not type(None)]
    if len(options) == 1:  # `X | None`: the error about X is the useful one.
        return _check(value, options[0], where, hint)
    for option in options:
        try:
            return _check(value, option, where, hint)
        except SettingsError:
            continue
    raise _wrong(where, value, annotation, hint)


def _check_sequence(value: Any, annotation: Any, where: str, hint: str) -> list | tuple:
    if not isinstance(value, list | tuple):
        raise _wrong(where, value, annotation, hint)
    arguments = typing.get_args(annotation)
    item = arguments[0] if arguments else Any
    checked = [_check(v, item, f"{where}[{i}]", hint) for i, v in enumerate(value)]
    return tuple(checked) if typing.get_origin(annotation) is tuple else checked


def _check_mapping(value: Any, annotation: Any, where: str, hint: str) -> dict[str, Any]:
    if value is None:  # A section with every key commented out.
        return {}
    if not isinstance(value, Mapping):
        raise _wrong(where, value, annotation, hint)
    arguments = typing.get_args(annotation)
    item = arguments[1] if len(arguments) == 2 else Any
    return {str(k): _check(v, item, f"{where}.{k}", hint) for k, v in value.items()}


def _check_scalar(value: Any, annotation: Any, where: str, hint: str = "") -> Any:
    if isinstance(value, PlaceholderText) and annotation in (int, float, bool):
        value = _convert_placeholder_text(value, annotation, where, hint)
    # bool is an int to Python, never a number in a config file.
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is bool:
        accepted = isinstance(value, bool)
    elif annotation is int:
        accepted = is_number and isinstance(value, int)
    elif annotation is float:
        accepted = is_number
    elif annotation is str:
        accepted = isinstance(value, str)
    else:
        raise TypeError(f"{where}: settings of type {annotation!r} are not supported.")
    if not accepted:
        raise _wrong(where, value, annotation, hint)
    if annotation is float:
        return _finite(value, where, hint)
    if annotation is str:
        return str(value)  # plain text, whether written or from a placeholder
    return value


def _finite(number: float, where: str, hint: str) -> float:
    """`number` as a float; refused if it is not finite (`.nan`, `.inf`, too large)."""
    try:
        value = float(number)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        message = f"{where}: must be a finite number, got {number!r}."
        raise SettingsError(f"{message} {hint}".rstrip())
    return value


def _convert_placeholder_text(text: str, annotation: Any, where: str, hint: str) -> Any:
    """The number or yes/no a placeholder's text spells; SettingsError if it spells none."""
    value = _spelled(text, annotation)
    if value is not _UNSPELLED:
        return value
    spelling = {bool: "true or false", int: "a whole number", float: "a number such as 0.5"}
    message = (
        f"{where}: expected {_describe(annotation)}, got {text!r} from a ${{VAR}} "
        f"placeholder: the variable must hold {spelling[annotation]}."
    )
    raise SettingsError(f"{message} {hint}".rstrip())


def _spelled(text: str, annotation: Any) -> Any:
    """What `text` spells as an `annotation` (int, float or bool), else `_UNSPELLED`."""
    spelled = text.strip()
    if annotation is bool and spelled.lower() in _BOOLEAN_TEXT:
        return _BOOLEAN_TEXT[spelled.lower()]
    if annotation is int and _INTEGER_TEXT.fullmatch(spelled):
        return int(spelled)
    if annotation is float and _DECIMAL_TEXT.fullmatch(spelled):
        return float(spelled)
    return _UNSPELLED
