"""postergenre <command> [flags]: every command of the project under one name.

Each command is the module that `python -m` runs (`postergenre heads ...` is `python -m postergenre.heads ...`),
with the same flags; `postergenre <command> --help` lists them. A command's module is imported only when it
runs, so this list comes at once.
"""
from __future__ import annotations

import importlib
import sys

from postergenre.core import cli

# command -> (its module, what it does)
COMMANDS = {
    "posters": ("postergenre.posters.__main__", "download a Kaggle table's posters, draw the sample, split a data set"),
    "features": ("postergenre.extract.__main__", "embed every poster with a frozen backbone into a feature file"),
    "heads": ("postergenre.heads.__main__", "fit, tune and score the heads on a feature file"),
    "finetune": ("postergenre.finetune.__main__", "fine-tune an ImageNet CNN end to end"),
    "cnn": ("postergenre.cnn.__main__", "train PosterNet from scratch"),
    "ensemble": ("postergenre.ensemble.__main__", "average a data set's models, members chosen on validation"),
    "titles": ("postergenre.heads.titles", "fit the title head and fuse it with the picked poster model"),
    "final": ("postergenre.heads.final", "refit the chosen head on every labelled poster"),
    "final-ensemble": ("postergenre.ensemble.final", "refit the ensemble's members on every labelled poster"),
    "builtin": ("postergenre.builtin.__main__", "make a final head the built-in anime genre model (make builtin)"),
    "audit": ("postergenre.audit.__main__", "rank the labelled posters by how likely their genres are wrong"),
    "report": ("postergenre.evaluation.report", "every model side by side: reports/report.md and report.html"),
    "predict": ("postergenre.predict.__main__", "the genres of new posters, printed or written to CSV/JSON"),
    "serve": ("postergenre.serve.__main__", "a local page to try posters, and POST /predict"),
    "explain": ("postergenre.explain.__main__", "heatmaps of what a network looks at"),
    "export": ("postergenre.predict.export", "a saved network as an ONNX file"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return "\n".join([__doc__.strip(), "", "commands:",
                      *(f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items())])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    name, *rest = argv
    if name not in COMMANDS:
        sys.exit(f"postergenre: no command {name!r}; choose from {', '.join(COMMANDS)}")
    cli.PROG_PREFIX = f"postergenre {name}"
    importlib.import_module(COMMANDS[name][0]).main(rest)
