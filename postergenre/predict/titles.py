"""Predicting with the title beside the poster: a final model's title head (modelfiles/titles.py, `make titles` then
`make final`) fused with the poster model's probabilities. The command line (`--title`, `--titles CSV`), the API
(`titles=`) and the page (its title field) all take this route; without a title the poster model answers alone.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from postergenre.core.errors import DataError
from postergenre.modelfiles.titles import TitleModel, read_titles, titles_path
from postergenre.predict.arguments import Predicts

MAX_TITLE = 300  # characters of one title: longer is no anime's name


class Fused:
    """A poster model with its title head, for posters whose titles are given: the fusion's name, thresholds and
    recall thresholds (predict.arguments.Predicts), probabilities from `fuse`."""

    def __init__(self, poster: Predicts, head: TitleModel):
        if head.genres != list(poster.genres):
            raise DataError(f"{poster.name}: its title head predicts other genres than it does; run make final again")
        self.poster, self.head = poster, head
        self.name, self.genres = f"{poster.name}+title", list(poster.genres)
        self.thresholds = np.asarray(head.settings.thresholds, dtype=np.float64)
        self.recall_thresholds: dict[str, float] | None = head.settings.recall_thresholds
        self.final, self.batch_size = poster.final, poster.batch_size

    def fuse(self, poster_probabilities: np.ndarray, titles: list[str]) -> np.ndarray:
        """The fused probabilities of posters whose poster model gave `poster_probabilities`, one title each."""
        return self.head.fuse(poster_probabilities, [checked_title(t) for t in titles])


def with_title_head(predictor: Predicts, path: Path | str) -> Fused:
    """`predictor`, the model saved at `path`, with the title head saved beside it; one line where it has none."""
    beside = titles_path(path)
    if not beside.is_file():
        raise DataError(f"{predictor.name} has no title head ({beside.name} beside it): `make titles` and then "
                        f"`make final` fuse one with a data set's final model; or leave the title out")
    return Fused(predictor, read_titles(beside, path))


def checked_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE or not title.isprintable():
        raise DataError(f"a title must be printable text of 1 to {MAX_TITLE} characters, not {str(title)[:40]!r}")
    return title.strip()


def read_title_table(path: Path | str) -> dict[str, str]:
    """A CSV of `image` (a file name, with or without its extension) and `title` columns: image -> title."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not {"image", "title"} <= set(reader.fieldnames or []):
                raise DataError(f"{path}: a titles CSV needs the columns image and title")
            return {row["image"].strip(): row["title"] for row in reader if row.get("image") and row.get("title")}
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV ({e})") from None


def titles_of(paths: list[Path], table: dict[str, str]) -> list[str]:
    """Each image's title from `table` (by file name, else by name without extension); one line if any lacks one."""
    found = [table.get(p.name, table.get(p.stem)) for p in paths]
    missing = [p.name for p, title in zip(paths, found) if title is None]
    if missing:
        raise DataError(f"{len(missing)} of {len(paths)} images have no title in the titles CSV (e.g. {missing[0]}); "
                        f"give every image one, or leave --titles out")
    return found
