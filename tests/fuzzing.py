"""One budget for every seeded fuzzer: a few hundred cases in ``make test``, minutes in ``make fuzz``.

``BIOPSIA_FUZZ_SECONDS`` (set by ``make fuzz``) turns a fuzzer from a fixed number of cases into a
time budget: it runs seeds 0, 1, 2, ... until the budget is spent (and at least its usual cases).
``BIOPSIA_FUZZ_SEED`` moves the first seed, so a long run explores new cases; a failure names its
seed, and ``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1`` replays it. The cases each fuzzer ran
are counted and printed at the end of the run (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import time
from typing import Iterator

def _status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_memory() -> float:
    """Start measuring this process's peak resident memory afresh; returns the resident size now (MB).

    ``ru_maxrss`` cannot be used: it only grows, and Linux carries it across ``execve``, so a child
    of a large pytest process starts with the parent's peak. Linux resets ``VmHWM`` on request.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS") or 0.0


def peak_memory_mb() -> float:
    """This process's peak resident memory (MB) since it started or since `reset_peak_memory`."""
    peak = _status_mb("VmHWM")
    if peak is None:  # not Linux: the lifetime peak, an overestimate
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


#: Cases run per fuzz test in this process, printed in pytest's closing summary.
CASES_RUN: dict[str, int] = {}


def record(cases: int, test: str | None = None) -> None:
    """Count ``cases`` for ``test`` (the running test by default); for cases run in a child process."""
    test = test or os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
    CASES_RUN[test] = CASES_RUN.get(test, 0) + cases


def fuzz_seconds() -> float | None:
    """The time budget per fuzzer of a long run, or None for the quick run of ``make test``."""
    value = os.environ.get("BIOPSIA_FUZZ_SECONDS")
    return float(value) if value else None


def seeds(cases: int) -> Iterator[int]:
    """The seeds a fuzzer runs: ``cases`` of them, or as many as the long run's budget allows."""
    first = int(os.environ.get("BIOPSIA_FUZZ_SEED", "0"))
    cases = int(os.environ.get("BIOPSIA_FUZZ_CASES", cases))
    budget = fuzz_seconds()
    end = None if budget is None else time.monotonic() + budget
    seed = first
    while seed < first + cases or (end is not None and time.monotonic() < end):
        record(1)
        yield seed
        seed += 1
