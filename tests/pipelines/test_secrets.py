"""Secrets never leave the process that needs them (issue 21), end to end.

A real `mlflow server` on 127.0.0.1 (SQLite store, artifacts it serves) is the tracking
server; every pipeline reaches it through a tracking URI carrying a user name and a
password, given three ways: `--mlflow-tracking-uri` (training), the YAML's
`mlflow_tracking_uri` (deployment) and MLFLOW_TRACKING_URI (every run). The
environment also holds an AWS secret key. Training, deployment (a real Local model
server), traffic, labels and monitoring run as a user runs them (`python <flow> ...`),
with a Metaflow datastore of their own. Then every place a secret could end up is
read: each run's output (the task logs), every file written (Metaflow artifacts, task
logs and cards, the MLflow store and its artifacts with the model files, the model
server's state, logs and captures), MLflow's records through its API, and the running
model server's processes (/proc/<pid>/environ and cmdline). None may hold either secret.

The tracking server sends nothing back for credentials (it has no authentication), so
the runs succeeding shows the URI without them still reaches it; the unit tests in
tests/common/test_pipeline.py show the credentials are sent.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.flows import TRAINING_PARAMETERS, run_cli
from support.paths import DEPLOYMENT_FLOW, MONITORING_FLOW, TRAFFIC_FLOW, TRAINING_FLOW
from support.places import Place
from support.ports import free_port
from support.state import isolated_environment

from backends.local_server import LocalServer

pytestmark = pytest.mark.e2e

PASSWORD = f"pw-{uuid.uuid4().hex}"
AWS_SECRET = f"aws-{uuid.uuid4().hex}"
SECRETS = {"tracking password": PASSWORD, "AWS secret key": AWS_SECRET}
USER = "pipeline-user"
SERVER_START_TIMEOUT = 180  # seconds; `mlflow server` imports for ~20 s on a busy machine


@dataclass
class TrackingServer:
    url: str  # without credentials
    directory: Path
    pid: int

    @property
    def url_with_credentials(self) -> str:
        return self.url.replace("http://", f"http://{USER}:{PASSWORD}@", 1)


@dataclass
class Exposure:
    """Everything the runs left behind, gathered while the model server still ran."""

    tracking: TrackingServer
    root: Path  # every file the runs and servers wrote is under it
    outputs: dict[str, str] = field(default_factory=dict)  # run -> stdout and stderr
    model_server: dict[int, dict[str, bytes]] = field(default_factory=dict)  # pid -> /proc
    mlflow_records: str = ""


def stop_group(pid: int, grace: float = 15.0) -> None:
    """SIGTERM the process group `pid` leads, SIGKILL it after `grace`; wait until gone."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrackingServer]:
    """`mlflow server` on a free port of 127.0.0.1, stopped (with its workers) after."""
    directory = tmp_path_factory.mktemp("secrets") / "tracking"
    directory.mkdir()
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{directory / 'mlflow.db'}",
        "--artifacts-destination", str(directory / "artifacts"), "--workers", "1",
    ]  # fmt: skip
    with open(directory / "server.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = TrackingServer(f"http://127.0.0.1:{port}", directory, process.pid)
    try:
        wait_until_healthy(server, process)
        yield server
    finally:
        stop_group(process.pid)


def wait_until_healthy(server: TrackingServer, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, (server.directory / "server.log").read_text()[-3000:]
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/health", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer within {SERVER_START_TIMEOUT} s")


@pytest.fixture(scope="module")
def exposure(
    tracking_server: TrackingServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Exposure]:
    """Run every pipeline against the tracking server with the secrets planted; gather
    what they left; stop the model server."""
    root = tracking_server.directory.parent
    place = Place(root / "place")
    configs = tmp_path_factory.mktemp("secrets-configs")  # the user's input: not scanned
    plain, with_uri = write_configs(place, configs, tracking_server)
    environment = {
        **isolated_environment(root, user="secrets-test"),
        "MLFLOW_TRACKING_URI": tracking_server.url_with_credentials,
        "AWS_ACCESS_KEY_ID": "AKIATESTTESTTEST",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
    }
    exposure = Exposure(tracking_server, root)
    try:
        run_pipelines(exposure, environment, plain, with_uri)
        state = LocalServer(place.state_dir).state()
        assert state is not None, f"no model server runs: {server_files(place)}"
        exposure.model_server = process_group_records(state.pid)
        exposure.mlflow_records = mlflow_records(tracking_server.url)
        yield exposure
    finally:
        stop_model_server(place)


def stop_model_server(place: Place) -> None:
    """Stop the place's model server and its workers, even one whose recorded state
    the backend no longer takes for its own (a test must leave no server behind)."""
    recorded = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = int(json.loads((place.state_dir / "server.json").read_text())["pid"])
    place.backend().stop()  # which forgets the record
    with contextlib.suppress(OSError):
        if recorded and b"local_launcher" in Path(f"/proc/{recorded}/cmdline").read_bytes():
            stop_group(recorded)


def server_files(place: Place) -> str:
    """The model server's state and the end of its logs, for a failure's message."""
    return "\n".join(
        f"{path.name}:\n{path.read_text(errors='replace')[-3000:]}"
        for path in sorted(place.state_dir.glob("*"))
        if path.is_file() and path.suffix in (".json", ".log")
    )


def write_configs(place: Place, directory: Path, server: TrackingServer) -> tuple[Path, Path]:
    """config/local.yml for `place`, as is and with the tracking URI (credentials in it)."""
    config = yaml.safe_load(place.write_config().read_text())
    place.config.unlink()
    plain, with_uri = directory / "project.yml", directory / "project-with-uri.yml"
    plain.write_text(yaml.safe_dump(config, sort_keys=False))
    config["mlflow_tracking_uri"] = server.url_with_credentials
    with_uri.write_text(yaml.safe_dump(config, sort_keys=False))
    return plain, with_uri


def run_pipelines(
    exposure: Exposure, environment: dict[str, str], plain: Path, with_uri: Path
) -> None:
    training = [
        f"--{name.replace('_', '-')}={value}" for name, value in TRAINING_PARAMETERS.items()
    ]
    uri = ["--mlflow-tracking-uri", exposure.tracking.url_with_credentials]
    runs = {
        "training": (TRAINING_FLOW, plain, [*uri, *training]),
        "deployment": (DEPLOYMENT_FLOW, with_uri, []),
        "traffic": (TRAFFIC_FLOW, plain, ["--mode", "traffic", "--samples", "60"]),
        "labels": (TRAFFIC_FLOW, plain, ["--mode", "labels"]),
        "monitoring": (MONITORING_FLOW, plain, []),
    }
    for name, (flow, config, arguments) in runs.items():
        process = run_cli(
            flow, "--config", "project", str(config), "run", *arguments, env=environment
        )
        exposure.outputs[name] = f"{process.stdout}\n{process.stderr}"
        assert process.returncode == 0, f"the {name} run failed:\n{exposure.outputs[name][-5000:]}"


def process_group_records(leader: int) -> dict[int, dict[str, bytes]]:
    """/proc/<pid>/environ and cmdline of every process of the group `leader` leads."""
    records = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[2]) == leader:
                records[int(stat.parent.name)] = {
                    "environ": (stat.parent / "environ").read_bytes(),
                    "cmdline": (stat.parent / "cmdline").read_bytes(),
                }
    return records


def mlflow_records(url: str) -> str:
    """Every experiment, run (params, tags, metric names) and registered model version
    (tags, source, description) the tracking server holds, as JSON text."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    records: list[Any] = []
    for experiment in client.search_experiments():
        records.append([experiment.name, experiment.artifact_location, experiment.tags])
        for run in client.search_runs([experiment.experiment_id]):
            data = run.data
            records.append([run.info.run_name, run.info.artifact_uri, data.params, data.tags])
            records.append(sorted(data.metrics))
    for model in client.search_registered_models():
        records.append([model.name, model.description, model.tags, model.aliases])
        for version in client.search_model_versions(f"name = '{model.name}'"):
            records.append([version.source, version.description, version.tags])
    return json.dumps(records, default=str)


# --- what a secret looks like wherever it is stored --------------------------------------


def shapes(secret: str) -> list[bytes]:
    """`secret` as text, and as base64 at each of the three alignments it can have
    inside a longer encoded text (cards embed their data so)."""
    raw = secret.encode()
    found = [raw]
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + raw + b"\0\0")
        # The characters that only `raw`'s bits make up.
        found.append(encoded[-(-shift * 8 // 6) : (shift + len(raw)) * 8 // 6])
    return found


def readable_forms(path: Path) -> Iterator[bytes]:
    """A file's bytes, decompressed too when gzip (Metaflow's artifacts) or zip (model
    archives)."""
    data = path.read_bytes()
    yield data
    if data[:2] == b"\x1f\x8b":
        with contextlib.suppress(OSError, EOFError):
            yield gzip.decompress(data)
    if zipfile.is_zipfile(path):
        with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                yield archive.read(member)


def secrets_in(data: bytes) -> list[str]:
    return [name for name, secret in SECRETS.items() if any(s in data for s in shapes(secret))]


def files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path


# --- the tests ------------------------------------------------------------------------------


def test_the_shapes_of_a_secret_are_found_where_it_is_encoded() -> None:
    text = f'{{"uri": "http://u:{PASSWORD}@h"}}'.encode()
    for prefix in (b"", b"a", b"ab"):
        assert secrets_in(base64.b64encode(prefix + text)) == ["tracking password"]
    assert secrets_in(gzip.decompress(gzip.compress(text))) == ["tracking password"]
    assert secrets_in(b"nothing here") == []


def test_no_run_output_or_task_log_holds_a_secret(exposure: Exposure) -> None:
    leaks = {name: secrets_in(output.encode()) for name, output in exposure.outputs.items()}
    assert not any(leaks.values()), leaks
    # The training log names the tracking server, without its credentials.
    assert f"MLflow tracking server: {exposure.tracking.url}" in exposure.outputs["training"]


def test_no_stored_file_holds_a_secret(exposure: Exposure) -> None:
    """Metaflow's artifacts, task logs and cards; the MLflow store, its artifacts and the
    model files; the model server's state, logs and capture database."""
    leaks, scanned, stored_uri = {}, 0, False
    bare = exposure.tracking.url.encode()
    for path in files_under(exposure.root):
        scanned += 1
        for data in readable_forms(path):
            if found := secrets_in(data):
                leaks[str(path.relative_to(exposure.root))] = found
            stored_uri = stored_uri or ("metaflow" in path.parts and bare in data)
    assert not leaks, leaks
    # What was scanned is what the runs stored: the parameter, without credentials.
    assert scanned > 100 and stored_uri
    for kind in ("metaflow", "tracking/artifacts", "place/serving"):
        assert any((exposure.root / kind).rglob("*")), f"nothing under {kind}"


def test_no_mlflow_record_holds_a_secret(exposure: Exposure) -> None:
    assert secrets_in(exposure.mlflow_records.encode()) == []
    assert '"penguins"' in exposure.mlflow_records  # the registered model was read


def test_the_model_server_holds_no_secret(exposure: Exposure) -> None:
    assert exposure.model_server, "no process of the model server found"
    for pid, records in exposure.model_server.items():
        for name, data in records.items():
            assert secrets_in(data) == [], f"/proc/{pid}/{name}"
        variables = {entry.split(b"=", 1)[0].decode() for entry in records["environ"].split(b"\0")}
        assert "SERVING_MODEL_VERSION" in variables  # the server's own environment
        assert not {"AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"} & variables
