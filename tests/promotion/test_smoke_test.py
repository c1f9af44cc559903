"""The deployment smoke test's check of a model's answers (promotion.smoke_test)."""

from __future__ import annotations

from typing import Any

import pytest

from promotion.smoke_test import SmokeTestError, check_predictions

CLASSES = {"Adelie", "Chinstrap", "Gentoo"}


def prediction(**changes: Any) -> dict[str, Any]:
    return {"prediction": "Adelie", "confidence": 0.93, "id": "9f0c" * 8, **changes}


def response(*predictions: dict[str, Any]) -> dict[str, Any]:
    return {"predictions": list(predictions)}


@pytest.mark.parametrize(
    ("answer", "rows", "classes"),
    [
        (response(prediction()), 1, CLASSES),
        (response(prediction(), prediction(prediction="Gentoo", confidence=1.0)), 2, CLASSES),
        (response(prediction(confidence=0.0)), 1, CLASSES),
        (response(prediction(confidence=1)), 1, CLASSES),  # An integer is a number.
        (response(prediction(prediction="Unseen")), 1, None),  # No classes: any name.
        (response(prediction(extra="kept")), 1, CLASSES),  # More fields are fine.
        (response(), 0, CLASSES),
    ],
)
def test_accepts_good_answers(answer: Any, rows: int, classes: set[str] | None) -> None:
    check_predictions(answer, rows, classes)


MALFORMED = {
    "not a dict": ([prediction()], 1),
    "None": (None, 1),
    "no predictions key": ({"outputs": [prediction()]}, 1),
    "predictions not a list": ({"predictions": prediction()}, 1),
    "fewer predictions than rows": (response(prediction()), 2),
    "more predictions than rows": (response(prediction(), prediction()), 1),
    "a prediction that is not a dict": (response("Adelie"), 1),
    "no confidence": (response({"prediction": "Adelie", "id": "a" * 32}), 1),
    "no prediction": (response({"confidence": 0.9, "id": "a" * 32}), 1),
    "no id": (response({"prediction": "Adelie", "confidence": 0.9}), 1),
    "confidence above 1": (response(prediction(confidence=1.5)), 1),
    "negative confidence": (response(prediction(confidence=-0.1)), 1),
    "confidence as a string": (response(prediction(confidence="0.9")), 1),
    "confidence None": (response(prediction(confidence=None)), 1),
    "confidence NaN": (response(prediction(confidence=float("nan"))), 1),
    "confidence a boolean": (response(prediction(confidence=True)), 1),
    "unknown class": (response(prediction(prediction="Emperor")), 1),
    "class None": (response(prediction(prediction=None)), 1),
    "id None": (response(prediction(id=None)), 1),
    "empty id": (response(prediction(id="")), 1),
    "the second prediction is bad": (response(prediction(), prediction(confidence=2)), 2),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_rejects_malformed_answers(case: str) -> None:
    answer, rows = MALFORMED[case]
    with pytest.raises(SmokeTestError) as raised:
        check_predictions(answer, rows, CLASSES)
    assert 0 < len(str(raised.value)) < 500


def test_the_message_says_which_prediction_is_wrong() -> None:
    with pytest.raises(SmokeTestError, match=r"Prediction 1 .*confidence"):
        check_predictions(response(prediction(), {"prediction": "Adelie", "id": "x"}), 2)
    with pytest.raises(SmokeTestError, match="Sent 3 rows, got 1"):
        check_predictions(response(prediction()), 3)
    with pytest.raises(SmokeTestError, match="Emperor"):
        check_predictions(response(prediction(prediction="Emperor")), 1, CLASSES)


def test_the_smoke_test_is_sent_as_a_smoke_test() -> None:
    """Its rows reach the backend marked `smoke`, so their captures are never evidence."""
    from backends.base import ShadowModel
    from inference.capture import SMOKE
    from promotion.rollout import Release, roll_out

    sources: list[str] = []

    class Target:
        def deploy(self, uri: str, version: str, shadow: ShadowModel | None = None) -> bool:
            return True

        def invoke(self, payload: list[dict[str, Any]], source: str = "online") -> dict:
            sources.append(source)
            return response(prediction())

    target = Target()
    roll_out(target, Release("m", "3"), Release("m", "2"), [{"island": "Dream"}], CLASSES)
    assert sources == [SMOKE]
