"""Shared fixtures: an isolated place to run pipelines, and helpers to run them.

Every test session gets one temporary directory holding everything a run writes:

- the Metaflow local datastore and its cards (`METAFLOW_DATASTORE_SYSROOT_LOCAL`),
- the MLflow tracking and registry store (`MLFLOW_TRACKING_URI=sqlite:///.../mlflow.db`)
  and the artifacts of every experiment the tests use.

The environment is set in `pytest_configure`, before any test module imports
Metaflow: Metaflow reads its configuration once, at import time. Runs start with
`metaflow.Runner` from the repository root, like `uv run src/pipelines/training.py run`,
so `config/local.yml` and `data/penguins.csv` resolve as they do for users.

Set PIPELINE_TESTS_KEEP=1 to keep the directory after the session (its path is printed
in the report header).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINING_FLOW = REPO_ROOT / "src" / "pipelines" / "training.py"
FLOWS_DIR = Path(__file__).resolve().parent / "pipelines" / "flows"
TEMPLATE_FLOW = FLOWS_DIR / "template_flow.py"
PENGUINS_CSV = REPO_ROOT / "data" / "penguins.csv"
LOCAL_CONFIG = REPO_ROOT / "config" / "local.yml"

# The row of the README's (and the spec's) curl example.
SPEC_ROW = {
    "island": "Biscoe",
    "culmen_length_mm": 48.6,
    "culmen_depth_mm": 16.0,
    "flipper_length_mm": 230.0,
    "body_mass_g": 5800.0,
    "sex": "MALE",
}

# Small enough to keep the session short on two cores, large enough to learn penguins.
TRAINING_PARAMETERS = {"training_epochs": 5, "folds": 3}
RUN_TIMEOUT = 600  # seconds; a run that takes longer is killed and reported as "timeout"

_ROOT: Path | None = None


def isolated_environment(root: Path) -> dict[str, str]:
    """Environment variables that keep every Metaflow and MLflow write under `root`."""
    datastore = root / "metaflow"
    return {
        "PIPELINE_TESTS_ROOT": str(root),
        "METAFLOW_DATASTORE_SYSROOT_LOCAL": str(datastore),
        # Metaflow 2.19.39 writes cards to `<sysroot>/.metaflow/<Flow>/runs/...` when
        # METAFLOW_CARD_LOCALROOT is set (CardDatastore.get_storage_root returns None for
        # it) and, when it is not set, to the first `.metaflow` above the working
        # directory: the repository's. The card client reads
        # `<sysroot>/.metaflow/mf.cards/...`. Setting the variable keeps cards out of
        # the repository, and the `mf.cards -> .` link (made in `pytest_configure`)
        # lets the client find them, with or without the bug.
        "METAFLOW_CARD_LOCALROOT": str(datastore / ".metaflow" / "mf.cards"),
        "METAFLOW_USER": "pipeline-tests",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "KERAS_BACKEND": "jax",
        "LOG_LEVEL": "INFO",
    }


def pytest_configure(config: pytest.Config) -> None:
    global _ROOT
    _ROOT = Path(tempfile.mkdtemp(prefix="pipeline-tests-"))
    cards = _ROOT / "metaflow" / ".metaflow" / "mf.cards"
    cards.parent.mkdir(parents=True)
    cards.symlink_to(".", target_is_directory=True)
    os.environ.update(isolated_environment(_ROOT))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ROOT is not None and not os.environ.get("PIPELINE_TESTS_KEEP"):
        shutil.rmtree(_ROOT, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str:
    return f"pipeline runs write to {_ROOT}"


# --- MLflow ---------------------------------------------------------------------------


def init_tracking_store(uri: str, artifact_root: Path) -> None:
    """Create the tables of a SQLite tracking store whose artifacts go to `artifact_root`.

    Left to the pipelines, MLflow would create the store with its default artifact
    root, `./mlruns` in the working directory: the repository.
    """
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(uri, str(artifact_root)).engine.dispose()


def ensure_experiment(name: str, uri: str | None = None) -> str:
    """Create experiment `name` with its artifacts in the session directory; return its id.

    Pipelines call `mlflow.set_experiment(<project name>)`, which keeps an existing
    experiment's artifact location: create every experiment a test run uses first.
    """
    import mlflow

    client = mlflow.MlflowClient(uri or os.environ["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    artifacts = session_directory() / "mlartifacts" / name
    return client.create_experiment(name, artifact_location=str(artifacts))


def session_directory() -> Path:
    """The session's temporary directory: everything runs write lives under it."""
    return Path(os.environ["PIPELINE_TESTS_ROOT"])


@pytest.fixture(scope="session")
def session_root() -> Path:
    return session_directory()


@pytest.fixture(scope="session")
def tracking_uri(session_root: Path) -> str:
    """The session's MLflow tracking and registry URI, with its tables created."""
    uri = os.environ["MLFLOW_TRACKING_URI"]
    init_tracking_store(uri, session_root / "mlartifacts")
    for name in ("penguins", "Default"):
        ensure_experiment(name, uri)
    return uri


@pytest.fixture(scope="session")
def mlflow_client(tracking_uri: str) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri, registry_uri=tracking_uri)


# --- running flows ----------------------------------------------------------------------


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


def serving_support() -> Any:
    """tests/inference/conftest.py (models, servers, configs) as a plain module.

    Test files elsewhere use its helpers; imported under its own name, it does not
    replace this module as `conftest`.
    """
    import importlib.util

    name = "serving_test_support"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "inference" / "conftest.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now (never 8080, where a
    developer's own model server may come up)."""
    import socket

    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != 8080:
            return port


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


def python_result(code: str, marker: str) -> Any:
    """Run `code` in a fresh process; return the JSON it printed after `<marker>=`."""
    process = run_python(code)
    assert process.returncode == 0, process.stderr[-4000:]
    line = next(x for x in process.stdout.splitlines() if x.startswith(f"{marker}="))
    return json.loads(line.removeprefix(f"{marker}="))


def card_text(card: Any) -> str:
    """A Metaflow card's HTML with its embedded (base64 JSON) content decoded."""
    html = card.get()
    payloads = re.findall(r'window\.__MF_DATA__\[[^\]]*\]\s*=\s*"([A-Za-z0-9+/=]+)"', html)
    return html + "".join(base64.b64decode(p).decode("utf-8") for p in payloads)


# --- AWS stand-in ---------------------------------------------------------------------


@dataclass
class MotoServer:
    """A `moto_server` process on 127.0.0.1 and the environment that points AWS clients at it."""

    url: str
    env: dict[str, str]

    def reset(self) -> None:
        """Forget every AWS resource created so far (moto's own reset endpoint)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"))

    def queue_sagemaker_results(self, bodies: list[dict[str, Any]]) -> None:
        """What moto's `invoke_endpoint` answers next (any endpoint), one body per call."""
        import urllib.request

        results = [{"Body": json.dumps(body), "ContentType": "application/json"} for body in bodies]
        request = urllib.request.Request(
            f"{self.url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"results": results, "region": "us-east-1"}).encode(),
            method="POST",
        )
        urllib.request.urlopen(request).close()


def moto_environment(url: str) -> dict[str, str]:
    """Dummy credentials and endpoints so boto3, Metaflow and MLflow talk to moto only."""
    return {
        "AWS_ENDPOINT_URL": url,
        "METAFLOW_S3_ENDPOINT_URL": url,
        "MLFLOW_S3_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        # Never read a developer's real profile or config files.
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """`moto_server` as a real process for the session; its environment is set meanwhile.

    The environment goes into `os.environ` (and so into every pipeline run started
    after), because boto3 reads it when a client is created.
    """
    import time
    import urllib.request

    port = free_port()
    executable = Path(sys.executable).with_name("moto_server")
    log = open(session_directory() / "moto.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(executable), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                log.close()
                raise RuntimeError(
                    f"moto_server did not start: {(session_directory() / 'moto.log').read_text()}"
                ) from None
            time.sleep(0.1)
    env = moto_environment(url)
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield MotoServer(url, env)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        process.terminate()
        process.wait(timeout=10)
        log.close()
