"""What every command line shares: one way to end on bad input, and flags made from a settings dataclass.

Settings are plain dataclasses (TrainConfig, DownloadConfig). A field's metadata may give `choices`
and `help`; `add_settings` turns each field into a flag whose values argparse checks before the
command loads anything, so a typo stops it at once with the allowed values.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from typing import Callable

from postergenre.core.errors import DataError
from postergenre.core.interrupts import interruptible

# Set by the `postergenre` command: its commands' help says `postergenre heads`, not `python -m postergenre.heads`.
PROG_PREFIX: str | None = None


def run(main: Callable[[], None], interrupted: str = "interrupted") -> None:
    """Run a command: bad input ends it with one line (`error: ...`), Ctrl-C or SIGTERM with `interrupted`; exit
    status 1. Either signal unwinds the command, so what it was writing atomically is removed, not left half-done."""
    try:
        with interruptible():
            main()
    except DataError as e:
        # An error raised in a DataLoader worker carries the worker's traceback; the cause is its last line.
        sys.exit(f"error: {str(e).strip().splitlines()[-1]}")
    except KeyboardInterrupt:
        sys.exit(interrupted)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default, and the command's docstring as it is laid out."""


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(prog=PROG_PREFIX or prog, description=description, formatter_class=_HelpFormatter)


def boolean(text: str) -> bool:
    """A strict yes/no flag value: `maybe` is an error, not False."""
    value = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}
    if text.lower() not in value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a yes/no value (use true or false)")
    return value[text.lower()]


def at_least(kind: type, minimum: float) -> Callable[[str], object]:
    """An argparse type: a `kind` number no smaller than `minimum` (--epochs 0 is an error, not 12 s of work)."""
    def parse(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} is less than {minimum}")
        return value
    return parse


def add_settings(parser: argparse.ArgumentParser, defaults: object) -> None:
    """A --flag per field of the settings dataclass instance `defaults`, with its type, choices, lower bound
    (metadata "minimum") and help."""
    for field in fields(defaults):
        default = getattr(defaults, field.name)
        kind = type(default) if default is not None else int  # an optional count (None: decided at run time)
        if kind is bool:
            kind = boolean
        elif "minimum" in field.metadata:
            kind = at_least(kind, field.metadata["minimum"])
        parser.add_argument(f"--{field.name.replace('_', '-')}", default=default, type=kind,
                            choices=field.metadata.get("choices"),
                            help=field.metadata.get("help", " "))  # " ": ArgumentDefaultsHelpFormatter shows defaults


def settings_from(args: argparse.Namespace, kind: type) -> object:
    """The settings dataclass `kind` filled from the flags `add_settings` made."""
    return kind(**{f.name: getattr(args, f.name) for f in fields(kind)})
