"""The server's log, written through `backends.log_rotation` (src/backends/log_rotation.py)
and `local_state.rotating_log`: whole lines, a new file past the size, older files kept,
readable by their owner only. Real files and a real pipe."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from backends.local_state import rotating_log
from backends.log_rotation import copy_rotating


def test_past_the_size_a_new_file_begins_at_a_line_and_older_ones_are_kept(
    tmp_path: Path,
) -> None:
    log = tmp_path / "server-3.log"
    lines = [f"line {index:04d} {'x' * 40}\n".encode() for index in range(200)]
    read_end, write_end = os.pipe()
    for line in lines:  # 200 lines of 51 bytes, each written alone
        os.write(write_end, line)
    os.close(write_end)
    copy_rotating(read_end, log, max_bytes=2000, backups=2)
    os.close(read_end)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["server-3.log", "server-3.log.1", "server-3.log.2"]
    kept = b"".join((tmp_path / name).read_bytes() for name in reversed(files))
    assert kept == b"".join(lines[-len(kept.splitlines()) :])  # the newest, in order
    for name in files:
        text = (tmp_path / name).read_bytes()
        assert len(text) <= 2000 and text.endswith(b"\n")
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600


def test_a_servers_output_reaches_its_log_through_the_rotating_writer(tmp_path: Path) -> None:
    import subprocess

    log = tmp_path / "server-4.log"
    program = "import sys\nfor i in range(3000): print(f'request {i:05d} answered', flush=True)"
    environment = {"PATH": os.environ.get("PATH", ""), **{
        name: value for name, value in os.environ.items() if name.startswith("PYTHON")
    }}  # fmt: skip
    with rotating_log(log, environment, max_bytes=20_000) as (output, writer):
        server = subprocess.Popen([sys.executable, "-c", program], stdout=output)
    assert server.wait(timeout=60) == 0
    assert writer.wait(timeout=60) == 0  # it ends once the server closed its output
    rotated = sorted(tmp_path.glob("server-4.log*"))
    assert [p.name for p in rotated] == [
        "server-4.log", "server-4.log.1", "server-4.log.2", "server-4.log.3"
    ]  # fmt: skip
    assert all(p.stat().st_size <= 20_000 for p in rotated)
    assert log.read_text().splitlines()[-1] == "request 02999 answered"
