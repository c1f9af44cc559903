"""Tests for backends.base: what every backend declares about itself."""

from __future__ import annotations

from backends.local import Local
from backends.sagemaker import Sagemaker


def test_only_the_local_backend_serves_where_it_is_deployed() -> None:
    # The deployment pipeline refuses to deploy from a worker a backend whose server
    # would live on that worker (promotion.promotion_event.deploying_here_error).
    assert Local.serves_where_deployed is True
    assert Sagemaker.serves_where_deployed is False
