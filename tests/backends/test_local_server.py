"""Tests for backends.local_server: replacing the version a Local server serves, under
load, refuses and loses no request; stopping ends the server and its workers.

Real servers on a free port of 127.0.0.1 (a place of this module's own), the session's
tiny registered models (support/serving.py), eight client threads sending one-row
requests on new connections throughout (support/load.py). Every answered prediction
must be in the capture database: an answer is only given once it is stored.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.load import Clients
from support.places import Place
from support.serving import ServingModels

from backends.base import BackendError, ShadowModel
from backends.local import Local
from backends.local_server import SHADOW_PATH_VARIABLE, SHADOW_VERSION_VARIABLE, LocalServer

# Answers wanted in each phase: enough that requests were in flight at each change.
ANSWERS_PER_PHASE = 40
# Between one client's requests: 8 clients still keep requests in flight at every moment,
# and leave the new server's workers (loading the model beside them) a share of 2 cores.
PAUSE = 0.1


@pytest.fixture(scope="module")
def place(serving_models: ServingModels, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    place = Place(tmp_path_factory.mktemp("swap"), workers=2, max_batch_size=50)
    try:
        yield place
    finally:
        place.backend().stop()


def serving(backend: Local, models: ServingModels, version: str) -> None:
    """Make `version` (alone) serve at `backend`, however the module's tests ran."""
    if backend.deployed_version() != version or backend.deployed_shadow_version() is not None:
        backend.deploy(models.uri(version), version)


def server_environment(pid: int) -> dict[str, str]:
    """The environment the server process runs with (its workers inherit it)."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def downloads(place: Place) -> list[Path]:
    return sorted((place.state_dir / "models").iterdir())


def captured_versions(place: Place, ids: list[str]) -> dict[str, str]:
    """Model version by id, of the captured predictions among `ids`."""
    return {id_: row["model_version"] for id_, row in place.captured_rows(ids).items()}


def assert_nothing_lost(clients: Clients, place: Place) -> None:
    assert not clients.failures, f"failed requests {dict(clients.failures)}: {clients.examples}"
    answered = clients.ids()
    assert len(answered) == len(set(answered))
    missing = set(answered) - set(place.captured_rows(answered))
    assert not missing, f"{len(missing)} of {len(answered)} answered predictions not captured"


@pytest.mark.e2e
def test_versions_and_shadows_swap_under_load_without_a_failed_request(
    place: Place, serving_models: ServingModels
) -> None:
    first, second = serving_models.good[:2]
    backend = place.backend()
    serving(backend, serving_models, first)
    first_pid = LocalServer(place.state_dir).state().pid
    shadow = ShadowModel(serving_models.uri(first), first)

    with Clients(place.url, pause=PAUSE) as clients:
        clients.wait_for_answers(0, ANSWERS_PER_PHASE)
        clients.next_phase()  # requests sent while the shadow deployment runs
        assert backend.deploy(serving_models.uri(second), second, shadow=shadow) is True
        with_shadow = clients.next_phase()
        clients.wait_for_answers(with_shadow, ANSWERS_PER_PHASE)

        # The same version with the same shadow: nothing restarts.
        state = LocalServer(place.state_dir).state()
        assert backend.deploy(serving_models.uri(second), second, shadow=shadow) is False
        assert LocalServer(place.state_dir).state().pid == state.pid != first_pid
        assert (backend.deployed_version(), backend.deployed_shadow_version()) == (second, first)
        assert state.shadow_uri == serving_models.uri(first)
        environment = server_environment(state.pid)
        shadow_path = Path(environment[SHADOW_PATH_VARIABLE])
        assert environment[SHADOW_VERSION_VARIABLE] == first
        assert (shadow_path / "MLmodel").is_file()
        # Both models are downloaded, each in its own directory; nothing else is kept.
        assert state.model_paths == (state.model_paths[0], str(shadow_path))
        held = {
            next(d for d in downloads(place) if Path(p).resolve().is_relative_to(d.resolve()))
            for p in state.model_paths
        }
        assert held == set(downloads(place)) and len(held) == 2
        status = subprocess.run(
            [sys.executable, "-m", "backends.local", "status"],
            env={**os.environ, "SERVING_STATE_DIR": str(place.state_dir)},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert f"Model version {second}, shadow version {first} at {place.url}" in status.stdout

        # Back to the first version, without a shadow: the rollback is a swap too.
        clients.next_phase()
        assert backend.deploy(serving_models.uri(first), first) is True
        rolled_back = clients.next_phase()
        clients.wait_for_answers(rolled_back, ANSWERS_PER_PHASE)

    assert_nothing_lost(clients, place)
    versions = captured_versions(place, clients.ids())
    # Requests sent after a deployment returned were answered by the new version only:
    # the old server no longer accepted anything. Those sent during one, by either.
    assert {versions[id_] for id_ in clients.ids(with_shadow)} == {second}
    assert {versions[id_] for id_ in clients.ids(rolled_back)} == {first}
    state = LocalServer(place.state_dir).state()
    assert (state.model_version, state.shadow_version, state.shadow_uri) == (first, None, None)
    assert SHADOW_PATH_VARIABLE not in server_environment(state.pid)
    assert backend.deployed_shadow_version() is None
    assert len(downloads(place)) == 1


def broken_copy(models: ServingModels, version: str, directory: Path) -> Path:
    """A copy of a registered model whose MLmodel names a loader that does not exist."""
    import mlflow
    import yaml

    model = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=models.uri(version), dst_path=str(directory / "broken-model")
        )
    )
    description = yaml.safe_load((model / "MLmodel").read_text())
    description["flavors"]["python_function"]["loader_module"] = "no_such_loader_module"
    (model / "MLmodel").write_text(yaml.safe_dump(description))
    return model


@pytest.mark.e2e
def test_a_version_that_cannot_start_leaves_the_old_one_answering(
    place: Place, serving_models: ServingModels, tmp_path: Path
) -> None:
    first, second = serving_models.good[:2]
    backend = place.backend()
    serving(backend, serving_models, first)
    before = LocalServer(place.state_dir).state()
    broken = broken_copy(serving_models, first, tmp_path)

    with Clients(place.url, pause=PAUSE) as clients:
        clients.wait_for_answers(0, ANSWERS_PER_PHASE)
        with pytest.raises(BackendError, match=r"exited with code \d+ before serving"):
            backend.deploy(str(broken), "77")
        failed = clients.next_phase()
        with pytest.raises(
            BackendError, match=r"Could not download the shadow model models:/no-such-model/1"
        ):
            backend.deploy(
                serving_models.uri(second),
                second,
                shadow=ShadowModel("models:/no-such-model/1", "1"),
            )
        clients.wait_for_answers(failed, ANSWERS_PER_PHASE)

    assert_nothing_lost(clients, place)
    assert set(captured_versions(place, clients.ids()).values()) == {first}
    after = LocalServer(place.state_dir).state()
    assert (after.pid, after.model_version, after.handoff) == (before.pid, first, before.handoff)
    (kept,) = downloads(place)  # the failed downloads were removed
    assert Path(before.model_paths[0]).resolve().is_relative_to(kept.resolve())


def running_in_group(group: int) -> list[int]:
    """The pids of the processes of `group` that have not exited (Linux's /proc)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]
    running = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        state, _, process_group = text[text.rindex(")") + 2 :].split()[:3]
        if int(process_group) == group and state != "Z":
            running.append(int(stat.parent.name))
    return running


@pytest.mark.e2e
def test_stop_ends_the_server_and_its_workers(place: Place, serving_models: ServingModels) -> None:
    backend = place.backend()
    serving(backend, serving_models, serving_models.good[0])
    state = LocalServer(place.state_dir).state()
    assert Path(state.handoff).exists()

    backend.stop()

    # No process of the server's group runs: gone, or exited and awaiting its reaping
    # by init (where that is slow, `stop` does not wait for it).
    assert running_in_group(state.pid) == []
    assert not Path(state.handoff).exists()
    assert backend.deployed_version() is None
    assert LocalServer(place.state_dir).state() is None
    shutil.rmtree(place.state_dir / "models", ignore_errors=True)
