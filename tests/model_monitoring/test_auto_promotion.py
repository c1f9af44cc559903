"""model_monitoring.auto_promotion: asking the deployment pipeline to promote a shadow."""

from __future__ import annotations

import pytest


def test_promotion_is_asked_only_for_a_better_shadow_with_auto_on() -> None:
    from model_monitoring.auto_promotion import promotion_decision

    better = {"challenger_better": True, "shadow_version": "7", "reason": "gain"}
    worse = {**better, "challenger_better": False, "reason": "gain -0.1 is under"}
    assert promotion_decision(better, auto=True) == (
        True,
        "shadow v7 is better: asking to promote it",
    )
    promote, reason = promotion_decision(better, auto=False)
    assert not promote and "promotion.auto: true" in reason and "--model-version 7" in reason
    promote, reason = promotion_decision(worse, auto=True)
    assert not promote and "not better: gain -0.1 is under" in reason
    assert promotion_decision(None, auto=True)[0] is False


def test_the_promotion_command_runs_the_deployment_pipeline_on_the_shadow() -> None:
    import sys

    from model_monitoring.auto_promotion import promotion_command, run_promotion

    command = promotion_command(
        "src/pipelines/deployment.py",
        "/tmp/project.yml",
        "7",
        {"backend": "backend.Local", "dataset": "", "mlflow-tracking-uri": "sqlite:///m.db"},
    )
    assert command == [
        sys.executable,
        "src/pipelines/deployment.py",
        "--config",
        "project",
        "/tmp/project.yml",
        "run",
        "--model-version",
        "7",
        "--backend",
        "backend.Local",
        "--mlflow-tracking-uri",
        "sqlite:///m.db",
    ]
    # What `run_promotion` reports, on real processes standing in for the pipeline.
    done = run_promotion([sys.executable, "-c", "print('deployed')"])
    assert (done["returncode"], done["output"]) == (0, "deployed")
    refused = run_promotion([sys.executable, "-c", "import sys; sys.exit('not promoted')"])
    assert refused["returncode"] == 1 and "not promoted" in refused["output"]
    missing = run_promotion(["/nonexistent/python"])
    assert missing["returncode"] is None and "nonexistent" in missing["output"]


# A stand-in for the deployment pipeline: it reports what it was given, and prints a URI
# with the password it received (its output must come back redacted).
REPORTING_FLOW = """
import json, os, sys
config = open(sys.argv[sys.argv.index("--config") + 2]).read()
print(json.dumps({
    "cmdline": open("/proc/self/cmdline", "rb").read().decode(errors="replace"),
    "config": config,
    "username": os.environ.get("MLFLOW_TRACKING_USERNAME"),
    "password": os.environ.get("MLFLOW_TRACKING_PASSWORD"),
}))
print("talking to http://alice:" + os.environ.get("MLFLOW_TRACKING_PASSWORD", "") + "@h:5000")
"""


def test_the_deployment_gets_credentials_through_its_environment_only(
    tmp_path, monkeypatch
) -> None:
    import json
    import sys

    from model_monitoring.auto_promotion import run_deployment

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/cmdline")
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    secret = "S3cretPw"
    uri = f"http://alice:{secret}@tracking.internal:5000"
    flow = tmp_path / "deployment.py"
    flow.write_text(REPORTING_FLOW)

    outcome = run_deployment(
        str(flow),
        {"project": "penguins", "mlflow_tracking_uri": uri},
        "7",
        {"backend": "backend.Local", "mlflow-tracking-uri": uri},
    )

    assert outcome["returncode"] == 0, outcome["output"]
    seen = json.loads(outcome["output"].splitlines()[0])
    assert (seen["username"], seen["password"]) == ("alice", secret)
    assert secret not in seen["cmdline"] and secret not in seen["config"]
    assert "http://tracking.internal:5000" in seen["cmdline"]
    assert "http://tracking.internal:5000" in seen["config"]
    assert "talking to http://***@h:5000" in outcome["output"]
    assert secret not in json.dumps({**outcome, "output": outcome["output"].splitlines()[1:]})


# --- where monitoring runs decides how it asks ------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "event", "route", "words"),
    [
        ("local", None, "deploy", ["here"]),
        ("local", "promote", "deploy", ["here"]),
        ("argo-workflows", "promote", "publish", ["event 'promote'", "version 7"]),
        ("argo-workflows", None, "refuse", ["set `promotion.event`", "--model-version 7"]),
        ("step-functions", "promote", "refuse", ["from step-functions", "--model-version 7"]),
        ("aws-batch", None, "refuse", ["must not deploy", "--model-version 7"]),
        ("kubernetes", "promote", "refuse", ["from kubernetes", "--model-version 7"]),
    ],
)
def test_only_a_local_run_deploys_argo_publishes_other_workers_refuse(
    platform: str, event: str | None, route: str, words: list[str]
) -> None:
    from model_monitoring.auto_promotion import promotion_route

    decided, reason = promotion_route(platform, event, "7")
    assert decided == route
    for word in words:
        assert word in reason


def test_the_promotion_event_carries_the_version_for_the_deployment_parameter() -> None:
    from support.webhook import serving_webhook

    from model_monitoring.auto_promotion import publish_promotion

    with serving_webhook() as hook:
        outcome = publish_promotion("promote", "7", "Monitoring/12", hook.url)
    [body] = hook.bodies
    assert outcome["route"] == "publish" and outcome["event_id"] == body["payload"]["id"]
    assert body["name"] == "mfns.promote"
    assert body["payload"]["model_version"] == "7"
    assert body["payload"]["monitoring_run"] == "Monitoring/12"
