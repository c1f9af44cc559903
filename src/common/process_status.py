"""What Linux says of a running process (/proc/<pid>/stat), for telling a recorded
server process from another that has since been given its pid."""

from __future__ import annotations

from pathlib import Path

# Index of the start time (clock ticks after boot; /proc/<pid>/stat field 22) in the
# fields `stat_fields` returns, which begin at field 3 (the state).
START_TIME = 19


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat from the third on (state, ppid, pgrp, ...), or
    None where there is no /proc or no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count after its end.
    return text[text.rindex(")") + 2 :].split()
