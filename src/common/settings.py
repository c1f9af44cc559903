"""Typed settings: frozen dataclasses filled from a config mapping, refusing typos.

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
settings dataclasses. Only the standard library: every task process imports this.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is unknown, missing or of the wrong type; the message says which."""


def load_settings(cls: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """`cls` (a dataclass) filled from `data`; `where` names the section in messages."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise SettingsError(
            f"{where}: expected a mapping of settings, got {type(data).__name__} {data!r}."
        )
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = _field_name(str(key), fields, where)
        values[name] = _check(value, hints[name], f"{where}.{name}")
    missing = [
        name
        for name, field in fields.items()
        if name not in values
        and field.default is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SettingsError(f"{where}: missing required setting {', '.join(missing)}.")
    return cls(**values)


def settings_dict(settings: Any) -> dict[str, Any]:
    """A settings object as plain data (lists, dicts), e.g. for Metaflow's Config."""
    return _plain(dataclasses.asdict(settings))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _field_name(key: str, fields: Mapping[str, Any], where: str) -> str:
    if key in fields:
        return key
    snake = key.replace("-", "_")
    if snake in fields:
        warnings.warn(
            f"{where}.{key}: write it as {snake}; the hyphenated spelling is deprecated.",
            FutureWarning,
            stacklevel=4,
        )
        return snake
    close = difflib.get_close_matches(snake, fields, n=1, cutoff=0.6)
    hint = f", did you mean {close[0]}?" if close else "."
    raise SettingsError(
        f"{where}.{key}: unknown setting{hint} Valid settings: {', '.join(fields)}."
    )


def _describe(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _wrong(where: str, value: Any, annotation: Any) -> SettingsError:
    return SettingsError(
        f"{where}: expected {_describe(annotation)}, got {type(value).__name__} {value!r}."
    )


def _check(value: Any, annotation: Any, where: str) -> Any:
    """`value` if it fits `annotation` (converted where lossless), else SettingsError."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        options = [option for option in arguments if option is not type(None)]
        if len(options) == 1:  # `X | None`: the error about X is the useful one.
            return _check(value, options[0], where)
        for option in options:
            try:
                return _check(value, option, where)
            except SettingsError:
                continue
        raise _wrong(where, value, annotation)
    if origin is typing.Literal:
        if value in arguments:
            return value
        raise SettingsError(
            f"{where}: must be one of {', '.join(map(repr, arguments))}, got {value!r}."
        )
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _wrong(where, value, annotation)
        item = arguments[0] if arguments else Any
        checked = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(checked) if origin is tuple else checked
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong(where, value, annotation)
        item = arguments[1] if len(arguments) == 2 else Any
        return {str(k): _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(annotation):
        return load_settings(annotation, value, where)  # type: ignore[arg-type]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(where, value, annotation)
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(where, value, annotation)
    if annotation is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _wrong(where, value, annotation)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _wrong(where, value, annotation)
    raise TypeError(f"{where}: settings of type {annotation!r} are not supported.")
