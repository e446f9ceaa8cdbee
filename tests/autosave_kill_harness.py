"""Chains of editing programs killed with SIGKILL: shared by the autosave kill test and its benchmark.

A chain is one store and the programs that edit it, one after another (tests/autosave_kill_child.py,
each a fresh interpreter saving with the window's settings). Each program opens what the one before
left, checks that it is exactly the store after some edit, edits, and is killed. A round records what
the program found, the edits it made, the saves it reported and when it was killed; the next program's
reading is added as ``found_next``.

Three ways to choose the moment of a kill:

* ``"early"``: a random moment in the program's first 1.2 s of editing (while it opens journals,
  saves its first edits, compacts);
* ``"after_save"``: once the program has reported a save holding an edit of its own, plus a random
  0 to 0.8 s (so that the kill often falls inside the next save). It waits for that save however long
  the machine takes, so what it checks holds at any speed: the test uses it;
* ``"timed"``: a random moment 2.1 to 2.7 s into editing, whatever has been saved by then: the
  benchmark uses it to measure the two-second promise on this machine.

``time.monotonic()`` is one clock for every process, so the program's own edit and save times are
compared with the moment of the kill.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import autosave_kill_child as child_module

CHILD = Path(child_module.__file__)
#: Killed for good after this long at the latest, whatever happens.
HANG_GUARD_S = 120
#: The promise that the benchmark measures: every edit is on disk this long after it was made.
PROMISE_S = 2.0


@dataclass
class Chain:
    """One store and the programs that edit it, one after another."""

    name: str
    marks: int
    kills: int
    folder: Path
    rng: random.Random
    late: str = "after_save"  # how the kills that are not "early" are timed
    rounds: list = field(default_factory=list)  # one dict per killed program
    errors: list = field(default_factory=list)


def run_child(chain: Chain, moment: str | None) -> dict:
    """Start an editing program, kill it at a moment of kind ``moment`` (None: once it has checked)."""
    launched = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(CHILD), str(chain.folder / "project")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[str, int, float]] = []
    first: list[str] = []
    ready, own_save = threading.Event(), threading.Event()

    def read() -> None:
        for line in proc.stdout:
            if line.startswith("ready"):
                first.append(line.strip())
                ready.set()
            else:
                kind, k, t = line.split()
                lines.append((kind, int(k), float(t)))
                if kind == "saved" and first and int(k) > int(first[0].split()[1]):
                    own_save.set()
        ready.set()
        own_save.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not ready.wait(HANG_GUARD_S) or not first:
            raise AssertionError(f"{chain.name}: the editing program did not start")
        opened_s = time.monotonic() - launched
        if moment == "early":
            time.sleep(chain.rng.uniform(0.2, 1.2))
        elif moment == "timed":
            time.sleep(chain.rng.uniform(PROMISE_S + 0.1, PROMISE_S + 0.7))
        elif moment == "after_save":
            if not own_save.wait(HANG_GUARD_S):
                raise AssertionError(f"{chain.name}: no save reported in {HANG_GUARD_S} s of editing")
            time.sleep(chain.rng.uniform(0.0, 0.8))
    finally:
        killed_at = time.monotonic()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        reader.join(30)  # every line it holds was written before the kill
        stderr = proc.stderr.read()
    assert proc.returncode == -signal.SIGKILL and "Traceback" not in stderr, f"{chain.name}: {stderr[-3000:]}"
    for warning in (w for w in stderr.splitlines() if w.startswith("warning")):
        assert "incomplete save" in warning, f"{chain.name}: {warning}"  # a torn last frame, nothing worse
    _, found, status = first[0].split(maxsplit=2)
    assert status == "ok", f"{chain.name}: what was read back is not the store after edit {found}: {status}"
    found = int(found)
    edits = [(k, t) for kind, k, t in lines if kind == "edit"]
    saves = [(k, t) for kind, k, t in lines if kind == "saved"]
    return {"found": found, "opened_s": round(opened_s, 1), "last": edits[-1][0] if edits else found,
            # the last save the program reported before it was killed: on disk, whatever the speed
            "saved": max((k for k, t in saves), default=found),
            # every edit made this long before the kill: on disk if the promise held
            "promised": max((k for k, t in edits if t <= killed_at - PROMISE_S), default=found),
            # the longest an edit waited for a save holding it (or for the kill)
            "lag_s": round(max((min((ts for ks, ts in saves if ks >= k), default=killed_at) - t for k, t in edits),
                               default=0.0), 2)}


def run_chain(chain: Chain) -> None:
    """``kills`` programs killed at random moments, then one more that only reads back what the last left."""
    try:
        moments = ["early"] * (chain.kills // 3) + [chain.late] * (chain.kills - chain.kills // 3)
        chain.rng.shuffle(moments)
        previous = None
        for moment in moments + [None]:
            result = run_child(chain, moment)
            if previous is not None:
                previous["found_next"] = result["found"]
                chain.rounds.append(previous)
            previous = {**result, "moment": moment}
    except BaseException as err:  # noqa: BLE001 - reported by the caller's thread
        chain.errors.append(err)


def standard_chains(folder: Path, kills: int, late: str, seed: int = 20260611) -> list[Chain]:
    """The 25 MB, 50 MB and small stores, written once (as GeoJSON was written when the promise was made)."""
    rng = random.Random(seed)
    # The larger store opens more slowly, so it gets fewer kills: the two chains take about as long.
    chains = [Chain("25 MB", 20, kills - kills * 13 // 30, folder / "25MB", random.Random(rng.random()), late),
              Chain("50 MB", 40, kills * 13 // 30, folder / "50MB", random.Random(rng.random()), late),
              # and, alongside, a store small enough to be rewritten whole at every save
              Chain("small", 1, kills // 2, folder / "small", random.Random(rng.random()), late)]
    return chains


def run_side_by_side(chains: list[Chain]) -> dict[str, int]:
    """Write each chain's store, then run the chains side by side; the stores' sizes in bytes."""
    sizes = {chain.name: child_module.build(chain.folder, chain.marks) for chain in chains}
    threads = [threading.Thread(target=run_chain, args=(chain,), daemon=True) for chain in chains]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG_GUARD_S * (max(chain.kills for chain in chains) + 2))
    for chain in chains:
        if chain.errors:
            raise chain.errors[0]
    return sizes
