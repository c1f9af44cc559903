"""The one error batch scoring raises for a request it cannot carry out.

Its message is whole, for a person: what is wrong with the input, the output or a
parameter, and how to fix it. As a `MetaflowException`, the run fails with that message
alone, without a traceback.
"""

from metaflow.exception import MetaflowException


class ScoringError(MetaflowException):
    """A scoring input, output or parameter is wrong; the message says how to fix it."""

    headline = "Scoring error"


def refuse(problem: str | None, staging: str) -> None:
    """Fail the run with `problem`, if there is one, leaving no staged file behind."""
    if problem is not None:
        from batch_scoring.locations import remove_staging

        remove_staging(staging)
        raise ScoringError(problem)
