"""model_monitoring.auto_promotion: asking the deployment pipeline to promote a shadow."""

from __future__ import annotations


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
