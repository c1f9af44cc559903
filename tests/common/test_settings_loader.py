"""Typed settings refuse typos and wrong types, naming the key and where it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from common.settings_loader import (
    PlaceholderText,
    SettingsError,
    SettingValueError,
    load_settings,
    settings_dict,
)


@dataclass(frozen=True)
class Inner:
    name: str
    sizes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Outer:
    accuracy_threshold: float = 0.7
    max_rows: int = 5000
    mode: Literal["fast", "slow"] = "fast"
    label: str | None = None
    inner: Inner | None = None
    extra: dict[str, list[str]] = field(default_factory=dict)


def test_defaults_and_values() -> None:
    settings = load_settings(Outer, {"accuracy_threshold": 1, "inner": {"name": "x"}}, "m")
    assert settings.accuracy_threshold == 1.0 and isinstance(settings.accuracy_threshold, float)
    assert settings.max_rows == 5000
    assert settings.inner == Inner(name="x", sizes=[])
    assert settings_dict(settings)["inner"] == {"name": "x", "sizes": []}


def test_a_typo_names_the_key_where_it_is_and_the_nearest_name() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Outer, {"accuracy_treshold": 0.95}, "monitoring")
    message = str(info.value)
    assert message.startswith(
        "monitoring.accuracy_treshold: unknown setting, did you mean accuracy_threshold?"
    )
    assert "Valid settings: accuracy_threshold, max_rows" in message


def test_a_key_like_nothing_lists_the_valid_ones() -> None:
    with pytest.raises(SettingsError, match=r"m\.zzz: unknown setting\. Valid settings:"):
        load_settings(Outer, {"zzz": 1}, "m")


def test_hyphenated_keys_still_load_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match="m.max-rows: write it as max_rows"):
        settings = load_settings(Outer, {"max-rows": 10}, "m")
    assert settings.max_rows == 10


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"max_rows": "10"}, "m.max_rows: expected int, got str '10'"),
        ({"max_rows": True}, "m.max_rows: expected int, got bool True"),
        ({"accuracy_threshold": "high"}, "m.accuracy_threshold: expected float"),
        ({"mode": "medium"}, "m.mode: must be one of 'fast', 'slow', got 'medium'"),
        ({"inner": {"sizes": [1]}}, "m.inner: missing required setting name"),
        ({"inner": {"name": "x", "sizes": [1, "2"]}}, "m.inner.sizes[1]: expected int"),
        ({"extra": {"a": "b"}}, "m.extra.a: expected list"),
        ({"inner": 3}, "m.inner: expected"),
    ],
)
def test_wrong_types_are_named(data: dict, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Outer, data, "m")
    assert expected in str(info.value)


def test_not_a_mapping() -> None:
    with pytest.raises(SettingsError, match="m: expected a mapping of settings, got list"):
        load_settings(Outer, [1, 2], "m")  # type: ignore[arg-type]


def test_settings_are_frozen() -> None:
    settings = load_settings(Outer, {}, "m")
    with pytest.raises(AttributeError):
        settings.max_rows = 3  # type: ignore[misc]


@dataclass(frozen=True)
class Checked:
    count: int = field(default=1, metadata={"hint": "Write a whole number, e.g. 3."})
    names: tuple[str, ...] = ()
    options: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise SettingValueError("count", f"must be at least 1, got {self.count}.")


@dataclass(frozen=True)
class Top:
    name: str = field(metadata={"hint": "Name it, e.g. `name: x`."})
    checked: Checked = field(default_factory=Checked)


def test_a_fields_hint_follows_its_type_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Checked, {"count": "three"}, "m")
    assert (
        str(info.value) == "m.count: expected int, got str 'three'. Write a whole number, e.g. 3."
    )


def test_a_value_check_names_the_key_where_it_is() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Top, {"name": "x", "checked": {"count": 0}}, "")
    assert str(info.value) == "checked.count: must be at least 1, got 0."


def test_the_top_level_names_keys_alone() -> None:
    with pytest.raises(SettingsError, match=r"^nmae: unknown setting, did you mean name\?"):
        load_settings(Top, {"nmae": "x"}, "")
    with pytest.raises(SettingsError) as info:
        load_settings(Top, {}, "")
    assert str(info.value) == "name: missing required setting. Name it, e.g. `name: x`."
    with pytest.raises(
        SettingsError, match=r"^checked\.cuont: unknown setting, did you mean count"
    ):
        load_settings(Top, {"name": "x", "checked": {"cuont": 2}}, "")


def test_a_yaml_list_fills_a_tuple_and_an_empty_section_takes_defaults() -> None:
    settings = load_settings(Checked, {"names": ["a", "b"], "options": None}, "m")
    assert settings.names == ("a", "b") and settings.options == {}
    assert load_settings(Top, {"name": "x", "checked": None}, "").checked == Checked()
    with pytest.raises(SettingsError, match=r"^m\.names: expected list\[str\], got str 'a'"):
        load_settings(Checked, {"names": "a"}, "m")
    with pytest.raises(SettingsError, match=r"^m\.options: expected dict\[str, int\], got list"):
        load_settings(Checked, {"options": [1]}, "m")


# --- Numbers are finite; a placeholder's text is converted only on purpose (issue 21) --------


@dataclass(frozen=True)
class Typed:
    ratio: float = 0.5
    count: int = 1
    enabled: bool = False
    label: str = ""
    limit: float | None = None
    bound: int | float | None = None
    data: dict[str, Any] = field(default_factory=dict)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_a_float_must_be_finite(value: float) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Typed, {"ratio": value}, "m")
    assert str(info.value).startswith("m.ratio: must be a finite number, got ")


def test_an_optional_float_must_be_finite_too() -> None:
    with pytest.raises(SettingsError, match=r"^m\.limit: must be a finite number, got nan\."):
        load_settings(Typed, {"limit": float("nan")}, "m")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"count": PlaceholderText("123")}, 123),
        ({"count": PlaceholderText(" -4 ")}, -4),
        ({"ratio": PlaceholderText("0.25")}, 0.25),
        ({"ratio": PlaceholderText("1e-3")}, 0.001),
        ({"enabled": PlaceholderText("TRUE")}, True),
        ({"enabled": PlaceholderText("false")}, False),
        ({"limit": PlaceholderText("")}, None),
        ({"bound": PlaceholderText("7")}, 7),
        ({"bound": PlaceholderText("7.5")}, 7.5),
    ],
)
def test_a_number_or_yes_no_setting_converts_a_placeholders_text(
    data: dict[str, str], expected: object
) -> None:
    value = getattr(load_settings(Typed, data, "m"), next(iter(data)))
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"count": PlaceholderText("1.5")}, "m.count: expected int, got '1.5' from a ${VAR} "
         "placeholder: the variable must hold a whole number."),
        ({"enabled": PlaceholderText("yes")}, "m.enabled: expected bool, got 'yes' from a "
         "${VAR} placeholder: the variable must hold true or false."),
        ({"ratio": PlaceholderText("nan")}, "m.ratio: expected float, got 'nan' from a ${VAR} "
         "placeholder: the variable must hold a number such as 0.5."),
        ({"ratio": PlaceholderText("1.0e+999")}, "m.ratio: must be a finite number, got inf."),
        ({"count": PlaceholderText("9" * 5000)}, "m.count: expected int, got '9999"),
    ],
)  # fmt: skip
def test_a_placeholders_text_that_spells_no_value_is_refused(
    data: dict[str, str], expected: str
) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Typed, data, "m")
    assert str(info.value).startswith(expected)


def test_written_text_is_not_converted_and_the_message_says_why() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(Typed, {"count": "123"}, "m")
    assert str(info.value) == (
        "m.count: expected int, got str '123'. Write it unquoted, in the file: text stays text."
    )


def test_placeholder_text_comes_out_as_plain_text() -> None:
    settings = load_settings(
        Typed, {"label": PlaceholderText("123"), "data": {"k": PlaceholderText("v")}}, "m"
    )
    assert settings.label == "123" and type(settings.label) is str
    plain = settings_dict(settings)
    assert plain["data"] == {"k": "v"} and type(plain["data"]["k"]) is str
