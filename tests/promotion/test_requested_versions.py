"""Tests for promotion.requested_versions: which versions a deployment request names."""

from __future__ import annotations

from typing import Any

import pytest

from promotion.errors import PromotionError
from promotion.requested_versions import (
    available_versions,
    requested_to_serve,
    resolve_requested,
    resolve_shadow,
)


def test_available_versions_lists_versions_and_aliases(client: Any) -> None:
    client.set_registered_model_alias("m", "champion", "2")
    assert available_versions(client, "m") == "1, 2, 3 (aliases: champion=2)"


def test_with_only_a_shadow_the_champion_keeps_serving() -> None:
    assert requested_to_serve("latest", "challenger", "3", "m") == "champion"
    assert requested_to_serve("5", "challenger", "3", "m") == "5"
    assert requested_to_serve("latest", "", None, "m") == "latest"
    with pytest.raises(PromotionError, match="no champion of model 'm' serves to shadow"):
        requested_to_serve("latest", "challenger", None, "m")


def test_an_unknown_version_is_refused_with_what_is_registered(client: Any) -> None:
    assert resolve_requested(client, "m", "latest", "--model-version") == "3"
    with pytest.raises(PromotionError, match=r"--shadow 9: .* Registered versions of 'm': 1, 2, 3"):
        resolve_requested(client, "m", "9", "--shadow")


def test_a_model_cannot_shadow_itself(client: Any) -> None:
    assert resolve_shadow(client, "m", "", "2") is None
    with pytest.raises(PromotionError, match="a model cannot shadow itself"):
        resolve_shadow(client, "m", "2", "2")
