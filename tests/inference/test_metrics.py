"""Tests for inference.metrics: the counts of one served version, their exposition, the
front door's `/metrics` behind the token, and several processes summed.

In process (one process's counts) around a recording app; the multiprocess sum with
worker processes of their own. The real server, scraped by a real Prometheus, is
tests/observability/test_server_metrics.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.asgi import BEARER, JSON, TOKEN, call

from inference.capture import ShadowAnswers
from inference.http_guard import HttpGuard, HttpLimits
from inference.metrics import (
    MULTIPROCESS_DIRECTORY_VARIABLE,
    SWITCH_VARIABLE,
    ServerMetrics,
    class_balance_file,
    training_class_share,
)

CLASSES = ["Adelie", "Chinstrap", "Gentoo"]


def samples(text: bytes | str) -> dict[tuple[str, frozenset], float]:
    """Each sample of an exposition by (name, labels)."""
    text = text.decode() if isinstance(text, bytes) else text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: ServerMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics.exposition()[0]).get((name, frozenset(labels.items())))


async def answering_app(scope, receive, send) -> None:
    """Answers 200, or the status the path names (`/status/503`)."""
    status = int(scope["path"].rpartition("/")[2]) if "/status/" in scope["path"] else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def test_requests_are_counted_by_status_class_and_timed() -> None:
    metrics = ServerMetrics("3", CLASSES)
    for status in (200, 200, 400, 413, 503):
        metrics.request(status, 0.002)

    assert value(metrics, "model_requests_total", version="3", role="champion", status="2xx") == 2
    assert value(metrics, "model_requests_total", version="3", role="champion", status="4xx") == 2
    assert value(metrics, "model_requests_total", version="3", role="champion", status="5xx") == 1
    duration = "model_request_duration_seconds_bucket"
    assert value(metrics, duration, version="3", role="champion", le="0.001") == 0
    assert value(metrics, duration, version="3", role="champion", le="0.0025") == 5


def test_predictions_rows_and_confidences_of_the_champion() -> None:
    metrics = ServerMetrics("3", CLASSES)
    metrics.answered(["Adelie"], [0.95])
    metrics.answered(["Gentoo", "Gentoo", "Adelie"], [0.55, 0.85, 0.25])

    champion = {"version": "3", "role": "champion"}
    assert value(metrics, "model_predictions_total", **champion, **{"class": "Adelie"}) == 2
    assert value(metrics, "model_predictions_total", **champion, **{"class": "Gentoo"}) == 2
    assert value(metrics, "model_predictions_total", **champion, **{"class": "Chinstrap"}) == 0
    assert value(metrics, "model_request_rows_count", **champion) == 2
    assert value(metrics, "model_request_rows_bucket", **champion, le="1.0") == 1
    assert value(metrics, "model_request_rows_bucket", **champion, le="5.0") == 2
    assert value(metrics, "model_prediction_confidence_bucket", **champion, le="0.3") == 1
    assert value(metrics, "model_prediction_confidence_bucket", **champion, le="0.9") == 3
    assert value(metrics, "model_prediction_confidence_count", **champion) == 4
    # No shadow serves: no shadow series.
    assert value(metrics, "model_prediction_confidence_count", version="3", role="shadow") is None


def test_the_shadow_answers_failures_and_agreement() -> None:
    metrics = ServerMetrics("3", CLASSES, shadow_version="4")
    shadow = ShadowAnswers("4", ["Adelie", None, "Chinstrap"], [0.9, None, 0.6])
    metrics.answered(["Adelie", "Gentoo", "Gentoo"], [0.9, 0.8, 0.7], shadow)
    metrics.answered(["Adelie"], [0.9], ShadowAnswers("4", [None], [None]))

    pair = {"version": "3", "shadow_version": "4"}
    assert value(metrics, "model_shadow_failures_total", **pair) == 2
    assert value(metrics, "model_shadow_comparisons_total", **pair, agreement="agree") == 1
    assert value(metrics, "model_shadow_comparisons_total", **pair, agreement="disagree") == 1
    shadow_role = {"version": "3", "role": "shadow"}
    assert value(metrics, "model_predictions_total", **shadow_role, **{"class": "Chinstrap"}) == 1
    assert value(metrics, "model_prediction_confidence_count", **shadow_role) == 2
    assert value(metrics, "model_predictions_total", version="3", role="champion",
                 **{"class": "Gentoo"}) == 2  # fmt: skip


def test_capture_failures_and_the_training_class_share(tmp_path: Path) -> None:
    name, (file_name, contents) = next(iter(class_balance_file({"Adelie": 3, "Gentoo": 1}).items()))
    (tmp_path / file_name).write_bytes(contents)
    artifacts = {name: str(tmp_path / file_name)}
    assert training_class_share(artifacts) == {"Adelie": 0.75, "Gentoo": 0.25}

    metrics = ServerMetrics.from_environment({}, "3", CLASSES, artifacts=artifacts)
    metrics.capture_failed()
    assert value(metrics, "model_capture_failures_total", version="3") == 1
    share = "model_training_class_share"
    assert value(metrics, share, version="3", **{"class": "Adelie"}) == 0.75
    assert value(metrics, share, version="3", **{"class": "Gentoo"}) == 0.25


def test_a_model_without_its_class_balance_has_no_share_gauge() -> None:
    assert training_class_share({}) is None
    metrics = ServerMetrics.from_environment({}, "1", CLASSES, artifacts={})
    exposition = metrics.exposition()[0].decode()
    assert "model_training_class_share{" not in exposition
    assert 'model_requests_total{role="champion",status="2xx",version="1"} 0.0' in exposition


def test_metrics_turned_off_and_a_missing_directory(tmp_path: Path) -> None:
    assert ServerMetrics.from_environment({SWITCH_VARIABLE: "off"}, "1", CLASSES) is None
    missing = {MULTIPROCESS_DIRECTORY_VARIABLE: str(tmp_path / "nowhere")}
    with pytest.raises(ValueError, match="not a directory"):
        ServerMetrics.from_environment(missing, "1", CLASSES)


def test_the_front_door_counts_requests_and_serves_metrics_behind_the_token() -> None:
    metrics = ServerMetrics("7", CLASSES)
    limits = HttpLimits(auth_token=TOKEN, max_request_bytes=1000, max_rows=5)
    guard = HttpGuard(answering_app, limits, metrics)

    assert call(guard, headers=[BEARER, JSON], chunks=[b"{}"]).status == 200
    assert call(guard, headers=[JSON], chunks=[b"{}"]).status == 401
    assert call(guard, headers=[BEARER], chunks=[b"{}"]).status == 415
    assert call(guard, "/ping", "GET").status == 200  # the health check is not counted
    assert call(guard, "/metrics", "GET").status == 401  # as /invocations: token required
    scrape = call(guard, "/metrics", "GET", headers=[BEARER])

    assert scrape.status == 200
    assert scrape.headers[b"content-type"].startswith(b"text/plain; version=")
    counted = samples(scrape.body)
    for status, count in (("2xx", 1), ("4xx", 2), ("5xx", 0)):  # scrapes are not counted
        key = ("model_requests_total", frozenset(
            {"version": "7", "role": "champion", "status": status}.items()))  # fmt: skip
        assert counted[key] == count


def test_without_metrics_the_front_door_keeps_metrics_unknown() -> None:
    limits = HttpLimits(auth_token=None, max_request_bytes=1000, max_rows=5)
    assert call(HttpGuard(answering_app, limits), "/metrics", "GET").status == 404


WORKER = textwrap.dedent(
    """
    import json, sys
    from inference.metrics import ServerMetrics
    metrics = ServerMetrics.from_environment(
        __import__("os").environ, "5", ["Adelie", "Gentoo"], artifacts={}
    )
    for status in json.loads(sys.argv[1]):
        metrics.request(status, 0.001)
        if status == 200:
            metrics.answered(["Gentoo"], [0.8])
    if sys.argv[2] == "scrape":
        sys.stdout.write(metrics.exposition()[0].decode())
    """
)


def run_worker(directory: Path, statuses: list[int], scrape: bool = False) -> str:
    environment = {MULTIPROCESS_DIRECTORY_VARIABLE: str(directory), "PYTHONPATH": "src"}
    completed = subprocess.run(
        [sys.executable, "-c", WORKER, json.dumps(statuses), "scrape" if scrape else "count"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def test_the_counts_of_several_processes_are_summed(tmp_path: Path) -> None:
    run_worker(tmp_path, [200, 200, 404])
    run_worker(tmp_path, [200, 503])
    exposition: dict[Any, float] = samples(run_worker(tmp_path, [], scrape=True))

    def counted(name: str, **labels: str) -> float:
        return exposition[(name, frozenset(labels.items()))]

    champion = {"version": "5", "role": "champion"}
    assert counted("model_requests_total", **champion, status="2xx") == 3
    assert counted("model_requests_total", **champion, status="4xx") == 1
    assert counted("model_requests_total", **champion, status="5xx") == 1
    assert counted("model_predictions_total", **champion, **{"class": "Gentoo"}) == 3
    assert counted("model_prediction_confidence_count", **champion) == 3
