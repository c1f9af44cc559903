"""Statistics the tests check the project's figures against, and nothing in src/ needs."""

from __future__ import annotations


def mcnemar_statistic(champion_only: int, challenger_only: int) -> float:
    """McNemar's chi-squared statistic (no continuity correction), for reports."""
    discordant = champion_only + challenger_only
    return 0.0 if discordant == 0 else (champion_only - challenger_only) ** 2 / discordant
