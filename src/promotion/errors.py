"""The one error the promotion stage raises for a deployment it cannot go on with.

Its message is whole, for a person: what was asked, why it cannot be done, and what to
do instead. The deployment pipeline fails the run with it as it is.
"""


class PromotionError(RuntimeError):
    """A deployment request that cannot go on; the message says why and what to do."""
