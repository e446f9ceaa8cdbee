#!/usr/bin/env python3
"""The two-second autosave promise under SIGKILL, on this machine. Prints JSON.

The chains of the autosave kill test (tests/autosave_kill_harness.py: 25 MB, 50 MB and small
stores, edited side by side by programs killed with SIGKILL), but with the late kills timed 2.1 to
2.7 s into editing whatever has been saved by then. Reported per store:

* ``lost_promised``: kills after which an edit made 2 s or more before the kill was missing (goal 0);
* ``lost_saved``: kills after which an edit the program had reported saved was missing (must be 0
  at any speed: the test checks it);
* ``lag_s``: per kill, the longest any edit waited for a save holding it; its max and median.

    .venv/bin/python bench/autosave_kill.py [--kills 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from autosave_kill_harness import PROMISE_S, run_side_by_side, standard_chains  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=30, help="kills of the 25 and 50 MB chains together")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="biopsia-autosave-kill-") as tmp:
        chains = standard_chains(Path(tmp), args.kills, late="timed")
        sizes = run_side_by_side(chains)
    report = {"cores": os.cpu_count(), "promise_s": PROMISE_S, "seconds": round(time.monotonic() - started, 1),
              "stores": {}}
    for chain in chains:
        lags = [r["lag_s"] for r in chain.rounds]
        report["stores"][chain.name] = {
            "bytes": sizes[chain.name], "kills": len(chain.rounds),
            "lost_promised": sum(r["found_next"] < r["promised"] for r in chain.rounds),
            "lost_saved": sum(r["found_next"] < r["saved"] for r in chain.rounds),
            "lag_s": {"max": max(lags), "median": statistics.median(lags)}}
    report["goal_met"] = all(s["lost_promised"] == 0 and s["lost_saved"] == 0 for s in report["stores"].values())
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
