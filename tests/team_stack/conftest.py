"""The `team_stack` fixture for the tests of this directory (support/team_stack.py)."""

from support.team_stack import team_stack  # noqa: F401
