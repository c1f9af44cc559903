"""Tests for promotion.rollout: deploy, smoke test, and put back what served on failure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from backends.base import BackendError, ShadowModel
from promotion.rollout import Release, RolloutFailed, roll_out

ROWS = [{"island": "Dream"}]
GOOD = {"predictions": [{"prediction": "Adelie", "confidence": 0.9, "id": "a"}]}


class Target:
    """A backend that notes what it is asked to serve and answers with `answer`."""

    def __init__(self, answer: Callable[[], dict[str, Any]] = lambda: GOOD) -> None:
        self.answer = answer
        self.deployed: list[tuple[str, str, ShadowModel | None]] = []
        self.stopped = False

    def deploy(self, model_uri: str, model_version: str, shadow: ShadowModel | None = None) -> bool:
        self.deployed.append((model_uri, model_version, shadow))
        return True

    def invoke(self, payload: list[dict[str, Any]], source: str = "online") -> dict[str, Any]:
        return self.answer()

    def stop(self) -> None:
        self.stopped = True


def test_a_release_that_answers_well_stays() -> None:
    target = Target()

    times = roll_out(target, Release("m", "3", "2"), Release("m", "2"), ROWS, {"Adelie"})

    assert target.deployed == [("models:/m/3", "3", ShadowModel("models:/m/2", "2"))]
    assert times.start >= 0 and times.smoke_test >= 0


def test_a_release_that_answers_badly_is_replaced_by_what_served() -> None:
    target = Target(lambda: {"predictions": []})
    before = Release("m", "2", "1")

    with pytest.raises(RolloutFailed, match="Version 3 failed its smoke test and was rolled back"):
        roll_out(target, Release("m", "3"), before, ROWS, {"Adelie"})

    assert target.deployed[-1] == ("models:/m/2", "2", ShadowModel("models:/m/1", "1"))


def test_a_release_that_does_not_start_leaves_nothing_serving_if_nothing_did() -> None:
    class Unstartable(Target):
        def deploy(self, model_uri: str, model_version: str, shadow: Any = None) -> bool:
            raise BackendError("no port free")

    target = Unstartable()

    with pytest.raises(RolloutFailed, match="failed its start and was rolled back to no deploy"):
        roll_out(target, Release("m", "3"), Release("m", None), ROWS, {"Adelie"})

    assert target.stopped
