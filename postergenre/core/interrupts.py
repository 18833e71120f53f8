"""Ctrl-C and SIGTERM stop work even where a library catches them.

scikit-learn's MLP catches KeyboardInterrupt, warns "Training interrupted by user" and returns the half-fitted
model as if it had converged; a search around it would go on and save that model. And Python leaves SIGTERM to
kill the process where it stands, so no `finally` removes what it was writing. Inside `interruptible()` both
signals raise KeyboardInterrupt, and one that arrived during the block is raised again when the block ends,
whatever caught it.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def interruptible() -> Iterator[None]:
    """A block that SIGINT or SIGTERM end with KeyboardInterrupt, even if code inside catches it (in the main
    thread: elsewhere the block runs as it is)."""
    received = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    with _handled_by(stop):
        yield
    if received:  # the block caught the KeyboardInterrupt and carried on
        raise KeyboardInterrupt(signal.Signals(received[0]).name)


@contextmanager
def held_back() -> Iterator[None]:
    """A short block that SIGINT and SIGTERM wait for: one that arrives meanwhile is delivered when it ends, to the
    handler that was there before (a few renames that must all happen, or none). Python runs handlers in the main
    thread, whichever thread the signal reached, so handlers are swapped rather than the thread's mask."""
    deferred = []
    try:
        with _handled_by(lambda signum, frame: deferred.append(signum)):
            yield
    finally:
        if deferred:
            signal.raise_signal(deferred[0])


@contextmanager
def _handled_by(handler: Callable[[int, object], None]) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` during the block, and to the handlers they had before it after. Python
    runs signal handlers in the main thread, and only the main thread may set them: elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            signal.signal(sig, before)
