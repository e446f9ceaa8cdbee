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
