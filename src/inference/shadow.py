"""Shadow scoring: a second model answers every request, unseen, beside the champion.

The server loads the shadow (`SERVING_SHADOW_MODEL_PATH`, `SERVING_SHADOW_VERSION`)
with `inference.scorer.load_scorer`: it gets the champion's validated columns, never a
request of its own, so it installs no request guard and opens no capture. Its answers
go into the champion's capture row, under the same id.

The shadow must never fail a request nor slow it much:

- Its errors (an exception, a non-finite answer) are caught; the row is then captured
  with the shadow's version and no prediction, so monitoring can count failures.
- It runs synchronously, in the request's thread. A one-row numpy forward pass costs
  tens of microseconds, less than handing it to another thread would: a waiting
  request thread can wait a whole GIL switch interval (5 ms) to be woken, under load.
  Each call is timed instead; an answer over the budget (the larger of
  `SERVING_SHADOW_BUDGET_MS`, default 2 ms, and twice what the champion took for the
  same rows) is dropped as too slow when the shadow's own work (the thread's CPU
  time) is at least half the budget, or the call took `HUNG_FACTOR` budgets however
  it spent them. On a busy machine a healthy call is often preempted past 2 ms: the
  wall clock alone dropped ~1-2% of healthy answers at a load average of 10 on 2
  cores; the other processes' work is not the shadow's fault.
- After `TRIP_AFTER` failures in a row the shadow is suspended for the next
  `cooldown` requests (rows captured without a prediction, counted as skipped), then
  tried again; each new trip without a success in between doubles the cooldown, up to
  `MAX_COOLDOWN`. A slow or broken shadow so costs a few requests now and then, not
  every request. Counting requests rather than seconds keeps this deterministic.
- Failures are counted (`ShadowScorer.counts()`) and logged: the first of each kind
  with its message, then one line per `LOG_INTERVAL_SECONDS` at most, with the counts.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from inference.capture import ShadowAnswers
from inference.features import Columns, FeatureTransform, InvalidInput

DEFAULT_BUDGET_MS = 2.0
HUNG_FACTOR = 10
TRIP_AFTER = 3
FIRST_COOLDOWN = 100
MAX_COOLDOWN = 10_000
LOG_INTERVAL_SECONDS = 60.0
# What `counts()` reports: answers given, and failures by kind.
KINDS = ("scored", "error", "non_finite", "slow", "skipped")

logger = logging.getLogger(__name__)

Score = Callable[[Columns], tuple[list[Any], list[float]]]


class IncompatibleShadow(ValueError):
    """The shadow model expects other input than the champion; the message says how."""


def feature_differences(champion: FeatureTransform, shadow: FeatureTransform) -> list[str]:
    """How the shadow's expected input differs from the champion's; empty when alike."""
    differences = []
    for kind, ours, theirs in (
        ("numeric", champion.numeric, shadow.numeric),
        ("categorical", list(champion.categorical), list(shadow.categorical)),
    ):
        if only_shadow := [name for name in theirs if name not in ours]:
            differences.append(f"{kind} feature(s) {only_shadow} only in the shadow")
        if only_champion := [name for name in ours if name not in theirs]:
            differences.append(f"{kind} feature(s) {only_champion} only in the champion")
    for name, categories in champion.categorical.items():
        if name not in shadow.categorical:
            continue
        extra = [c for c in shadow.categorical[name] if c not in categories]
        lacking = [c for c in categories if c not in shadow.categorical[name]]
        if extra:
            differences.append(f"categories {extra} of {name!r} only in the shadow")
        if lacking:
            differences.append(f"categories {lacking} of {name!r} only in the champion")
    return differences


def check_compatible(
    champion: FeatureTransform, shadow: FeatureTransform, shadow_version: str
) -> None:
    """Raise `IncompatibleShadow` unless the shadow takes exactly the champion's input.

    The shadow scores the champion's validated columns: a feature or category it does
    not know would be silently dropped by its one-hot encoding, not refused.
    """
    differences = feature_differences(champion, shadow)
    if differences:
        raise IncompatibleShadow(
            f"The shadow model (version {shadow_version}) does not take the champion's "
            f"input: {'; '.join(differences)}. Shadow a version trained on the same "
            "features and categories, or deploy it on its own."
        )


class ShadowScorer:
    """Score validated columns with the shadow model; never raise, count what failed.

    `clock` is the monotonic time source and `cpu_clock` this thread's CPU time
    (seconds); tests replace them. Thread-safe:
    the scoring server calls it from several threads at once.
    """

    def __init__(
        self,
        score: Score,
        version: str,
        budget_ms: float = DEFAULT_BUDGET_MS,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        if not budget_ms > 0:
            raise ValueError(f"the shadow's time budget must be positive, got {budget_ms} ms.")
        self.score = score
        self.version = version
        self.budget = budget_ms / 1000
        self.clock = clock
        self.cpu_clock = cpu_clock
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(KINDS, 0)
        self._failures_in_row = 0
        self._cooldown = FIRST_COOLDOWN
        self._suspended_for = 0
        self._logged_kinds: set[str] = set()
        self._next_summary = 0.0

    def counts(self) -> dict[str, int]:
        """Answers given and failures by kind (`error`, `non_finite`, `slow`, `skipped`)."""
        with self._lock:
            return dict(self._counts)

    @property
    def failures(self) -> int:
        counts = self.counts()
        return sum(counts[kind] for kind in KINDS if kind != "scored")

    def answer(self, columns: Columns, rows: int, champion_seconds: float) -> ShadowAnswers:
        """The shadow's answers for `rows` validated rows; no prediction where it failed."""
        with self._lock:
            if self._suspended_for > 0:
                self._suspended_for -= 1
                self._counts["skipped"] += rows
                return self._missing(rows)
        started, worked = self.clock(), self.cpu_clock()
        try:
            predictions, confidences = self.score(columns)
            if not len(predictions) == len(confidences) == rows:
                raise ValueError(
                    f"{len(predictions)} predictions and {len(confidences)} confidences "
                    f"for {rows} rows"
                )
            if not all(math.isfinite(value) for value in confidences):
                raise FloatingPointError("non-finite confidence")
        except Exception as error:
            kind = "non_finite" if _non_finite(error) else "error"
            self._failed(kind, rows, f"{type(error).__name__}: {error}")
            return self._missing(rows)
        elapsed = self.clock() - started
        allowed = max(self.budget, 2 * champion_seconds)
        own_work = self.cpu_clock() - worked
        if elapsed > allowed and (own_work >= allowed / 2 or elapsed > HUNG_FACTOR * allowed):
            self._failed(
                "slow",
                rows,
                f"{elapsed * 1000:.2f} ms for {rows} row(s), over {allowed * 1000:.2f} ms",
            )
            return self._missing(rows)
        with self._lock:
            self._counts["scored"] += rows
            self._failures_in_row = 0
            self._cooldown = FIRST_COOLDOWN
        return ShadowAnswers(self.version, predictions, confidences)

    def _missing(self, rows: int) -> ShadowAnswers:
        return ShadowAnswers(self.version, [None] * rows, [None] * rows)

    def _failed(self, kind: str, rows: int, detail: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._counts[kind] += rows
            self._failures_in_row += 1
            tripped = self._failures_in_row >= TRIP_AFTER
            if tripped:
                self._suspended_for = self._cooldown
                self._cooldown = min(self._cooldown * 2, MAX_COOLDOWN)
                self._failures_in_row = 0
            first = kind not in self._logged_kinds
            self._logged_kinds.add(kind)
            summary = not first and now >= self._next_summary
            if first or summary:
                self._next_summary = now + LOG_INTERVAL_SECONDS
            counts = dict(self._counts)
            suspended = self._suspended_for
        if first:
            logger.warning(
                "Shadow version %s failed (%s): %s. The champion's answer is returned; "
                "further failures are logged once a minute at most.",
                self.version, kind, detail,
            )  # fmt: skip
        elif summary:
            logger.warning("Shadow version %s failures so far: %s.", self.version, counts)
        if tripped:
            logger.warning(
                "Shadow version %s suspended for the next %d requests after %d failures "
                "in a row.",
                self.version, suspended, TRIP_AFTER,
            )  # fmt: skip


def _non_finite(error: Exception) -> bool:
    """Whether `error` says the model's answer was not a finite number."""
    # On columns the champion validated, the only InvalidInput `Model.score` raises is
    # its refusal of non-finite probabilities.
    return isinstance(error, FloatingPointError | InvalidInput)
