"""team_stack.processes: a server's whole process group is stopped, stubborn members
too, and a recorded pid is only trusted with its start time."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from team_stack import processes

# A parent with a child of its own, both in the parent's group; the child ignores SIGTERM,
# as a stuck job consumer would.
STUBBORN_FAMILY = (
    "import signal, subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)'])\n"
    "print(child.pid, flush=True)\n"
    "time.sleep(300)\n"
)


def test_stop_ends_the_whole_group_even_a_child_that_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "family.log"
    family = processes.start(
        "family", [sys.executable, "-c", STUBBORN_FAMILY], log, dict(os.environ), tmp_path
    )
    deadline = time.monotonic() + 60
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(log.read_text().split()[0])
    assert set(processes.group_members(family.pid)) == {family.pid, child}
    processes.stop(family, timeout=1)
    assert processes.group_members(family.pid) == []
    assert processes.start_time(child) is None
    processes.stop(family, timeout=1)  # stopped already: nothing to do


def test_a_recorded_pid_with_another_start_time_is_not_alive() -> None:
    me = processes.Process("me", os.getpid(), processes.start_time(os.getpid()) or 0, "")
    assert processes.alive(me)
    assert not processes.alive(processes.Process("reused", me.pid, me.started + 1, ""))


def test_stop_leaves_alone_a_group_whose_pid_another_program_has_now(tmp_path: Path) -> None:
    other = processes.start(
        "other", [sys.executable, "-c", "import time; time.sleep(300)"], tmp_path / "o.log",
        dict(os.environ), tmp_path,
    )  # fmt: skip
    try:
        recorded = processes.Process("ours, long gone", other.pid, other.started - 1, "")
        processes.stop(recorded, timeout=1)
        assert processes.alive(other)
    finally:
        processes.stop(other, timeout=5)
    assert not processes.alive(other)
