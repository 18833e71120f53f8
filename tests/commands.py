"""Commands as `python -m <module>` runs them, each in a process of its own, started in a fraction of the time.

A fresh interpreter spends about ten seconds of this 2-core CPU importing torch, torchvision and the rest
before a command does anything, and the tests run some sixty commands. So each command is forked from
one server process that imported those libraries once (multiprocessing's forkserver, which never runs a
thread pool, so forking it is safe), and runs through runpy as `python -m` would: its own process, its own
exit code, stdout and stderr, the caller's environment and the repository root as its working directory (where
relative paths such as models/ land; the module itself is found by its installed name, from any folder).
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import resource
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# What every command imports first; the project's own modules are imported afresh by each command.
PRELOAD = ["numpy", "torch", "torchvision", "sklearn", "scipy.sparse", "h5py", "onnxruntime", "skops.io", "timm"]

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(PRELOAD)


class Started:
    """A command running in its own forked process: signal it, wait for a line of its output, then for its end."""

    def __init__(self, args: list[str], limit_file_size: int | None):
        self.args, self._tmp = args, tempfile.TemporaryDirectory()
        self.out, self.err = Path(self._tmp.name) / "stdout", Path(self._tmp.name) / "stderr"
        self.process = _context.Process(target=_command, args=(args, dict(os.environ), str(self.out), str(self.err),
                                                               limit_file_size))
        self.process.start()

    def send_signal(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def wait_for_line(self, start: str, timeout: float = 120) -> bool:
        """Whether a line of its output starting with `start` appeared before it ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while self.process.is_alive() and time.monotonic() < deadline:
            if self.out.exists() and any(line.startswith(start) for line in self.out.read_text().splitlines()):
                return True
            time.sleep(0.02)
        return False

    def wait(self) -> subprocess.CompletedProcess:
        self.process.join()
        try:
            return subprocess.CompletedProcess([sys.executable, "-m", *self.args], self.process.exitcode,
                                               self.out.read_text(encoding="utf-8"),
                                               self.err.read_text(encoding="utf-8"))
        finally:
            self._tmp.cleanup()


def start_module(module: str, *args: str, limit_file_size: int | None = None) -> Started:
    """Start `python -m <module> *args` by the module's installed name (`posters` is `postergenre.posters`), its
    files limited to `limit_file_size` bytes if given."""
    installed = module if module.startswith("postergenre.") else f"postergenre.{module}"
    return Started([installed, *args], limit_file_size)


def run_module(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m *args` (start_module); its output as text, as subprocess.run gives it."""
    return start_module(*args).wait()


def _command(args: list[str], environ: dict[str, str], out: str, err: str, limit_file_size: int | None) -> None:
    """In the forked process: become `python -m *args`."""
    if limit_file_size is not None:  # a size-limited disk without root or tmpfs; Python ignores SIGXFSZ
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))
    # A fresh interpreter's start method, not the forkserver this process came from: otherwise a DataLoader
    # worker would start one more forkserver, a new interpreter importing torch again (6 s a command)
    multiprocessing.set_start_method(None, force=True)
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
