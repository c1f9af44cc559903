"""The Local server's files at rest, and the identity of the process they record.

- The state directory is 0700 and what `LocalServer` writes in it 0600: `server.json`
  and `prepared.json` name the server and its models, its logs hold what requests
  said. A directory or file made by an earlier version is tightened when the server
  starts or is prepared.
- `server.json` and `prepared.json` are replaced whole (`write_atomically`): a reader,
  or a deployment killed halfway, finds the old file or the new one, never a part.
- A server's output goes through a pipe to `backends.log_rotation`, which starts a
  new file past a size and keeps a few older ones (`server-<version>.log.1`, ...).
- A recorded process id is only the server's if the process still started when the
  server did (`process_start`, from Linux's /proc): `stop` never signals a process
  that happens to have the same id later.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from common.process_status import START_TIME, stat_fields

ROTATOR = "backends.log_rotation"
# A server's log: past this size a new file is started, and this many older ones kept.
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3
# What a process recorded by a version without start times runs, when it is the server.
SERVER_COMMANDS = (b"backends.local_launcher", b"mlflow")


def private_directory(path: Path) -> Path:
    """`path` as a directory only its owner can enter (created, or tightened if ours)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(path, 0o700)
    return path


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step, as a file only its owner can read.

    Written to a new temporary file of the same directory (created exclusively, 0600),
    flushed to disk, then renamed over `path`: a reader sees the old or the new file.
    """
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    with contextlib.suppress(OSError):  # the rename itself, on file systems that allow it
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def append_private(path: Path, text: str) -> None:
    """Append `text` to the file at `path`, created (or tightened) readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a", encoding="utf-8") as output:
        _tighten_open(output.fileno())
        output.write(text)


@contextlib.contextmanager
def rotating_log(
    path: Path, environment: Mapping[str, str], max_bytes: int = LOG_MAX_BYTES
) -> Iterator[tuple[int, subprocess.Popen]]:
    """A descriptor to give a server as its output, and the process that writes what
    comes through it to `path`: a new file past `max_bytes`, LOG_BACKUPS older ones kept.

    The writer (`backends.log_rotation`, run with `environment`) ends once every process
    holding the pipe (the server and its workers) has closed it.
    """
    read_end, write_end = os.pipe()
    try:
        command = [
            sys.executable, "-m", ROTATOR, str(path),
            "--max-bytes", str(max_bytes), "--backups", str(LOG_BACKUPS),
        ]  # fmt: skip
        writer = subprocess.Popen(
            command,
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(environment),
            start_new_session=True,  # outlives a stop() of the server's group, to drain it
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    try:
        yield write_end, writer
    finally:
        os.close(write_end)


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22);
    None where there is no /proc or no such process."""
    fields = stat_fields(pid)
    return None if fields is None else int(fields[START_TIME])


def is_recorded_process(pid: int, started: int | None) -> bool:
    """Whether the running process `pid` is the one recorded with start time `started`.

    A record without a start time (an earlier version's) is trusted if the process
    runs the server; without /proc, as before, any process of that id is.
    """
    if not Path("/proc/self/stat").exists():
        return True
    if started is not None:
        return process_start(pid) == started
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(name in command for name in SERVER_COMMANDS)


def _tighten(path: Path, mode: int) -> None:
    """Take group and other permissions off `path` if it has some and is ours."""
    with contextlib.suppress(OSError):
        found = path.stat()
        if found.st_uid == os.getuid() and stat.S_IMODE(found.st_mode) & 0o077:
            os.chmod(path, mode)


def _tighten_open(descriptor: int) -> None:
    with contextlib.suppress(OSError):
        found = os.fstat(descriptor)
        if found.st_uid == os.getuid() and stat.S_IMODE(found.st_mode) & 0o077:
            os.fchmod(descriptor, 0o600)
