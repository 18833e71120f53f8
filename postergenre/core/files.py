"""Writing files so that a reader sees the old file or the new one, never half of one; and reading a
safetensors file's header before anything maps the file."""
from __future__ import annotations

import csv
import json
import os
import stat
import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

from postergenre.core.errors import DataError, first_line
from postergenre.core.interrupts import held_back

UMASK = os.umask(0o022)
os.umask(UMASK)  # read once: the final file gets the permissions a plain open() would have given it


@contextmanager
def atomic_write(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `path`, to write; it replaces `path` when the block ends.

    The temporary file is created exclusively under a random name (`.<name>.<random>.tmp`): a name
    known in advance could be a planted symlink that the write would follow. If the block fails (a
    full disk, Ctrl-C, a bug) it is removed and `path` keeps its previous content. Write errors become
    one-line DataErrors naming the file.
    """
    with atomic_writes([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_writes(paths: list[Path | str]) -> Iterator[list[Path]]:
    """As atomic_write, for files that are one unit (a head, its arrays and its card): a temporary path each, and
    when the block ends they replace theirs together, Ctrl-C and SIGTERM held back for those few renames, so that
    after an interrupt all are new or none is. A temporary file the block removed removes its file (a head with no
    arrays leaves none of an older head's behind)."""
    paths, temps = [Path(p) for p in paths], []
    try:
        for path in paths:
            descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            os.close(descriptor)
            temps.append(Path(name))
        yield temps
        for tmp in temps:
            if tmp.exists():
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())  # the bytes are on disk before the rename makes them the file
                os.chmod(tmp, 0o666 & ~UMASK)
        with held_back():
            for tmp, path in zip(temps, paths):
                os.replace(tmp, path) if tmp.exists() else path.unlink(missing_ok=True)
    except BaseException as e:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            where = paths[len(temps)] if len(temps) < len(paths) else paths[0]
            raise DataError(f"{where}: could not write ({first_line(e)}); the previous file is untouched") from None
        raise


def write_text_atomic(path: Path | str, text: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def formula_safe(cell: object) -> object:
    """A CSV cell that a spreadsheet shows as text: one starting like a formula gets a leading apostrophe."""
    return f"'{cell}" if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def write_csv_atomic(path: Path | str, header: list[str], rows: Iterable[Iterable[object]]) -> None:
    """A UTF-8 CSV, written atomically, whose cells from data (genres, ids, titles, reasons) run no formula."""
    with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([formula_safe(cell) for cell in header])
        writer.writerows([formula_safe(cell) for cell in row] for row in rows)


def open_regular(path: Path | str, name: str | None = None) -> BinaryIO:
    """`path` opened for reading in binary, if it is a regular file: a FIFO would block the read forever and a device
    such as /dev/zero never end it, so either is one line naming it (`name`, default its path), found without
    waiting (the open does not block)."""
    name = name or str(path)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise DataError(f"{name}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise DataError(f"{name}: not a regular file")
    os.set_blocking(descriptor, True)
    return open(descriptor, "rb")


def safetensors_header(path: Path | str, max_bytes: int) -> dict:
    """The JSON header of a safetensors file (tensor names, shapes, offsets, `__metadata__`), read before the
    file is mapped: a header over `max_bytes`, nested past the recursion limit or cut short is a ValueError."""
    with open(path, "rb") as f:
        try:
            (length,) = struct.unpack("<Q", f.read(8))
        except struct.error:
            raise ValueError("shorter than a safetensors header") from None
        if length > max_bytes:
            raise ValueError(f"a {length:,}-byte header, over the {max_bytes:,} allowed")
        try:
            return json.loads(f.read(length))
        except RecursionError:
            raise ValueError("its header is nested too deep") from None
