"""The `Pipeline` base class and the step decorators every pipeline shares.

A pipeline is a Metaflow flow that inherits from `Pipeline`:

    from common.pipeline import Pipeline, dataset, backend

    class MyPipeline(Pipeline):
        @dataset
        @step
        def start(self): ...

It receives the project configuration (`--config project config/local.yml`), the
parameters `--backend`, `--dataset` and `--mlflow-tracking-uri`, and four decorators:

- `@logging` (every step, added automatically): `self.logger`.
- `@mlflow` (every step, added automatically): MLflow points at the configured
  tracking URI; an unreachable server fails the step at once with a clear message.
- `@dataset` (explicit): `self.data`, the cleaned and shuffled dataset.
- `@backend` (explicit): `self.backend_impl`, the configured backend instance.

Its code package, which remote tasks (`--with batch`, `--with kubernetes`, the
schedulers) run from, also holds `common`, `backends`, `inference` and `data/*.csv`.

This module imports only Metaflow and the standard library: each Metaflow task is a
new process that imports it, and heavy libraries belong in the steps that use them.
"""

from __future__ import annotations

import importlib
import logging as std_logging
import os
import random
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import metaflow.metaflow_config
from metaflow import (
    Config,
    FlowMutator,
    FlowSpec,
    Parameter,
    config_expr,
    current,
    package_sources,
    project,
)
from metaflow.exception import MetaflowException
from metaflow.user_decorators.user_step_decorator import user_step_decorator
from metaflow.util import get_username

from common.config import parse_project_configuration
from common.data import DatasetSchema, load_dataset
from common.remote_steps import remote_steps
from common.s3_datastore import transfer_small_batches_in_process
from common.secrets import (
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    CredentialsError,
    authorization_header,
    clean_tracking_environment,
    credentials_to_environment,
    redact,
)
from common.settings import ProjectSettings, project_settings

# Tasks are CPU-bound processes that spend most of their life importing libraries:
# running more of them than there are cores only makes each one slower. An explicit
# `--max-workers` or METAFLOW_RUN_MAX_WORKERS still wins.
os.environ.setdefault("METAFLOW_RUN_MAX_WORKERS", str(os.cpu_count() or 1))

# A pipeline's log is its own steps' lines and its libraries' warnings. Left alone,
# Metaflow says "Running pylint... Pylint not found" before every run (ruff lints this
# project; pylint is no dependency), MLflow logs at INFO what it copies into each model
# and draws a progress bar for every artifact it downloads. The environment reaches
# every task; `--pylint`, MLFLOW_LOGGING_LEVEL=INFO or
# MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=true set by the user still win.
QUIET_LIBRARIES = {
    "METAFLOW_PYLINT": "false",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
for _name, _value in QUIET_LIBRARIES.items():
    os.environ.setdefault(_name, _value)

# With the S3 datastore, a task's artifacts and a join's inputs stay in its process
# instead of a subprocess per batch (see common/s3_datastore.py).
transfer_small_batches_in_process()

# Metaflow refuses to run without a user name and never accepts "root", which is who
# runs containers and CI machines. Name such a user "local" rather than fail the run;
# the environment variable reaches the task subprocesses too.
if get_username() is None:
    os.environ["METAFLOW_USER"] = metaflow.metaflow_config.USER = "local"

DEVELOPMENT_SEED = 42
LOG_FORMAT = "%(asctime)s [%(levelname)s] %(message)s"

# src/ and the repository root, wherever the repository is checked out.
SOURCE_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = SOURCE_ROOT.parent
# The packages every pipeline imports besides its own file.
PACKAGED_CODE = (
    "common",
    "backends",
    "inference",
    "model_training",
    "model_tuning",
    "promotion",
    "model_monitoring",
    "batch_scoring",
)


class PipelineError(MetaflowException):
    """A pipeline setting is wrong; the message says which and how to fix it."""

    headline = "Pipeline error"


# Card types whose cards these pipelines fill once, when the step ends.
CARD_TYPES_RENDERED_ONCE = ("default", "blank", "html")


def render_cards_once() -> None:
    """Have Metaflow render each card of these pipelines once, after its task.

    After a task Metaflow starts one process per card to render it and, for a type
    that can change while the task runs, a second one to store its data for live
    views: a new process importing Metaflow and the flow (~0.6 s here), one card after
    another, on every task's path. No step of these pipelines updates a card while it
    runs (nothing calls `current.card.refresh()`), so the second process would store
    nothing a reader sees: `card view` and `card server` show the rendered card.
    """
    from metaflow.plugins.cards.component_serializer import get_card_class

    for name in CARD_TYPES_RENDERED_ONCE:
        card_class = get_card_class(name)
        if card_class is not None:
            card_class.RUNTIME_UPDATABLE = False


def _configure_logging() -> None:
    root = std_logging.getLogger()
    if not any(getattr(h, "_pipeline_handler", False) for h in root.handlers):
        handler = std_logging.StreamHandler(sys.stdout)
        handler.setFormatter(std_logging.Formatter(LOG_FORMAT))
        handler._pipeline_handler = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # JAX announces at INFO level, in every task, that it found no TPU.
    std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.WARNING)


@user_step_decorator
def logging(step_name, flow, inputs=None):
    """Give the step a configured `self.logger`.

    The logger is removed after the step: it is plumbing, not a result worth storing.
    """
    _configure_logging()
    flow.logger = std_logging.getLogger(f"{flow.name}.{step_name}")
    yield
    _forget(flow, "logger")


def check_tracking_server(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, with a useful message, when an HTTP tracking server is not answering.

    MLflow's own client would retry for minutes before giving up. The request carries
    the credentials MLflow would send (from the URI, or MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN): urllib cannot use a `user:pw@`
    URL. The message never shows them.
    """
    environ = dict(os.environ)
    try:
        bare = credentials_to_environment(uri, environ)
    except CredentialsError as error:
        raise PipelineError(str(error)) from None
    if not bare.startswith(("http://", "https://")):
        return
    health = urllib.request.Request(
        f"{bare.rstrip('/')}/health", headers=authorization_header(environ)
    )
    try:
        with urllib.request.urlopen(health, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # Something answered: a server behind a proxy may not expose /health.
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = redact(str(getattr(error, "reason", error)))
        raise PipelineError(
            f"The MLflow tracking server at {redact(uri)} is not reachable ({reason}). Start "
            "it (the team stack: `uv run just stack-up`, see docs/team-setup.md), or point "
            "MLFLOW_TRACKING_URI or --mlflow-tracking-uri at one that runs."
        ) from None
    check_tracking_credentials(bare, environ, timeout)


def check_tracking_credentials(bare: str, environ: dict[str, str], timeout: float) -> None:
    """PipelineError when the server refuses the credentials (HTTP 401 or 403 on a
    request that needs them; /health needs none), instead of MLflow's retries."""
    search = urllib.request.Request(
        f"{bare.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1",
        headers=authorization_header(environ),
    )
    try:
        with urllib.request.urlopen(search, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        if error.code in (401, 403):
            raise PipelineError(
                f"The tracking server at {redact(bare)} refused the credentials (HTTP "
                f"{error.code}): check {USERNAME_VARIABLE}/{PASSWORD_VARIABLE}."
            ) from None
    except (urllib.error.URLError, OSError, ValueError):
        pass  # /health answered: the step's own requests will say what is wrong.


def tracking_uri_without_credentials(ctx: Any, param: Any, value: Any) -> Any:
    """Click callback of `--mlflow-tracking-uri`: move a `user:password@` out of the URI.

    It runs in the run's own process while the command line is read, before Metaflow
    stores the parameter: the stored value (what cards, logs and artifacts show) holds
    no credentials. They go to MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD,
    where MLflow reads them and every local task inherits them; remote tasks (Batch,
    Kubernetes, the schedulers) need those variables in their own environment.
    """
    if not isinstance(value, str):
        return value  # a deploy-time default: converted when the schedule is created
    try:
        clean_tracking_environment()
        return credentials_to_environment(value)
    except CredentialsError as error:
        raise PipelineError(str(error)) from None


@user_step_decorator
def mlflow(step_name, flow, inputs=None):
    """Point MLflow at the run's tracking URI before the step imports it.

    The URI goes into the environment, so MLflow is configured without this decorator
    importing it: steps that never log pay nothing.
    """
    check_tracking_server(flow.mlflow_tracking_uri)
    # A run stored before credentials were kept out of URIs may still hold some.
    uri = credentials_to_environment(flow.mlflow_tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = uri
    if "mlflow" in sys.modules:
        sys.modules["mlflow"].set_tracking_uri(uri)
    yield


@user_step_decorator
def exit_quickly(step_name, flow, inputs=None):
    """After the step, let the task process exit without walking every object it made.

    A task ends right after its step, and Python's final garbage collections walk every
    object the imports made (Evidently plus MLflow: ~1.5-3 s here, longer than most
    steps' work). Frozen objects are skipped; reference counting still frees whatever
    the rest of the task (storing the artifacts) lets go of.
    """
    yield
    import gc

    gc.freeze()


def dataset_seed(is_production: bool) -> int:
    """A fixed shuffle seed in development (repeatable runs), a fresh one in production."""
    return random.SystemRandom().randrange(2**31) if is_production else DEVELOPMENT_SEED


def development_seed(is_production: bool, offset: int = 0) -> int | None:
    """`DEVELOPMENT_SEED + offset` in development (repeatable runs), None in production.

    None lets each library seed itself freshly, so production runs differ.
    """
    return None if is_production else DEVELOPMENT_SEED + offset


@user_step_decorator
def dataset(step_name, flow, inputs=None):
    """Load the configured dataset into `self.data` (a pandas DataFrame).

    Extraneous values become NaN, rows without a target are dropped, and rows are
    shuffled. A missing file or column stops the run with a message saying what to fix.
    """
    flow.data = load_dataset(flow.dataset, flow.schema, dataset_seed(current.is_production))
    yield


# The project's own backends, by the names configs and `--backend` use. They are
# import paths, not imports: `common` stays free of deployment code, and any other
# `module.Class` a user names is imported the same way.
BACKENDS = {
    "backend.Local": "backends.local.Local",
    "backend.Sagemaker": "backends.sagemaker.Sagemaker",
}


def resolve_backend_class(path: str) -> type:
    """The backend class named `path`: a name from `BACKENDS` or any `module.Class`."""
    import difflib

    target = BACKENDS.get(path, path)
    module_name, _, class_name = target.rpartition(".")
    choices = ", ".join(BACKENDS)
    if not module_name:
        raise PipelineError(
            f"Backend {path!r} must be one of {choices}, or an importable `module.Class`."
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not error.name or not (
            module_name == error.name or module_name.startswith(f"{error.name}.")
        ):
            raise  # The backend exists but one of its own imports failed.
        module = None
    backend_class = getattr(module, class_name, None)
    if isinstance(backend_class, type):
        return backend_class
    close = difflib.get_close_matches(path, BACKENDS, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    where = "not found" if module is None else f"has no class {class_name!r}"
    raise PipelineError(
        f"Unknown backend {path!r} (module {module_name!r} {where}).{hint} Valid backends: "
        f"{choices}, or an importable `module.Class` of your own. Set `backend.module` in "
        "the config or pass `--backend`."
    )


def build_backend(path: str, settings: dict[str, Any]) -> Any:
    """Instantiate the backend `path` with the config's `backend` settings.

    A backend refuses bad settings (an unset `${VAR}`, a malformed URI, an unknown
    key) with a ValueError; the run then stops with its message, not a traceback.
    """
    backend_class = resolve_backend_class(path)
    try:
        return backend_class(config=dict(settings))
    except ValueError as error:
        raise PipelineError(f"Backend {path}: {error}") from None


@user_step_decorator
def backend(step_name, flow, inputs=None):
    """Give the step `self.backend_impl`, an instance of the configured backend.

    The instance is removed after the step: it may hold connections or clients that
    cannot be stored, and any step can build a fresh one from the same settings.
    """
    flow.backend_impl = build_backend(flow.backend, flow.project.backend)
    yield
    _forget(flow, "backend_impl")


def _forget(flow: FlowSpec, name: str) -> None:
    if name in flow.__dict__:
        delattr(flow, name)


@user_step_decorator
def check_settings(step_name, flow, inputs=None):
    """Fail the run at its first step when a setting is wrong, whether or not it is used.

    A typo in `--backend`, or a backend setting it refuses, must not wait for the one
    step that instantiates it. Backends are cheap to build: they connect on first use.
    """
    build_backend(flow.backend, flow.project.backend)
    yield


class with_standard_steps(FlowMutator):
    """Add `@logging`, `@mlflow` and `@exit_quickly` to every step; check settings at `start`;
    refuse, before any task runs, remote `@backend` steps the backend cannot serve."""

    def mutate(self, mutable_flow) -> None:
        for name, step in mutable_flow.steps:
            step.add_decorator(logging)
            step.add_decorator(mlflow)
            step.add_decorator(exit_quickly)
            if name == "start":
                step.add_decorator(check_settings)
        check_remote_backend_steps(mutable_flow)


def check_remote_backend_steps(mutable_flow) -> None:
    """PipelineError when `@backend` steps run on other machines (`--with batch`, ...) and
    the configured backend says they could not reach its stores (a SQLite capture file)."""
    remote = remote_steps(mutable_flow.steps, backend.decorator_name)
    if not remote:
        return
    settings = dict(dict(mutable_flow.configs)["project"]["backend"])
    try:
        build_backend(settings["module"], settings).check_remote_steps(remote)
    except ValueError as error:
        raise PipelineError(str(error)) from None


def package_project_files(flow_class: type[FlowSpec]) -> type[FlowSpec]:
    """Ship what a remote task imports and reads in the flow's code package.

    Metaflow packages the flow's directory (src/pipelines) and the module that defines
    its mutators, not the rest of `common`, `backends`, `inference` or the dataset: a task on AWS
    Batch or Kubernetes, whose working directory is the extracted package, would fail
    to import them or to find the default `--dataset data/penguins.csv`. The packages
    go to the package root, where the flow file is, so they import as they do here.
    README.md goes too because `--environment uv` builds this project on the worker
    and the build refuses a pyproject.toml whose readme is missing.
    """
    sources = [(str(SOURCE_ROOT / name), name) for name in PACKAGED_CODE]
    flow_class = package_sources(sources)(flow_class)
    data = PROJECT_ROOT / "data"
    if data.is_dir():
        flow_class = package_sources((str(data), "data"), suffixes=[".csv"])(flow_class)
    readme = PROJECT_ROOT / "README.md"
    if readme.is_file():
        flow_class = package_sources((str(readme), "README.md"), suffixes=[".md"])(flow_class)
    return flow_class


@project(name=config_expr("project.project"))
@with_standard_steps
@package_project_files
class Pipeline(FlowSpec):
    """Base class of every pipeline: configuration, parameters and standard decorators."""

    project = Config(
        "project",
        help="Project configuration settings.",
        default="config/local.yml",
        parser=parse_project_configuration,
    )

    backend = Parameter(
        "backend",
        help="Backend module implementation.",
        default=project.backend["module"],
    )

    dataset = Parameter(
        "dataset",
        help="Project dataset that will be used.",
        default="data/penguins.csv",
    )

    mlflow_tracking_uri = Parameter(
        "mlflow-tracking-uri",
        help="MLflow tracking URI. Give credentials in MLFLOW_TRACKING_USERNAME and "
        "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN); a user:password in the URI "
        "is moved there and never stored.",
        default=project.mlflow_tracking_uri,
        callback=tracking_uri_without_credentials,
    )

    @property
    def settings(self) -> ProjectSettings:
        """The project configuration, typed: `self.settings.monitoring.max_rows`.

        Read settings here rather than from `self.project`, whose plain mapping is what
        Metaflow stores and `config_expr` reads. Rebuilt on each use (microseconds): a
        cached copy on the flow would be stored as an artifact of every step.
        """
        return project_settings(self.project)

    @property
    def schema(self) -> DatasetSchema:
        """The dataset's columns, from the config's `dataset` section."""
        return self.settings.dataset.schema


render_cards_once()
