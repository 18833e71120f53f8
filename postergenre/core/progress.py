"""Progress on long work: a bar on a terminal, and in a log or a pipe a plain line now and then (a bar redrawn
with carriage returns would flood a log as one endless line, and no output at all leaves minutes of silence)."""
from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

LOG_EVERY = 10.0  # seconds between progress lines when the output is not a terminal


class _Lines:
    """A stream for tqdm that turns each redraw into one line of `out`."""

    def __init__(self, out: TextIO):
        self.out, self.last = out, ""

    def write(self, text: str) -> None:
        line = text.replace("\r", "").strip()
        if line and line != self.last:  # closing redraws the last state again
            self.out.write(line + "\n")
            self.last = line

    def flush(self) -> None:
        self.out.flush()


def progress(*args, quiet: bool = False, **kwargs) -> tqdm:
    """tqdm on a terminal; elsewhere a line every LOG_EVERY seconds and the last one, from LOG_EVERY seconds on
    (work that ends sooner prints nothing). `quiet`: nothing."""
    out = kwargs.pop("file", None) or sys.stderr
    if quiet:
        return tqdm(*args, disable=True, **kwargs)
    if out.isatty():
        return tqdm(*args, file=out, **kwargs)
    return tqdm(*args, file=_Lines(out), delay=LOG_EVERY, mininterval=LOG_EVERY, maxinterval=LOG_EVERY, ascii=True,
                ncols=100, **{**kwargs, "leave": True})
