"""Commands as `python -m <module>` runs them, each in a process of its own, started in a fraction of the time.

A fresh interpreter spends about ten seconds of this 2-core CPU importing torch, torchvision and the rest
before a command does anything, and the tests run some sixty commands. So each command is forked from
one server process that imported those libraries once (multiprocessing's forkserver, which never runs a
thread pool, so forking it is safe), and runs through runpy as `python -m` would: its own process, its own
exit code, stdout and stderr, the caller's environment and the repository root as its working directory.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import runpy
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What every command imports first; the project's own modules are imported afresh by each command.
PRELOAD = ["numpy", "torch", "torchvision", "sklearn", "scipy.sparse", "h5py", "onnxruntime", "skops.io", "timm"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


def run_module(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m *args` from the repository root; its output as text, as subprocess.run gives it."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        process = _context.Process(target=_command, args=(list(args), dict(os.environ), str(out), str(err)))
        process.start()
        process.join()
        return subprocess.CompletedProcess([sys.executable, "-m", *args], process.exitcode,
                                           out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8"))


def _command(args: list[str], environ: dict[str, str], out: str, err: str) -> None:
    """In the forked process: become `python -m *args`."""
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    for fd, path in ((1, out), (2, err)):
        opened = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)
    sys.argv = list(args)
    try:
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # as an interpreter's exit would; multiprocessing ends the process with os._exit
        sys.stdout.flush()
        sys.stderr.flush()
