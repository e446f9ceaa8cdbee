"""The ``biopsia`` command: the parser, the hand-over to a subcommand, and how failures are reported.

Every error is one line naming the file and the problem, with exit status 1 (2 for a value refused on
the command line, 130 after Ctrl-C); ``BIOPSIA_TRACEBACK=1`` also prints the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from cli import annotations, engines, gpu, measure, models, predict, propose, slides, tiles
from cli.progress import error
from core.errors import BiopsiaError

#: The subcommand groups, in the order ``biopsia --help`` lists them.
GROUPS = (slides, annotations, tiles, models, engines, predict, measure, propose, gpu)
#: Every subcommand and the function that carries it out.
COMMANDS = {name: run for group in GROUPS for name, run in group.COMMANDS.items()}

#: Arguments that name the files a command reads or writes, in the order they are reported.
FILE_ARGS = ("slide", "slides", "original", "marked", "input", "annotations", "prediction", "dataset", "model", "folder",
             "output", "out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biopsia", description="Whole-slide viewing, tumour marking and "
                                     "MXNet tumour detection for pathologists.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # MXNet and OpenMP use one core unless told otherwise (MXNet reads this when it loads, later)
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    # the GPU build of MXNet (make gpu) links CUDA 11 libraries that come as wheels: loaded before MXNet is
    preload_cuda_if_installed()
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["gui"] + argv  # `biopsia SLIDE...` opens the slides
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except BiopsiaError as err:
        error(str(err))
        return 1
    except OSError as err:  # disk full, permission denied, missing folder: say which file
        where = f"{err.filename}: " if err.filename else files_of(args)
        error(f"{where}{err.strerror or err}")
        return 1
    except KeyboardInterrupt:
        print("biopsia: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a defect in Biopsia: still say which file, and keep the traceback for a report
        if os.environ.get("BIOPSIA_TRACEBACK"):
            traceback.print_exc()
        kind = type(err).__qualname__ if type(err).__module__ == "builtins" else \
            f"{type(err).__module__}.{type(err).__qualname__}"
        error(f"{files_of(args)}unexpected {kind}: {err} (a defect in Biopsia; please report it, with "
              "BIOPSIA_TRACEBACK=1 set for the details)")
        return 1


def preload_cuda_if_installed() -> None:
    """Load the nvidia-*-cu11 wheels' libraries when they are installed (`make gpu`); nothing otherwise."""
    if any(os.path.isdir(os.path.join(p, "nvidia")) for p in sys.path if p):
        from core.inference.gpu_check import preload_cuda_libraries

        preload_cuda_libraries()


def files_of(args) -> str:
    """``"a.svs, b.svs: "``: the files named on the command line, to start an error message with."""
    names = []
    for attr in FILE_ARGS:
        value = getattr(args, attr, None)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item not in names:
                names.append(item)
    return f"{', '.join(names)}: " if names else ""
