"""The team stack (`python -m team_stack`) brought up for a test module, as a user would,
in a directory of its own on free ports, and brought down at the end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.paths import REPO_ROOT
from support.ports import free_port
from support.postgres import require_postgres, traversable_directory

ADMIN = "admin"
ADMIN_PASSWORD = "team-stack-admin-password"  # MLflow wants 12 characters at least
# What a test's environment must not pass on to the stack or its clients.
_REDIRECTING = ("MLFLOW_", "METAFLOW_", "_MLFLOW_", "SERVING_", "AWS_", "STACK_")


def plain_environment(**extra: str) -> dict[str, str]:
    """This process's environment without MLflow, Metaflow, AWS or stack settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_REDIRECTING)}
    return {**environment, "PYTHONUNBUFFERED": "1", **extra}


def parse_exports(text: str, environment: dict[str, str]) -> dict[str, str]:
    """The variables of `export NAME=value` lines; `"$NAME"` values read `environment`."""
    exported = {}
    for name, value in re.findall(r"^export ([A-Z_][A-Z0-9_]*)=(.*)$", text, re.MULTILINE):
        reference = re.fullmatch(r'"\$([A-Z_][A-Z0-9_]*)"', value)
        exported[name] = environment[reference.group(1)] if reference else value
    return exported


@dataclass
class TeamStack:
    """A running stack: its directory, ports, what `up` printed, and the environment of
    its admin (who ran `up`)."""

    directory: Path
    ports: dict[str, int]
    up: subprocess.CompletedProcess[str]
    admin_environment: dict[str, str]

    def cli(
        self, *arguments: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python -m team_stack <arguments>` on this stack."""
        options = [
            "--dir", str(self.directory),
            "--mlflow-port", str(self.ports["mlflow"]),
            "--postgres-port", str(self.ports["postgres"]),
            "--s3-port", str(self.ports["s3"]),
        ]  # fmt: skip
        return subprocess.run(
            [sys.executable, "-m", "team_stack", *arguments, *options],
            cwd=REPO_ROOT,
            env=env or self.admin_environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    @property
    def exports(self) -> dict[str, str]:
        return parse_exports(self.up.stdout, self.admin_environment)

    def client_environment(self, **extra: str) -> dict[str, str]:
        """A client's environment: the plain one plus what `up` said to export."""
        return {**plain_environment(), **self.exports, **extra}


@pytest.fixture(scope="module")
def team_stack() -> Iterator[TeamStack]:
    require_postgres()
    parent = traversable_directory("team-stack-")
    ports = {name: free_port() for name in ("mlflow", "postgres", "s3")}
    admin = plain_environment(
        MLFLOW_TRACKING_USERNAME=ADMIN, MLFLOW_TRACKING_PASSWORD=ADMIN_PASSWORD
    )
    stack = TeamStack(parent / "stack", ports, subprocess.CompletedProcess([], 0, "", ""), admin)
    try:
        stack.up = stack.cli("up")
        assert stack.up.returncode == 0, stack.up.stderr[-4000:]
        yield stack
    finally:
        down = stack.cli("down")
        shutil.rmtree(parent, ignore_errors=True)
        assert down.returncode == 0, down.stderr[-4000:]
