"""Copy a server's output into its log file, starting a new file past a size.

    python -m backends.log_rotation PATH --max-bytes N --backups K   < server output

`backends.local_state.rotating_log` runs this with the read end of the pipe the model
server writes its output to. Past N bytes the log becomes PATH.1 (PATH.1 becomes
PATH.2, ... up to PATH.K, the oldest dropped) and a new PATH is started, at a line's
end. Files are created readable by their owner only. It ends when the server and all
its workers have closed the pipe. Only the standard library: it starts in ~20 ms.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

READ_BYTES = 64 * 1024


def rotate(path: Path, backups: int) -> None:
    """PATH -> PATH.1 -> ... -> PATH.<backups>; the oldest is dropped."""
    for index in range(backups, 0, -1):
        older = path.with_name(f"{path.name}.{index}")
        newer = path if index == 1 else path.with_name(f"{path.name}.{index - 1}")
        if newer.exists():
            os.replace(newer, older)
    if backups == 0:
        path.unlink(missing_ok=True)


def open_log(path: Path) -> int:
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


def copy_rotating(source: int, path: Path, max_bytes: int, backups: int) -> None:
    """Copy `source` into `path` until its end, rotating past `max_bytes`."""
    output = open_log(path)
    try:
        while chunk := os.read(source, READ_BYTES):
            while chunk:
                size = os.fstat(output).st_size  # others append too (the deployment's notes)
                cut = _fitting(chunk, max_bytes - size, empty=size == 0)
                os.write(output, chunk[:cut])
                chunk = chunk[cut:]
                if chunk:
                    os.close(output)
                    rotate(path, backups)
                    output = open_log(path)
    finally:
        os.close(output)


def _fitting(chunk: bytes, room: int, empty: bool) -> int:
    """How much of `chunk` goes in a file with `room` bytes left: all if it fits, else
    up to its last whole line that fits; a line longer than a file fills an empty one."""
    if len(chunk) <= room:
        return len(chunk)
    cut = chunk.rfind(b"\n", 0, max(room, 0)) + 1
    if cut == 0 and empty:
        newline = chunk.find(b"\n", room)
        cut = len(chunk) if newline < 0 else newline + 1
    return cut


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m backends.log_rotation")
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--backups", type=int, required=True)
    options = parser.parse_args(argv)
    copy_rotating(sys.stdin.fileno(), options.path, options.max_bytes, options.backups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
