"""Background servers started in a session of their own, and stopped with everything
they started.

A server that starts helpers of its own (`mlflow server`: uvicorn workers, and job
consumers that outlive it when only its own pid is ended) is started as the leader of
a new session and process group; stopping it signals the whole group. A pid is
recorded with its start time, so that a pid reused by another program after a reboot
or a crash is never signalled.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from common.process_status import START_TIME, end_group, group_members, stat_fields


@dataclass(frozen=True)
class Process:
    """A started server: its pid (which is also its process group's id), the pid's start
    time (clock ticks after boot, from /proc) and its log file."""

    name: str
    pid: int
    started: int
    log: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot), or None when no such process runs
    (a zombie, which has exited, counts as not running)."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[START_TIME])


def alive(process: Process) -> bool:
    """Whether the recorded process still runs (the same one: same pid, same start)."""
    return start_time(process.pid) == process.started


def start(
    name: str, command: Sequence[str], log: Path, environment: Mapping[str, str], cwd: Path
) -> Process:
    """`command` in the background, in a new session, its output appended to `log`."""
    with open(log, "ab") as output:
        child = subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(environment),
            cwd=cwd,
            start_new_session=True,
        )
    started = start_time(child.pid)
    if started is None:
        raise RuntimeError(f"{name} exited at once: see {log}")
    return Process(name, child.pid, started, str(log))


def wait_for_url(process: Process, url: str, timeout: float) -> None:
    """Wait until `url` answers (any HTTP status); fail when the process exits first or
    the time is up, pointing at its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # it answers: an error status (401 without credentials) is an answer
        except OSError:
            pass
        if not alive(process):
            raise RuntimeError(f"{process.name} stopped while starting: see {process.log}")
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{process.name} did not answer at {url} within {timeout:.0f} s: see {process.log}"
            )
        time.sleep(0.25)


def stop(process: Process, timeout: float = 30) -> None:
    """End the process's whole group: SIGTERM, then SIGKILL to whatever is left after
    `timeout` seconds. A process that is gone already is fine."""
    running = start_time(process.pid)
    if running is not None and running != process.started:
        return  # the pid is another program's now, so is its group: ours has ended
    # Leader gone or not, members left in its group are ours: Linux gives no new process
    # a pid that is still some group's id.
    if not end_group(process.pid, grace=timeout, kill_grace=10):
        left = group_members(process.pid)
        raise RuntimeError(f"{process.name}: processes {left} survived SIGKILL")
