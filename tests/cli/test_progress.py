"""Progress lines say what they mean: time so far, and time left only while work is left."""

from __future__ import annotations

import io
import re

from cli.progress import ProgressBar


def test_the_progress_line_says_elapsed_and_left_apart():
    out = io.StringIO()
    bar = ProgressBar("tiles", stream=out)
    bar.start -= 4.0  # as if 4 s had passed
    bar(1, 4)
    bar(4, 4)
    first, last = out.getvalue().splitlines()
    assert re.fullmatch(r"tiles \[#{7} {23}\] 1/4  4\.\d s, about 1\d s left", first), first
    assert re.fullmatch(r"tiles \[#{30}\] 4/4  4\.\d s", last), last  # done: nothing is left
