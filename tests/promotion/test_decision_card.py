"""Tests for promotion.decision_card: the decision and the history on the `start` card."""

from __future__ import annotations

from promotion.decision import Decision
from promotion.decision_card import history_card


def test_the_card_shows_the_decision_and_the_history() -> None:
    decision = Decision("refused", "worse", "production", {"rows": 3, "p_value": 0.5})
    history = [{"when": "t", "decision": "promoted", "version": "1", "reason": "first"}]

    components = history_card(decision, history)

    rendered = " ".join(str(component.render()) for component in components)
    assert "Decision: refused" in rendered and "p_value" in rendered
    assert "promoted" in rendered and "first" in rendered
