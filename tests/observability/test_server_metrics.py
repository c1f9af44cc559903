"""End to end: a real Prometheus (Debian's package) scrapes a real Local model server of
two workers; what it reads through its HTTP API equals what the test sent, and after a
version swap the new version's series appear, starting from zero.

The server is the session's tiny registered models (support/serving.py), served by the
Local backend at a place of this module's own and stopped by its recorded pid (its whole
process group: the workers too) when the module ends.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.places import Place
from support.prometheus import PrometheusServer, running_prometheus, wait_for
from support.rows import SPEC_ROW
from support.serving import ServingModels

from backends.local_server import LocalServer

GOOD_REQUESTS = 30
BAD_REQUESTS = 7  # 4xx: a malformed body, or no content type


@pytest.fixture(scope="module")
def place(serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    place = Place(tmp_path_factory.mktemp("metrics"), workers=2)
    try:
        yield place
    finally:
        place.backend().stop()


def send(url: str, body: bytes, content_type: str | None = "application/json") -> int:
    """The status of one POST of `body` to `url`, on a connection of its own."""
    request = urllib.request.Request(url, data=body, method="POST")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def send_traffic(url: str) -> tuple[int, int]:
    """Send the good and the bad requests, interleaved; how many of each were answered
    200 and 4xx."""
    good_body = json.dumps({"inputs": [SPEC_ROW]}).encode()
    good = sum(send(url, good_body) == 200 for _ in range(GOOD_REQUESTS // 2))
    bad = 0
    for index in range(BAD_REQUESTS):
        body, kind = (good_body, None) if index % 2 else (b"{not json", "application/json")
        bad += send(url, body, kind) in (400, 415)
    good += sum(send(url, good_body) == 200 for _ in range(GOOD_REQUESTS - GOOD_REQUESTS // 2))
    assert (good, bad) == (GOOD_REQUESTS, BAD_REQUESTS)
    return good, bad


def value(prometheus: PrometheusServer, expression: str) -> float | None:
    result = prometheus.query(expression)
    return float(result[0]["value"][1]) if result else None


def wait_for_value(prometheus: PrometheusServer, expression: str, expected: float) -> None:
    wait_for(
        lambda: value(prometheus, expression) == expected,
        f"{expression} == {expected} (last: {value(prometheus, expression)})",
    )


@pytest.mark.e2e
def test_prometheus_reads_what_the_server_answered(
    place: Place, serving_models: ServingModels, tmp_path: Path
) -> None:
    first, second = serving_models.good[:2]
    backend = place.backend()
    backend.deploy(serving_models.uri(first), first)
    state = LocalServer(place.state_dir).state()
    assert state.metrics_dir and Path(state.metrics_dir).is_dir()
    assert Path(state.metrics_dir).stat().st_mode & 0o777 == 0o700
    target = f"127.0.0.1:{place.port}"

    with running_prometheus(tmp_path / "prometheus", [target]) as prometheus:
        good, bad = send_traffic(place.url)
        series = f'model_requests_total{{version="{first}",role="champion"'
        wait_for_value(prometheus, series + ',status="2xx"}', good)
        wait_for_value(prometheus, series + ',status="4xx"}', bad)
        assert value(prometheus, series + ',status="5xx"}') == 0
        rows = f'model_request_rows_count{{version="{first}",role="champion"}}'
        assert value(prometheus, rows) == good
        predicted = f'sum(model_predictions_total{{version="{first}",role="champion"}})'
        assert value(prometheus, predicted) == good
        latency = f'model_request_duration_seconds_count{{version="{first}"}}'
        assert value(prometheus, latency) == good + bad
        # Both workers counted: each wrote its own files, which /metrics sums.
        pids = {path.stem.rsplit("_", 1)[1] for path in Path(state.metrics_dir).glob("*.db")}
        assert len(pids) >= 2, f"only worker(s) {pids} answered"

        backend.deploy(serving_models.uri(second), second)
        new_state = LocalServer(place.state_dir).state()
        assert new_state.metrics_dir != state.metrics_dir
        assert not Path(state.metrics_dir).exists()  # the old server's counts are gone
        assert send(place.url, json.dumps({"inputs": [SPEC_ROW]}).encode()) == 200
        new_series = f'model_requests_total{{version="{second}",role="champion",status="2xx"}}'
        wait_for_value(prometheus, new_series, 1)
        assert value(prometheus, f'model_capture_failures_total{{version="{second}"}}') == 0
