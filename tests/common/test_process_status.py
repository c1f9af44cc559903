"""Tests for common.process_status: /proc/<pid>/stat read past a command name that
holds spaces and parentheses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.process_status import START_TIME, stat_fields

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
