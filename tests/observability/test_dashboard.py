"""The Grafana dashboard observability/grafana/model-server.json: its panels cover every metric
the model server exports, and every panel's PromQL runs on a real Prometheus.

Grafana itself is not installable here, so the dashboard is tested where it can break: its
expressions. A real Prometheus (Debian's package) scrapes a small exposition server of this
test's making, which serves sample metrics under the model server's fixed names with
counters that grow at every scrape; each panel's expressions, with the dashboard's
variables substituted as Grafana would, must evaluate without error and return numbers.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.prometheus import (
    OBSERVABILITY,
    PrometheusServer,
    running_prometheus,
    serving_exposition,
    wait_for,
)

DASHBOARD = OBSERVABILITY / "grafana" / "model-server.json"
# The names the model server exports (issue 23), each shown by at least one panel.
METRICS = (
    "model_requests_total",
    "model_request_duration_seconds",
    "model_request_rows",
    "model_predictions_total",
    "model_prediction_confidence",
    "model_capture_failures_total",
    "model_shadow_failures_total",
    "model_shadow_comparisons_total",
    "model_training_class_share",
)
# Grafana's own variables, with values that suit a 1 s scrape interval (Grafana makes
# $__rate_interval at least four scrape intervals).
GRAFANA_VARIABLES = {"__rate_interval": "10s", "__interval": "2s", "__range": "1h"}
# The dashboard's variables: "All" (Grafana's allValue, a regex) and one chosen value each.
SELECTIONS = {
    "all": {"version": ".*", "role": ".*"},
    "champion 3": {"version": "3", "role": "champion"},
    "versions 3 and 4": {"version": "(3|4)", "role": ".*"},
}
VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")

# Sample traffic: champion version 3 with shadow version 4.
SERVED = (("3", "champion"), ("4", "shadow"))
STATUS_SHARES = {"2xx": 0.9, "4xx": 0.06, "5xx": 0.04}
CLASS_SHARES = {"Adelie": 0.44, "Chinstrap": 0.2, "Gentoo": 0.36}
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
ROWS_BUCKETS = (1, 2, 5, 10, 50, 100, 500, 1000, 5000)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, target refId, PromQL) of every query of the dashboard."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def substitute(expression: str, selection: dict[str, str]) -> str:
    """The expression as Grafana sends it, its variables replaced."""
    values = GRAFANA_VARIABLES | selection

    def value(match: re.Match[str]) -> str:
        return values[match.group(1) or match.group(2)]

    return VARIABLE.sub(value, expression)


EXPRESSIONS = expressions(load_dashboard())


# --- the dashboard's file ----------------------------------------------------------------


def test_every_metric_of_the_model_server_has_a_panel() -> None:
    queries = " ".join(expression for _, _, expression in EXPRESSIONS)
    assert [metric for metric in METRICS if metric not in queries] == []


def test_panels_are_grafana_panels_on_the_chosen_prometheus() -> None:
    dashboard = load_dashboard()
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(dashboard):
        assert {"type", "title", "gridPos"} <= panel.keys(), panel.get("title")
        if panel["type"] != "row":
            assert panel["targets"], f"{panel['title']}: a panel without a query"
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_every_variable_a_query_uses_is_defined() -> None:
    defined = {variable["name"] for variable in load_dashboard()["templating"]["list"]}
    assert {"datasource", "version", "role"} <= defined
    used = {
        match.group(1) or match.group(2)
        for _, _, expression in EXPRESSIONS
        for match in VARIABLE.finditer(expression)
    }
    assert used - defined - GRAFANA_VARIABLES.keys() == set()
    for selection in SELECTIONS.values():
        assert selection.keys() == defined - {"datasource"}


# --- against a real Prometheus -----------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping sample metrics every second, once it holds 3 scrapes."""
    started = time.monotonic()
    with (
        serving_exposition(lambda: sample_metrics(time.monotonic() - started)) as target,
        running_prometheus(tmp_path_factory.mktemp("prometheus"), [target]) as server,
    ):
        wait_for(
            lambda: bool(server.query("min(count_over_time(model_requests_total[1m])) >= 3")),
            "Prometheus to scrape the sample metrics three times",
        )
        yield server


@pytest.mark.e2e
@pytest.mark.parametrize("selection", SELECTIONS, ids=str)
@pytest.mark.parametrize(
    ("title", "ref_id", "expression"),
    EXPRESSIONS,
    ids=[f"{title}-{ref_id}" for title, ref_id, _ in EXPRESSIONS],
)
def test_panel_query_returns_numbers(
    prometheus: PrometheusServer, title: str, ref_id: str, expression: str, selection: str
) -> None:
    query = substitute(expression, SELECTIONS[selection])
    result = prometheus.query(query)  # raises with Prometheus' message on a broken query
    values = [float(series["value"][1]) for series in result]
    assert any(math.isfinite(value) for value in values), f"{title} {ref_id}: {query} -> {result}"


@pytest.mark.e2e
def test_version_variable_lists_the_served_versions(prometheus: PrometheusServer) -> None:
    """The `version` variable's label_values(model_requests_total, version), as Grafana asks."""
    variable = next(v for v in load_dashboard()["templating"]["list"] if v["name"] == "version")
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"]).groups()
    versions = prometheus.api(f"label/{label}/values", **{"match[]": metric})
    assert sorted(versions) == ["3", "4"]


@pytest.mark.e2e
def test_error_rate_panel_shows_the_share_of_server_errors(prometheus: PrometheusServer) -> None:
    error_rate = next(
        expr for title, ref, expr in EXPRESSIONS if (title, ref) == ("Error rate", "A")
    )
    result = prometheus.query(substitute(error_rate, SELECTIONS["champion 3"]))
    assert [float(series["value"][1]) for series in result] == pytest.approx([STATUS_SHARES["5xx"]])


@pytest.mark.e2e
def test_class_share_panel_shows_predicted_and_training_shares(
    prometheus: PrometheusServer,
) -> None:
    title = "Predicted class share (1 h) vs training share"
    for ref_id in ("A", "B"):
        query = next(expr for name, ref, expr in EXPRESSIONS if (name, ref) == (title, ref_id))
        result = prometheus.query(substitute(query, SELECTIONS["champion 3"]))
        shares = {series["metric"]["class"]: float(series["value"][1]) for series in result}
        assert shares == pytest.approx(CLASS_SHARES), ref_id


# --- the sample metrics ------------------------------------------------------------------


def sample_metrics(elapsed: float) -> str:
    """The model server's metrics after `elapsed` seconds of steady traffic, in Prometheus'
    text format: 10 requests a second of 3 rows each, answered by both roles."""
    requests = 10 * (1 + elapsed)
    lines: list[str] = []
    for version, role in SERVED:
        lines += served_metrics({"version": version, "role": role}, requests, rows=3)
        for label, share in CLASS_SHARES.items():
            training = {"version": version, "class": label}
            lines.append(sample("model_training_class_share", training, share))
    lines += champion_metrics({"version": "3", "shadow_version": "4"}, requests, rows=3)
    return "\n".join(lines) + "\n"


def served_metrics(served: dict[str, str], requests: float, rows: int) -> list[str]:
    """The series of one version in one role, labelled `served`."""
    lines = [
        sample("model_requests_total", served | {"status": status}, requests * share)
        for status, share in STATUS_SHARES.items()
    ]
    lines += histogram("model_request_duration_seconds", served, requests, 0.004, DURATION_BUCKETS)
    lines += histogram("model_request_rows", served, requests, rows, ROWS_BUCKETS)
    lines += [
        sample("model_predictions_total", served | {"class": label}, rows * requests * share)
        for label, share in CLASS_SHARES.items()
    ]
    lines += histogram(
        "model_prediction_confidence", served, rows * requests, 0.85, CONFIDENCE_BUCKETS
    )
    return lines


def champion_metrics(pair: dict[str, str], requests: float, rows: int) -> list[str]:
    """The champion's capture failures and its shadow's failures and agreement, which
    carry the champion's version and the shadow's (`pair`)."""
    return [
        sample("model_capture_failures_total", {"version": pair["version"]}, requests / 100),
        sample("model_shadow_failures_total", pair, requests / 50),
        sample("model_shadow_comparisons_total", pair | {"agreement": "agree"}, rows * requests),
        sample("model_shadow_comparisons_total", pair | {"agreement": "disagree"}, requests / 10),
    ]


def sample(name: str, labels: dict[str, str], value: float) -> str:
    rendered = ",".join(f'{label}="{label_value}"' for label, label_value in labels.items())
    return f"{name}{{{rendered}}} {value}"


def histogram(
    name: str, labels: dict[str, str], count: float, observation: float, buckets: tuple[float, ...]
) -> list[str]:
    """A histogram's series after `count` observations, spread evenly over the bucket of
    `observation` and its neighbours, so that the quantiles interpolate."""
    index = next(i for i, bound in enumerate(buckets) if observation <= bound)
    spread = range(max(index - 1, 0), min(index + 1, len(buckets) - 1) + 1)
    cumulative = [count * sum(j <= i for j in spread) / len(spread) for i in range(len(buckets))]
    lines = [
        sample(f"{name}_bucket", labels | {"le": str(float(bound))}, below)
        for bound, below in zip(buckets, cumulative, strict=True)
    ]
    lines.append(sample(f"{name}_bucket", labels | {"le": "+Inf"}, count))
    lines.append(sample(f"{name}_sum", labels, count * observation))
    lines.append(sample(f"{name}_count", labels, count))
    return lines
