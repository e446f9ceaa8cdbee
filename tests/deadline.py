"""A hang guard for tests of hostile input: a call that never returns fails the test instead of hanging it."""

from __future__ import annotations

import threading

#: Far longer than any of the guarded calls takes: only a hang reaches it.
DEADLINE_S = 60.0


def within_deadline(func, *args, seconds: float = DEADLINE_S):
    """Run ``func(*args)`` in a daemon thread; fail if it has not finished in ``seconds``. (result, exception)."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = func(*args)
        except BaseException as err:  # noqa: BLE001 - handed back to the test to judge
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"{getattr(func, '__name__', func)}{args} did not finish in {seconds} s"
    return outcome.get("result"), outcome.get("error")
