"""What Linux says of running processes (/proc), and ending a process group: for
telling a recorded server from another that has since been given its pid, and for
stopping a server with every process it started."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

# Index of the start time (clock ticks after boot; /proc/<pid>/stat field 22) in the
# fields `stat_fields` returns, which begin at field 3 (the state).
START_TIME = 19
POLL_SECONDS = 0.05


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the third on (state, ppid, pgrp, ...), or
    None where there is no /proc or no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    return text[text.rindex(")") + 2 :].split()


def group_members(pgid: int) -> list[int]:
    """The pids of every live process (zombies aside) whose process group is `pgid`.

    An exited process that waits to be reaped (a server whose parent is the machine's
    init process, which reaps it in its own time) holds no socket and answers nothing:
    it has stopped."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def group_running(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (without /proc: any process of it)."""
    reap(pgid)  # the leader, when this process started it
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc/self/stat").exists() or bool(group_members(pgid))


def end_group(pgid: int, grace: float, kill_grace: float = 5.0) -> bool:
    """SIGTERM process group `pgid`, SIGKILL what is left of it after `grace` seconds;
    whether no process of it runs `kill_grace` seconds after that (exited ones may
    await reaping). A group that is gone already is fine."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, kill_grace)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + wait
        while group_running(pgid):
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        else:
            return True
    return False


def reap(pid: int) -> None:
    """Collect the exit status of `pid` when it is this process's child, so that it
    does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
