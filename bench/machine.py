"""How fast this machine is right now, printed beside every benchmark's figures.

The load average says how many processes compete for the cores, not how fast a core
is, and on this shared (virtual) machine that changes by the minute: at the same load
the same pipeline ran 30% slower from one hour to the next. `host_speed()` times what
these pipelines spend most of their time on, a fresh Python process importing a
library from bytecode (pandas), so that figures can be told apart by the machine's
speed when they were taken. (A pure-Python loop is no guide: it stayed fast while
imports slowed down.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

PROBE = "import pandas"


def host_speed() -> float:
    """Seconds a fresh interpreter takes to start and run `PROBE` (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", PROBE], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def machine_line() -> str:
    """Cores, load average and host speed, in one printable line."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores; load average {load}; host speed: a fresh "
        f"`python -c '{PROBE}'` in {host_speed():.2f} s (lower is faster)"
    )
