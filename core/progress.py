"""Progress bars on a terminal, and none in a log file: a bar redrawn with carriage returns floods a log."""
from __future__ import annotations

from tqdm import tqdm


def progress(*args, quiet: bool = False, **kwargs) -> tqdm:
    """tqdm, shown only when its output is a terminal (and not `quiet`); the commands print summaries anyway."""
    return tqdm(*args, disable=True if quiet else None, **kwargs)
