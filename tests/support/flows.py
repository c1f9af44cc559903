"""Running flows (metaflow.Runner or the CLI) and Python code in fresh processes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from support.paths import REPO_ROOT, TRAINING_FLOW

# Small enough to keep the session short on two cores, large enough to learn penguins.
TRAINING_PARAMETERS = {"training_epochs": 5, "folds": 3}
RUN_TIMEOUT = 600  # seconds; a run that takes longer is killed and reported as "timeout"


@dataclass
class FlowResult:
    """How a run ended, with its output and (when it started) its Metaflow `Run`."""

    status: str  # "successful", "failed" or "timeout"
    returncode: int | None
    stdout: str
    stderr: str
    run: Any = None  # metaflow.Run

    @property
    def output(self) -> str:
        return f"{self.stdout}\n{self.stderr}"

    @property
    def successful(self) -> bool:
        return self.status == "successful" and bool(self.run and self.run.successful)

    def describe(self) -> str:
        """The end of the output, for assertion messages."""
        return f"status={self.status} returncode={self.returncode}\n{self.output[-6000:]}"


@dataclass
class FlowRequest:
    """One run to start: `parameters` use underscores (`training_epochs=3`), `config` is
    the file for `--config project <path>`, `decospecs` are top-level `--with` options.
    """

    flow_file: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    config: Path | str | None = None
    decospecs: Sequence[str] = ()
    env: dict[str, str] | None = None
    timeout: float = RUN_TIMEOUT


def run_flows(requests: dict[str, FlowRequest]) -> dict[str, FlowResult]:
    """Start every run with `metaflow.Runner` from the repository root; wait for all.

    Runs started together share the cores: one run alone leaves a core idle whenever
    its graph has a single task ready (start, joins, register, end).
    """
    from metaflow import Runner

    async def execute() -> dict[str, FlowResult]:
        with ExitStack() as stack:
            started = {}
            for name, request in requests.items():
                top_level: dict[str, Any] = {}
                if request.config is not None:
                    top_level["config"] = [("project", str(request.config))]
                if request.decospecs:
                    top_level["decospecs"] = list(request.decospecs)
                runner = stack.enter_context(
                    Runner(
                        str(request.flow_file),
                        show_output=False,
                        cwd=str(REPO_ROOT),
                        env=request.env,
                        **top_level,
                    )
                )
                started[name] = await runner.async_run(**request.parameters)
            await asyncio.gather(
                *(
                    executing.wait(timeout=requests[name].timeout)
                    for name, executing in started.items()
                )
            )
            return {
                name: FlowResult(
                    status=executing.status,
                    returncode=executing.returncode,
                    stdout=executing.stdout,
                    stderr=executing.stderr,
                    run=executing.run,
                )
                for name, executing in started.items()
            }

    return asyncio.run(execute())


def run_flow(
    flow_file: Path,
    parameters: dict[str, Any] | None = None,
    *,
    config: Path | str | None = None,
    decospecs: Sequence[str] = (),
    env: dict[str, str] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> FlowResult:
    """Run one flow with `metaflow.Runner` from the repository root and wait for it.

    `parameters` use underscores (`training_epochs=3`); `config` is the file for
    `--config project <path>`; `decospecs` are top-level `--with` options.
    """
    request = FlowRequest(flow_file, dict(parameters or {}), config, decospecs, env, timeout)
    return run_flows({"run": request})["run"]


def run_cli(
    flow_file: Path,
    *arguments: str,
    env: dict[str, str] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run `python <flow_file> <arguments>` from the repository root, as a user would."""
    return subprocess.run(
        [sys.executable, str(flow_file), *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_python(code: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -c <code>` in a fresh process with the session's environment."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def python_result(code: str, marker: str) -> Any:
    """Run `code` in a fresh process; return the JSON it printed after `<marker>=`."""
    process = run_python(code)
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(x for x in process.stdout.splitlines() if x.startswith(f"{marker}="))
    return json.loads(line.removeprefix(f"{marker}="))


def predict_in_fresh_process(
    model_uri: str, inputs: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Load `model_uri` with `mlflow.pyfunc` in a new Python process and predict.

    `inputs` maps a name to rows; the answer maps the same name to the predicted rows,
    or to `{"error": message}` when that prediction raised. One process, one load.
    """
    code = (
        "import json\n"
        "import mlflow.pyfunc, pandas as pd\n"
        f"model = mlflow.pyfunc.load_model({model_uri!r})\n"
        f"inputs = json.loads({json.dumps(inputs)!r})\n"
        "answers = {}\n"
        "for name, rows in inputs.items():\n"
        "    try:\n"
        "        output = pd.DataFrame(model.predict(pd.DataFrame(rows)))\n"
        "        answers[name] = json.loads(output.to_json(orient='records'))\n"
        "    except Exception as error:\n"
        "        answers[name] = {'error': f'{type(error).__name__}: {error}'}\n"
        "print('PREDICTIONS=' + json.dumps(answers))\n"
    )
    return python_result(code, "PREDICTIONS")


def card_text(card: Any) -> str:
    """A Metaflow card's HTML with its embedded (base64 JSON) content decoded."""
    html = card.get()
    payloads = re.findall(r'window\.__MF_DATA__\[[^\]]*\]\s*=\s*"([A-Za-z0-9+/=]+)"', html)
    return html + "".join(base64.b64decode(p).decode("utf-8") for p in payloads)


# --- fixtures (exposed by tests/conftest.py) ---------------------------------------------


@pytest.fixture(scope="session")
def flow_runner(tracking_uri: str) -> Callable[..., FlowResult]:
    """`run_flow`, once the session's tracking store exists."""
    return run_flow


@pytest.fixture(scope="session")
def flows_runner(tracking_uri: str) -> Callable[[dict[str, FlowRequest]], dict[str, FlowResult]]:
    """`run_flows` (several runs at once), once the session's tracking store exists."""
    return run_flows


@pytest.fixture(scope="session")
def training_run(flow_runner: Callable[..., FlowResult]) -> Iterator[Any]:
    """One successful run of the training pipeline at small settings, shared by tests."""
    result = flow_runner(TRAINING_FLOW, TRAINING_PARAMETERS)
    assert result.successful, f"The training pipeline failed:\n{result.describe()}"
    yield result.run
