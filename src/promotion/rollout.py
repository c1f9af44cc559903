"""Putting a version into service: get it ready, deploy it, smoke test it, and put back
what served before when it fails.

A `Release` is what serves at the target: a version (or nothing) and the version
scoring in its shadow (or none). The deployment pipeline prepares the new release
while the old one serves, then rolls it out; a release that does not come up or
answers badly (`promotion.smoke_test`) is replaced by the one that served before, and
`RolloutFailed` says which stage failed and what serves now.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.registry import model_uri
from inference.capture import SMOKE
from promotion.errors import PromotionError

if TYPE_CHECKING:
    from backends.base import Backend, ShadowModel

logger = logging.getLogger(__name__)


class RolloutFailed(PromotionError):
    """The new release failed to start or its smoke test, and what served before is back."""


@dataclass(frozen=True)
class Release:
    """Version `version` of model `name` serving (None: nothing), `shadow_version` beside it."""

    name: str
    version: str | None
    shadow_version: str | None = None

    @property
    def model_uri(self) -> str:
        return model_uri(self.name, str(self.version))

    def shadow_model(self) -> ShadowModel | None:
        """The shadow as a backend takes it, or None without one."""
        from backends.base import ShadowModel

        if not self.shadow_version:
            return None
        return ShadowModel(model_uri(self.name, self.shadow_version), self.shadow_version)


@dataclass(frozen=True)
class RolloutTimes:
    """Seconds until the new release served, then for its smoke test."""

    start: float
    smoke_test: float


def prepare(backend: Backend, release: Release) -> None:
    """Get `release` ready to deploy (e.g. downloaded) without touching what serves."""
    from backends.base import BackendError

    try:
        backend.prepare(release.model_uri, str(release.version), release.shadow_model())
    except BackendError as error:
        raise PromotionError(f"{error}; nothing was changed.") from None


def roll_out(
    backend: Backend,
    release: Release,
    before: Release,
    smoke_rows: list[dict[str, Any]],
    classes: Collection[str],
) -> RolloutTimes:
    """Deploy `release` and smoke test it; on failure put `before` back, RolloutFailed."""
    from backends.base import BackendError
    from promotion.smoke_test import SmokeTestError, check_predictions

    stage = "start"
    started = time.perf_counter()
    try:
        backend.deploy(release.model_uri, str(release.version), shadow=release.shadow_model())
        serving = time.perf_counter()
        stage = "smoke test"
        # Marked as a smoke test's: stored, never taken for production evidence.
        response = backend.invoke(smoke_rows, source=SMOKE)
        check_predictions(response, len(smoke_rows), set(classes))
    except (BackendError, SmokeTestError) as error:
        restore(backend, before)
        raise RolloutFailed(
            f"Version {release.version} failed its {stage} and was rolled back to "
            f"{before.version or 'no deployment'}: {error}"
        ) from None
    return RolloutTimes(serving - started, time.perf_counter() - serving)


def restore(backend: Backend, before: Release) -> None:
    """Put back what served before a deployment (or nothing, if nothing did)."""
    logger.warning("Rolling back to %s.", before.version or "no deployment")
    if before.version is None:
        backend.stop()
        return
    backend.deploy(before.model_uri, before.version, shadow=before.shadow_model())
