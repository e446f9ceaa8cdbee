"""The command-line side of cohorts: ``predict --workers N`` / ``--scheduler ADDRESS`` on a Dask cluster.

Parsing and printing only; planning, running and writing are `core.cohort`'s.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from cli import options as opt
from cli.progress import error, note, warn
from core.models.thresholds import format_threshold


def add_cluster_options(parser, force: bool = True) -> None:
    """``--workers N``, ``--scheduler ADDRESS`` and (with ``force``) ``--force`` on a subcommand."""
    parser.add_argument("--workers", type=opt.positive, default=1,
                        help="worker processes of a local Dask cluster, one slide each at a time (default 1: "
                             "this process alone, no cluster)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on an existing Dask cluster (tcp://host:8786, from 'dask scheduler'); "
                             "an empty value starts a local one")
    parser.add_argument("--scheduler-timeout", type=opt.number(0.0, 3600.0, low_open=True, unit=" s"),
                        default=30.0, metavar="S",
                        help="seconds to wait for the scheduler and its first worker (default 30)")
    if force:
        parser.add_argument("--force", action="store_true",
                            help="redo slides whose results exist for the same model (default: skip them)")


def wants_cluster(args) -> bool:
    """True when the command should hand its slides to a Dask cluster."""
    return args.scheduler is not None or args.workers > 1


class CohortProgress:
    """One stderr line for the whole cohort: slides finished of all, tiles predicted of those known."""

    def __init__(self, slides: int, stream=sys.stderr):
        self.slides, self.finished, self.stream = slides, 0, stream
        self.tiles: dict[str, tuple[int, int]] = {}
        self.start, self._last = time.monotonic(), 0.0
        self._tty = hasattr(stream, "isatty") and stream.isatty()
        self._lock = threading.Lock()

    def tile_report(self, report: dict) -> None:
        with self._lock:
            self.tiles[report["name"]] = (int(report["done"]), int(report["total"]))
        self.show()

    def slide_finished(self, name: str, tiles: int | None = None) -> None:
        with self._lock:
            self.finished += 1
            if tiles is not None:
                self.tiles[name] = (tiles, tiles)
        self.show(force=True)

    def clear(self) -> None:
        """Wipe the progress line on a terminal, so that a result line can be printed in its place."""
        if self._tty:
            with self._lock:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def show(self, force: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if not force and now - self._last < (0.2 if self._tty else 5.0):
                return
            self._last = now
            done = sum(d for d, _ in self.tiles.values())
            total = sum(t for _, t in self.tiles.values())
            line = (f"slides {self.finished}/{self.slides}  tiles {done}/{total} of the slides started  "
                    f"{now - self.start:5.1f}s")
            if self._tty:
                end = "\n" if self.finished >= self.slides else ""
                self.stream.write(f"\r{line} {end}")
            else:
                self.stream.write(line + "\n")
            self.stream.flush()


def predict_cohort(args, model: Path, options) -> int:
    """``biopsia predict`` on a Dask cluster: skip what is done, one task per slide, a line per slide."""
    from core.cohort import plan_cohort, run_cohort
    from core.cohort.cluster import cohort_client
    from core.cohort.results import remove_leftovers

    if args.scheduler and args.workers > 1:
        warn(f"--workers {args.workers} is left to the cluster at {args.scheduler}: it has the workers it has")
    plan = plan_cohort(args.slides, args.out, model, options, force=args.force)
    for name, folder in plan.skipped:
        note(f"{folder}: skipped, done already with this model's weights (--force redoes it)")
    if not plan.jobs:
        note(f"all {len(plan.skipped)} slides done already; nothing to run")
        return 0
    progress = CohortProgress(len(plan.jobs))

    def done(summary: dict) -> None:
        progress.clear()
        n, seconds = summary["tiles"], summary["seconds"]
        print(f"{Path(args.out) / summary['name']}: {n} tiles in {seconds:.1f} s ({summary['tiles_per_s']:.0f} tiles/s) on "
              f"{summary['worker']}; {summary['called']} at or above {format_threshold(options.threshold)} "
              f"({summary['called'] / max(n, 1):.1%})", flush=True)
        progress.slide_finished(summary["name"], n)

    def failed(name: str, message: str) -> None:
        progress.clear()
        error(message)
        progress.slide_finished(name)

    local = not args.scheduler
    try:
        with cohort_client(workers=args.workers, scheduler=args.scheduler or None,
                           timeout=args.scheduler_timeout) as (client, info):
            where = f"a local cluster of {info.workers} worker processes" if info.local else \
                f"the cluster at {info.scheduler} ({info.workers} workers)"
            note(f"{len(plan.jobs)} slides on {where}; dashboard {info.dashboard}")
            result = run_cohort(client, plan, on_done=done, on_failed=failed, on_tiles=progress.tile_report)
    except KeyboardInterrupt:
        if local:  # the workers are gone with the cluster: nothing is writing these folders any more
            for job in plan.jobs:
                remove_leftovers(job.folder)
        note("cancelled; the slides that finished stay, the others were not written")
        raise
    skipped = f", {len(result.skipped)} skipped" if result.skipped else ""
    note(f"{len(result.done)} slides done, {len(result.failed)} failed{skipped}")
    return 1 if result.failed else 0
