"""Files that are one unit (a final head, its arrays and its card) are replaced together: after a failure or an
interrupt all are new or none is (core.files.atomic_writes)."""
import os
import signal
import threading
import time

import pytest

from postergenre.core import files
from postergenre.core.interrupts import interruptible


def _unit(tmp_path):
    paths = [tmp_path / name for name in ("m.skops", "m.arrays.safetensors", "m.md")]
    for path in paths:
        path.write_text("old")
    return paths


def _contents(paths):
    return [path.read_text() if path.exists() else None for path in paths]


def test_a_failed_or_interrupted_unit_leaves_every_old_file(tmp_path):
    paths = _unit(tmp_path)
    for stop in (RuntimeError("a bug"), "SIGINT", "SIGTERM"):
        with pytest.raises(RuntimeError if isinstance(stop, Exception) else KeyboardInterrupt), interruptible():
            with files.atomic_writes(paths) as temps:
                temps[0].write_text("new")
                temps[1].write_text("new")
                if isinstance(stop, Exception):
                    raise stop
                os.kill(os.getpid(), getattr(signal, stop))
                temps[2].write_text("new")  # never reached
        assert _contents(paths) == ["old"] * 3
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)  # no temporary file left


def test_an_interrupt_while_the_unit_is_renamed_waits_until_all_are_new(tmp_path, monkeypatch):
    """Also where another thread runs, which the kernel may hand the signal to."""
    threading.Thread(target=time.sleep, args=(1,), daemon=True).start()
    paths = _unit(tmp_path)
    replace, renamed = os.replace, []

    def replace_and_interrupt(src, dst):
        if not renamed:
            os.kill(os.getpid(), signal.SIGINT)  # held back until the last rename
        replace(src, dst)
        renamed.append(dst)

    monkeypatch.setattr(os, "replace", replace_and_interrupt)
    with pytest.raises(KeyboardInterrupt), interruptible():
        with files.atomic_writes(paths) as temps:
            for tmp in temps[:2]:
                tmp.write_text("new")
            temps[2].unlink()  # a file the new unit does not have is removed with it
    assert _contents(paths) == ["new", "new", None] and len(renamed) == 2


def test_a_signal_caught_inside_the_block_still_stops_it():
    """As scikit-learn's MLP does: catch KeyboardInterrupt and return as if done."""
    with pytest.raises(KeyboardInterrupt), interruptible():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            pass
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
