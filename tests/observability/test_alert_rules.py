"""The Prometheus alert rules in observability/prometheus/: checked by `promtool check rules`,
their behaviour by `promtool test rules` (each rule firing and not firing), and the example
scrape configuration by `promtool check config`. Without promtool these tests skip, saying
how to install it; REQUIRE_PROMETHEUS=1 (set by .ci/run) makes them fail instead."""

from __future__ import annotations

from typing import Any

import yaml
from support.prometheus import PROMETHEUS_RULES_DIR, run_promtool

RULES = PROMETHEUS_RULES_DIR / "alerts.yml"
RULE_TESTS = PROMETHEUS_RULES_DIR / "alerts_test.yml"
# Issue 23: error rate, p99 latency, capture failures, shadow failures, no traffic, and the
# predicted-class distribution moving away from the training class balance.
EXPECTED_ALERTS = {
    "ModelServerErrorRateHigh",
    "ModelServerLatencyP99High",
    "ModelServerCaptureFailures",
    "ModelServerShadowFailures",
    "ModelServerNoTraffic",
    "ModelPredictedClassShareDrift",
}
SEVERITIES = {"critical", "warning"}


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    output = run_promtool("check", "rules", RULES.name)
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in output, output


def test_promtool_rule_unit_tests_pass() -> None:
    output = run_promtool("test", "rules", RULE_TESTS.name)
    assert "SUCCESS" in output, output


def test_example_scrape_configuration_is_valid_and_loads_the_rules() -> None:
    output = run_promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output, output


def test_the_issue_s_alerts_are_all_there() -> None:
    assert {rule["alert"] for rule in alerting_rules()} == EXPECTED_ALERTS


def test_each_alert_has_a_severity_a_duration_and_names_the_version() -> None:
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert "for" in rule, f"{name}: say how long the condition must hold, even `0m`"
        for annotation in ("summary", "description"):
            assert "$labels.version" in rule["annotations"][annotation], (name, annotation)


def test_each_alert_is_unit_tested_firing_and_not_firing() -> None:
    """promtool passes a file that never mentions a rule: this says each one is tested both
    ways, so that a new rule cannot ship untested."""
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert firing == EXPECTED_ALERTS, f"never shown firing: {EXPECTED_ALERTS - firing}"
    assert silent == EXPECTED_ALERTS, f"never shown silent: {EXPECTED_ALERTS - silent}"
