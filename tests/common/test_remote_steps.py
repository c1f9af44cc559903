"""Steps that run on other machines (src/common/remote_steps.py), and the run they stop
before it starts when the Local backend captures in a SQLite file (common.pipeline's
mutator, backends.local's check): real Metaflow launches, refused before any task."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.paths import LOCAL_CONFIG, REPO_ROOT

from common.remote_steps import remote_steps

FIX = "Set backend.database to a postgresql:// URL reachable from the workers"


@dataclass
class Step:
    """What `remote_steps` reads of Metaflow's MutableStep: its decorators' names."""

    decorators: list[str] = field(default_factory=list)

    def has_decorator(self, name: str) -> bool:
        return name in self.decorators


def test_only_steps_using_the_decorator_and_running_elsewhere_are_named() -> None:
    steps = [
        ("start", Step(["batch", "card"])),
        ("score_chunk", Step(["kubernetes", "common.pipeline.backend"])),
        ("deploy", Step(["common.pipeline.backend"])),
        ("end", Step(["argo_workflows_internal", "common.pipeline.backend"])),
    ]
    assert remote_steps(steps, "common.pipeline.backend") == ["end", "score_chunk"]
    assert remote_steps(steps[2:3], "common.pipeline.backend") == []


def launch(flow: str, *arguments: str, config: Path = LOCAL_CONFIG) -> tuple[int, str]:
    """Run `flow` as a user does, in the session's Metaflow environment; (exit, output)."""
    result = subprocess.run(
        [sys.executable, f"src/pipelines/{flow}.py", "--config", "project", str(config),
         *arguments],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "METAFLOW_DEFAULT_DATASTORE": "local"},
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("flow", "arguments", "steps"),
    [
        ("scoring", ("run", "--with", "batch"), "step score_chunk runs"),
        ("traffic", ("run", "--with", "kubernetes"), "step start runs"),
        ("deployment", ("--with", "batch", "run"), "steps deploy, start run"),
        # What an Argo Workflows task runs with: refused there, in its first task.
        ("traffic", ("--with", "argo_workflows_internal", "show"), "step start runs"),
    ],
)
def test_a_remote_run_capturing_in_sqlite_is_refused_before_any_task(
    flow: str, arguments: tuple[str, ...], steps: str
) -> None:
    code, output = launch(flow, *arguments)
    assert code != 0
    assert f"backend.database is the SQLite file {REPO_ROOT / 'penguins.db'}" in output
    assert f"but the {steps} on other machines" in output and FIX in output
    assert "Workflow starting" not in output  # no run began, no job was submitted


@pytest.mark.e2e
def test_a_remote_run_capturing_in_postgres_passes_the_check(tmp_path: Path) -> None:
    config = tmp_path / "team.yml"
    config.write_text(
        LOCAL_CONFIG.read_text().replace(
            "database: penguins.db", "database: postgresql://penguins@db.internal/captures"
        )
    )
    code, output = launch("scoring", "run", "--with", "batch", config=config)
    # Past the capture check, Metaflow's own check of AWS Batch stops this machine's run.
    assert code != 0 and FIX not in output
    assert "The @batch decorator requires --datastore=s3" in output
