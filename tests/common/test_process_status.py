"""Tests for common.process_status: /proc/<pid>/stat read past a command name that
holds spaces and parentheses."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from common.process_status import (
    START_TIME,
    end_group,
    group_members,
    group_running,
    stat_fields,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="no /proc here")


def test_fields_of_a_process_whose_name_holds_spaces_and_parentheses() -> None:
    # The child renames itself (its /proc comm) to a name that splits badly, then waits.
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; open('/proc/self/comm', 'w').write('a) b (c'); print(flush=True); "
         "sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        child.stdout.readline()
        fields = stat_fields(child.pid)
        assert fields is not None
        assert fields[0] in {"R", "S"}  # the state, right after the name
        assert int(fields[1]) == os.getpid()  # the parent
        assert int(fields[START_TIME]) >= int(stat_fields(os.getpid())[START_TIME])
    finally:
        child.stdin.close()
        child.wait(timeout=30)


def test_no_such_process_has_no_fields() -> None:
    assert stat_fields(2**22 + 1) is None  # above Linux's pid_max ceiling


def test_a_group_that_exited_but_waits_to_be_reaped_has_stopped() -> None:
    running = subprocess.Popen(["sleep", "30"], start_new_session=True)
    exited = subprocess.Popen(["true"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while stat_fields(exited.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        # Not reaped (its parent, this process, has not waited for it), yet stopped.
        assert stat_fields(exited.pid)[0] == "Z"
        assert group_members(exited.pid) == []
        assert group_members(running.pid) == [running.pid] and group_running(running.pid)
    finally:
        running.kill()
        running.wait()
        exited.wait()
    assert not group_running(running.pid)


def test_ending_a_group_kills_what_ignores_sigterm() -> None:
    stubborn = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
         "print(flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    stubborn.stdout.readline()  # SIGTERM is ignored from here on
    # Only SIGKILL ends it. (Its exit status may already be collected by end_group,
    # which reaps the group's leader when it is this process's child.)
    assert end_group(stubborn.pid, grace=0.5)
    assert not group_running(stubborn.pid)
    stubborn.wait(timeout=10)
