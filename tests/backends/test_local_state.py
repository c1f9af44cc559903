"""The Local server's files at rest and the identity of its process
(src/backends/local_state.py), and what `LocalServer.state`/`stop` make of a recorded
process that is no longer the server. Real files, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import local_state
from backends.local_server import LocalServer
from backends.local_state import (
    append_private,
    is_recorded_process,
    private_directory,
    process_start,
    write_atomically,
)

LINUX = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """A usual umask, with which plain files and directories are world-readable."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_state_directory_is_private_and_an_older_one_is_tightened(tmp_path: Path) -> None:
    made = private_directory(tmp_path / "a" / "serving")
    assert mode(made) == 0o700
    older = tmp_path / "older"
    older.mkdir(mode=0o755)
    assert mode(private_directory(older)) == 0o700


def test_a_state_file_is_replaced_whole_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text('{"pid": 1}')
    path.chmod(0o644)
    write_atomically(path, '{"pid": 2}')
    assert path.read_text() == '{"pid": 2}' and mode(path) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["server.json"]  # no temporary left


def test_a_state_file_write_that_fails_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "server.json"
    path.write_text('{"pid": 1}')

    def crash(*_: object) -> None:
        raise OSError("killed before the rename")

    monkeypatch.setattr(local_state.os, "replace", crash)
    with pytest.raises(OSError, match="killed"):
        write_atomically(path, '{"pid": 2}')
    assert path.read_text() == '{"pid": 1}'
    assert [p.name for p in tmp_path.iterdir()] == ["server.json"]


def test_a_planted_link_at_the_state_file_is_replaced_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("not the server's")
    path = tmp_path / "server.json"
    path.symlink_to(target)
    write_atomically(path, "{}")
    assert target.read_text() == "not the server's"
    assert not path.is_symlink() and path.read_text() == "{}"


def test_log_lines_are_appended_to_a_private_file(tmp_path: Path) -> None:
    log = tmp_path / "server-3.log"
    append_private(log, "one\n")
    assert mode(log) == 0o600
    log.chmod(0o644)  # an older log
    append_private(log, "two\n")
    assert log.read_text() == "one\ntwo\n" and mode(log) == 0o600


@LINUX
def test_a_process_is_known_by_its_start_time() -> None:
    started = process_start(os.getpid())
    assert started is not None and started > 0
    assert is_recorded_process(os.getpid(), started)
    assert not is_recorded_process(os.getpid(), started + 1)
    assert process_start(2**22 + 12345) is None  # above Linux's largest pid


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen]:
    """A process that is not a server, in a group of its own, as one that got the id of a
    server that has ended would be."""
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def record(state_dir: Path, pid: int, started: int | None) -> None:
    state = {
        "pid": pid, "model_uri": "models:/penguins/3", "model_version": "3",
        "url": "http://127.0.0.1:9/invocations", "log": str(state_dir / "server-3.log"),
        "started_at": time.time() - 3600,
    }  # fmt: skip
    if started is not None:
        state["process_start"] = started
    state_dir.mkdir(exist_ok=True)
    (state_dir / "server.json").write_text(json.dumps(state))


@LINUX
@pytest.mark.parametrize("recorded", ["another start time", "no start time (older record)"])
def test_stop_never_signals_a_process_that_is_not_the_recorded_server(
    tmp_path: Path, bystander: subprocess.Popen, recorded: str
) -> None:
    started = process_start(bystander.pid)
    assert started is not None
    record(tmp_path, bystander.pid, started - 1 if recorded.startswith("another") else None)
    server = LocalServer(tmp_path)
    assert server.state() is None
    assert server.stop() is None
    time.sleep(0.2)
    assert bystander.poll() is None  # still running: never signalled
    assert not (tmp_path / "server.json").exists()  # the stale record is gone


@LINUX
def test_stop_ends_the_process_it_recorded(tmp_path: Path, bystander: subprocess.Popen) -> None:
    record(tmp_path, bystander.pid, process_start(bystander.pid))
    stopped = LocalServer(tmp_path).stop(timeout=5)
    assert stopped is not None and stopped.pid == bystander.pid
    bystander.wait(timeout=10)  # reaped by stop() already: its status is gone with it
    assert not Path(f"/proc/{bystander.pid}").exists()
