"""Tests for promotion.decision_card: the decision and the history on the `start` card."""

from __future__ import annotations

from promotion.decision import Decision
from promotion.decision_card import history_card, shadow_section


def test_the_card_shows_the_decision_and_the_history() -> None:
    decision = Decision("refused", "worse", "production", {"rows": 3, "p_value": 0.5})
    history = [{"when": "t", "decision": "promoted", "version": "1", "reason": "first"}]

    components = history_card(decision, history)

    rendered = " ".join(str(component.render()) for component in components)
    assert "Decision: refused" in rendered and "p_value" in rendered
    assert "promoted" in rendered and "first" in rendered


def test_a_shadow_run_names_the_shadow_and_both_versions_scores() -> None:
    from promotion.evidence import CrossValidated

    decision = Decision("redeployed", "version 3 is the champion", "none", {})
    scores = {"3": CrossValidated(0.95, 0.02, "tags"), "4": None}
    shadow = shadow_section("4", "3", scores, refused=False)

    rendered = " ".join(str(c.render()) for c in history_card(decision, [], shadow))
    assert "Shadow: version 4" in rendered
    assert "Version **4** scores every request in shadow beside version **3**" in rendered
    assert "0.950 ± 0.020" in rendered and "not recorded" in rendered
    assert rendered.index("Decision: redeployed") < rendered.index("Shadow: version 4")
    assert rendered.index("Shadow: version 4") < rendered.index("Deployment history")
    refused = " ".join(str(c.render()) for c in shadow_section("4", "3", scores, refused=True))
    assert "refused the run, so nothing changed" in refused
    assert "Shadow" not in " ".join(str(c.render()) for c in history_card(decision, []))


def test_figures_on_the_card_are_rounded() -> None:
    decision = Decision(
        "refused", "worse", "production", {"p_value": 0.000012345, "gain": 0.0123456}
    )
    rendered = " ".join(str(c.render()) for c in history_card(decision, []))
    assert "1.23e-05" in rendered and "0.012" in rendered and "0.0123456" not in rendered
