"""The monitoring flow's HTML cards are rendered once: no refresh process after them.

Metaflow starts a second process after each card of a type that says it can change
while the task runs, to refresh its data; the `html` type says so but has nothing to
refresh. The flow module tells Metaflow otherwise when it is imported (as it is in every
task process, before the cards are set up). That the cards still hold the reports is
checked on real runs by test_monitoring.py.
"""

from __future__ import annotations

import pytest
from metaflow.plugins.cards.card_modules.card import MetaflowCard
from metaflow.plugins.cards.component_serializer import get_card_class


def test_importing_the_flow_makes_html_cards_render_once() -> None:
    import pipelines.monitoring  # noqa: F401

    html_card = get_card_class("html")
    assert html_card is not None and html_card.RUNTIME_UPDATABLE is False
    assert get_card_class("default").RUNTIME_UPDATABLE is True  # its refresh does work


def test_an_html_card_type_that_can_refresh_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipelines.monitoring import render_html_cards_once

    html_card = get_card_class("html")
    monkeypatch.setattr(html_card, "RUNTIME_UPDATABLE", True)
    monkeypatch.setattr(html_card, "refresh", lambda self, task, data: {"html": "new"})
    render_html_cards_once()
    assert html_card.RUNTIME_UPDATABLE is True
    monkeypatch.undo()
    assert html_card.refresh is MetaflowCard.refresh
