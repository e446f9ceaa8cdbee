"""One budget for every seeded fuzzer: a few hundred cases in ``make test``, minutes in ``make fuzz``.

``BIOPSIA_FUZZ_SECONDS`` (set by ``make fuzz``) turns a fuzzer from a fixed number of cases into a
time budget: it runs seeds 0, 1, 2, ... until the budget is spent (and at least its usual cases).
``BIOPSIA_FUZZ_SEED`` moves the first seed, so a long run explores new cases; a failure names its
seed, and ``BIOPSIA_FUZZ_SEED=<seed> BIOPSIA_FUZZ_CASES=1`` replays it.
"""

from __future__ import annotations

import os
import time
from typing import Iterator


def fuzz_seconds() -> float | None:
    """The time budget per fuzzer of a long run, or None for the quick run of ``make test``."""
    value = os.environ.get("BIOPSIA_FUZZ_SECONDS")
    return float(value) if value else None


def seeds(cases: int) -> Iterator[int]:
    """The seeds a fuzzer runs: ``cases`` of them, or as many as the long run's budget allows."""
    first = int(os.environ.get("BIOPSIA_FUZZ_SEED", "0"))
    cases = int(os.environ.get("BIOPSIA_FUZZ_CASES", cases))
    budget = fuzz_seconds()
    if budget is None:
        yield from range(first, first + cases)
        return
    end = time.monotonic() + budget
    seed = first
    while seed < first + cases or time.monotonic() < end:
        yield seed
        seed += 1
