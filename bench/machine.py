"""How fast this machine is right now, printed beside every benchmark's figures.

The load average says how many processes compete for the cores; it does not say how
fast a core is. On shared (virtual) machines that changes by hour: here, at the same
load, one thread adding 10 million numbers took 0.95 s in one hour and 1.7 s in another,
and every figure moved with it. `host_speed()` times that loop, so two figures can be
told apart by the machine's speed when they were taken.
"""

from __future__ import annotations

import os
import time

LOOP_ADDITIONS = 10_000_000


def host_speed() -> float:
    """Seconds one thread takes to add `LOOP_ADDITIONS` integers in pure Python (best of 3)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(LOOP_ADDITIONS):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def machine_line() -> str:
    """Cores, load average and host speed, in one printable line."""
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} cores; load average {load}; host speed: "
        f"{LOOP_ADDITIONS:,} additions in {host_speed():.2f} s (lower is faster)"
    )
