"""How much memory a scoring task has used: the figure each step records (`memory_mib`)."""

import resource


def peak_memory_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
