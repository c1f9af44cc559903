"""The model server's Prometheus metrics: counted as requests are answered, served at
`GET /metrics` on the server's own port (by `inference.http_guard`, behind the same
token as `/invocations`).

Every series carries `version`, the served model version, and where it applies `role`,
`champion` or `shadow`:

- `model_requests_total{version,role,status}`: requests by status class (2xx/4xx/5xx);
- `model_request_duration_seconds{version,role}`: latency, from the front door's view;
- `model_request_rows{version,role}`: rows per answered request;
- `model_predictions_total{version,role,class}` and `model_prediction_confidence`:
  one per predicted row, for the champion and for the shadow;
- `model_capture_failures_total{version}`: requests whose predictions were not stored;
- `model_shadow_failures_total{version,shadow_version}`: rows the shadow did not answer;
- `model_shadow_comparisons_total{version,shadow_version,agreement}`: agree/disagree;
- `model_training_class_share{version,class}`: the class balance of the version's
  training data, for a model that carries it (its `class_balance` artifact).

A server of several workers (uvicorn's processes) counts in prometheus_client's
multiprocess mode: each worker writes its values to files in `PROMETHEUS_MULTIPROC_DIR`
and `/metrics` sums them. The variable must be set before prometheus_client is first
imported (the Local backend sets it in the server's environment, a fresh directory for
each server, so counts start at zero with each version). Without it the counts are the
process's own, as for `mlflow models serve` with one worker. `SERVING_METRICS=off`
turns metrics off (bench/serving.py measures their cost with it).

The hot path only increments children bound to their labels when the model loads:
prometheus_client's own locks are the only ones taken.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

MULTIPROCESS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
SWITCH_VARIABLE = "SERVING_METRICS"
CLASS_BALANCE_ARTIFACT = "class_balance"
CLASS_BALANCE_FILE = "class_balance.json"
METRICS_PATH = "/metrics"
CHAMPION, SHADOW = "champion", "shadow"
UNKNOWN_VERSION = "unknown"
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
ROW_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000)
CONFIDENCE_BUCKETS = tuple(round(tenth / 10, 1) for tenth in range(1, 11))
STATUS_CLASSES = {2: "2xx", 4: "4xx", 5: "5xx"}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def class_balance_file(class_rows: Mapping[str, int]) -> dict[str, tuple[str, bytes]]:
    """The `class_balance` artifact a servable model carries: training rows per class."""
    counts = {str(name): int(rows) for name, rows in class_rows.items()}
    return {CLASS_BALANCE_ARTIFACT: (CLASS_BALANCE_FILE, json.dumps(counts).encode())}


def training_class_share(artifacts: Mapping[str, str]) -> dict[str, float] | None:
    """Each class's share of the training rows, from the model's `class_balance`
    artifact; None for a model registered without one."""
    path = artifacts.get(CLASS_BALANCE_ARTIFACT)
    if path is None:
        return None
    with open(path) as file:
        counts = json.load(file)
    total = sum(counts.values())
    return {name: rows / total for name, rows in counts.items()} if total else None


def metrics_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(SWITCH_VARIABLE, "").strip().lower() not in {"off", "0", "false", "no"}


class ServerMetrics:
    """The metrics of one served version (and its shadow), bound to their labels."""

    def __init__(
        self,
        version: str | None,
        classes: Sequence[str],
        shadow_version: str | None = None,
        class_share: Mapping[str, float] | None = None,
        multiprocess_directory: str | None = None,
    ) -> None:
        from prometheus_client import CollectorRegistry

        self.version = version or UNKNOWN_VERSION
        self.shadow_version = shadow_version
        self.registry = CollectorRegistry(auto_describe=True)
        self.exposed = self.registry
        if multiprocess_directory:
            from prometheus_client import multiprocess

            self.exposed = CollectorRegistry()  # what the files of every worker hold
            multiprocess.MultiProcessCollector(self.exposed, path=multiprocess_directory)
        self._define(list(classes))
        if class_share:
            for name, share in class_share.items():
                self._class_share.labels(self.version, name).set(share)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        version: str | None,
        classes: Sequence[str],
        shadow_version: str | None = None,
        artifacts: Mapping[str, str] | None = None,
    ) -> ServerMetrics | None:
        """The server's metrics as its environment configures them; None when turned off.

        ValueError for a `PROMETHEUS_MULTIPROC_DIR` that is not a directory: the workers'
        counts would be lost, or the first request would fail.
        """
        if not metrics_enabled(environ):
            return None
        directory = environ.get(MULTIPROCESS_DIRECTORY_VARIABLE) or None
        if directory is not None and not os.path.isdir(directory):
            raise ValueError(
                f"{MULTIPROCESS_DIRECTORY_VARIABLE} is {directory!r}, which is not a directory: "
                "create it (empty, one per server) or unset it."
            )
        share = training_class_share(artifacts or {})
        return cls(version, classes, shadow_version, share, directory)

    def _define(self, classes: list[str]) -> None:
        """Create the metrics and bind the children the hot path increments."""
        from prometheus_client import Counter as Total
        from prometheus_client import Gauge, Histogram

        def total(name: str, about: str, labels: list[str]) -> Any:
            return Total(name, about, labels, registry=self.registry)

        def histogram(name: str, about: str, buckets: Sequence[float]) -> Any:
            labels = ["version", "role"]
            return Histogram(name, about, labels, buckets=buckets, registry=self.registry)

        version = self.version
        requests = total(
            "model_requests", "Requests by status class.", ["version", "role", "status"]
        )
        self._status = {
            digit: requests.labels(version, CHAMPION, name)
            for digit, name in STATUS_CLASSES.items()
        }
        duration = histogram("model_request_duration_seconds", "Request latency.", DURATION_BUCKETS)
        self._duration = duration.labels(version, CHAMPION)
        rows = histogram("model_request_rows", "Rows per answered request.", ROW_BUCKETS)
        self._rows = rows.labels(version, CHAMPION)
        capture = total("model_capture_failures", "Requests not captured.", ["version"])
        self._capture_failures = capture.labels(version)
        predictions = total(
            "model_predictions", "Rows by predicted class.", ["version", "role", "class"]
        )
        confidence = histogram(
            "model_prediction_confidence", "Confidence of each prediction.", CONFIDENCE_BUCKETS
        )
        roles = (CHAMPION, SHADOW) if self.shadow_version else (CHAMPION,)
        self._roles = {
            role: _RoleMetrics(
                predictions, confidence.labels(version, role), version, role, classes
            )
            for role in roles
        }
        self._define_shadow(total)
        self._class_share = Gauge(
            "model_training_class_share", "Share of each class in the training data.",
            ["version", "class"], registry=self.registry, multiprocess_mode="max",
        )  # fmt: skip

    def _define_shadow(self, total: Callable[[str, str, list[str]], Any]) -> None:
        """The shadow's failures and agreement, bound to its version (defined always, so
        that every server exposes the same metric names; series only with a shadow)."""
        labels = ["version", "shadow_version"]
        failures = total("model_shadow_failures", "Rows the shadow did not answer.", labels)
        comparisons = total(
            "model_shadow_comparisons",
            "Rows the champion and the shadow both answered, by agreement.",
            [*labels, "agreement"],
        )
        if not self.shadow_version:
            return
        version, shadow = self.version, self.shadow_version
        self._shadow_failures = failures.labels(version, shadow)
        self._agreement = {
            True: comparisons.labels(version, shadow, "agree"),
            False: comparisons.labels(version, shadow, "disagree"),
        }

    def request(self, status: int, seconds: float) -> None:
        """One request answered with HTTP `status` after `seconds`."""
        child = self._status.get(status // 100, self._status[5])
        child.inc()
        self._duration.observe(seconds)

    def answered(
        self,
        predictions: Sequence[str],
        confidences: Sequence[float],
        shadow: Any = None,
    ) -> None:
        """The champion answered (and captured) these rows; `shadow` is what the shadow
        answered to them (`inference.capture.ShadowAnswers`), if one serves."""
        self._rows.observe(len(predictions))
        self._roles[CHAMPION].answered(predictions, confidences)
        if shadow is None or SHADOW not in self._roles:
            return
        self._shadow_answered(predictions, shadow.predictions, shadow.confidences)

    def _shadow_answered(
        self, ours: Sequence[str], theirs: Sequence[Any], confidences: Sequence[float | None]
    ) -> None:
        """Count the shadow's answers, failures (no confidence) and agreement, per row."""
        rows = [
            (mine, other, confidence)
            for mine, other, confidence in zip(ours, theirs, confidences, strict=True)
            if confidence is not None
        ]
        if len(rows) < len(ours):
            self._shadow_failures.inc(len(ours) - len(rows))
        if not rows:
            return
        self._roles[SHADOW].answered([row[1] for row in rows], [row[2] for row in rows])
        for agrees, count in Counter(mine == other for mine, other, _ in rows).items():
            self._agreement[agrees].inc(count)

    def capture_failed(self) -> None:
        self._capture_failures.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.exposed), CONTENT_TYPE_LATEST

    async def measured(self, handler: Handler, scope: Scope, receive: Receive, send: Send) -> None:
        """Run `handler` on the request, counting its status and time (a request that
        raised counts as 5xx); a scrape of `/metrics` is not counted."""
        if scope["path"] == METRICS_PATH:
            return await handler(scope, receive, send)
        started = time.perf_counter()
        status = 500

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await handler(scope, receive, sent)
        finally:
            self.request(status, time.perf_counter() - started)

    async def serve(self, send: Send) -> None:
        """Answer a scrape."""
        body, content_type = self.exposition()
        headers = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _RoleMetrics:
    """One role's predictions by class and confidences, children bound per class."""

    def __init__(
        self, predictions: Any, confidence: Any, version: str, role: str, classes: list[str]
    ) -> None:
        self._predictions = predictions
        self._confidence = confidence
        self._version, self._role = version, role
        self._by_class = {name: predictions.labels(version, role, name) for name in classes}

    def answered(self, predictions: Sequence[str], confidences: Sequence[float]) -> None:
        if len(predictions) == 1:  # the common case, without a Counter
            self._child(predictions[0]).inc()
        else:
            for name, rows in Counter(predictions).items():
                self._child(name).inc(rows)
        for confidence in confidences:
            self._confidence.observe(confidence)

    def _child(self, name: str) -> Any:
        child = self._by_class.get(name)
        if child is None:  # a class the model did not list: bound on first sight
            child = self._by_class[name] = self._predictions.labels(self._version, self._role, name)
        return child
