"""Read a poster data set, whatever its layout, into one table of (id, image path, genres).

Three layouts are recognised from the CSV header:
- the 2023 Kaggle anime CSV: `anime_id`, `Genres` as "Action, Sci-Fi" (`UNKNOWN` = none), images/<anime_id>.<ext>
- a simple CSV: `id`, `genres` as "Action|Sci-Fi", images/<id>.<ext>
- the movie one-hot CSV: `Id`, `Genre`, one 0/1 column per genre, Images/<Id>.<ext>
"""
from __future__ import annotations

import csv
import re
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

from postergenre.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
PARTS = ("train", "val", "test")  # the parts of a split (posters.split)


@dataclass(frozen=True)
class Poster:
    id: str
    image: Path
    genres: tuple[str, ...]
    titles: tuple[str, ...] = ()  # TITLE_COLUMNS' values: which posters are of one franchise (posters.franchises)
    group: str = ""  # the franchise group a `group` column names, which wins over the titles


TITLE_COLUMNS = ("Name", "English name", "title")  # the Kaggle layout's, then the simple layout's


@dataclass
class PosterSet:
    name: str
    root: Path
    posters: list[Poster]
    skipped: Counter = field(default_factory=Counter)  # reason -> count of posters left out

    def genre_counts(self) -> Counter:
        return Counter(g for p in self.posters for g in p.genres)


def is_plain_name(poster_id: str) -> bool:
    """Whether an id can name a file inside the images folder: no folder part, nothing hidden, no odd characters,
    and at most 200 bytes of UTF-8, so that its file name, extension and temporary suffix stay under 255 bytes.

    Ids come from a CSV a user was given: `../../x` or `/etc/x` must never become a path.
    """
    return (0 < len(poster_id.encode("utf-8")) <= 200 and poster_id.isprintable() and not poster_id.startswith(".")
            and not any(c in poster_id for c in '/\\:'))


def read_rows(csv_path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a UTF-8 CSV (a spreadsheet's byte-order mark is allowed)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = reader.fieldnames or []
    except FileNotFoundError:
        raise DataError(f"{csv_path}: file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{csv_path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except csv.Error as e:
        raise DataError(f"{csv_path}: malformed CSV at line {reader.line_num} ({e})") from None
    if not header:
        raise DataError(f"{csv_path}: empty file, expected a CSV header")
    return header, rows


def find_image(folder: Path, poster_id: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        path = folder / f"{poster_id}{ext}"
        if path.is_file():
            return path
    return None


def _split_names(text: str, sep: str) -> tuple[str, ...]:
    """Genre names, spaces collapsed; a name with no letter (a score from a shifted row) is no genre."""
    names = [" ".join(g.split()) for g in text.split(sep)]
    return tuple(sorted({g for g in names if re.search(r"[^\W\d_]", g) and g.upper() not in ("UNKNOWN", "N/A")}))


def _kaggle_genres(row: dict[str, str]) -> tuple[str, ...]:
    return _split_names(row["Genres"] or "", ",")


def _simple_genres(row: dict[str, str]) -> tuple[str, ...]:
    return _split_names(row["genres"] or "", "|")


def _layout(header: list[str], rows: list[dict[str, str]]):
    """Return (id column, genre parser, image folder name) for a CSV header."""
    if "anime_id" in header and "Genres" in header:
        return "anime_id", _kaggle_genres, "images"
    if "id" in header and "genres" in header:
        return "id", _simple_genres, "images"
    if "Id" in header and "Genre" in header:
        # One-hot genre columns are the ones holding only 0/1; `N/A` means "no genre".
        onehot = [c for c in header if c not in ("Id", "Genre") and c != "N/A"
                  and rows and all(r[c] in ("0", "1") for r in rows)]
        return "Id", lambda row: tuple(c for c in onehot if row[c] == "1"), "Images"
    return None


def find_csv(root: Path) -> Path:
    """The one CSV in `root` whose header is a known layout."""
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    for path in sorted(root.glob("*.csv")):
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
            header = next(csv.reader(f), [])
        if ({"anime_id", "Genres"} <= set(header) or {"id", "genres"} <= set(header)
                or {"Id", "Genre"} <= set(header)):
            return path
    raise DataError(f"{root}: no CSV with a known header (anime_id+Genres, id+genres, or Id+Genre)")


def read_posters(root: Path | str) -> PosterSet:
    """Read the data set in folder `root`. Posters without genres or image are skipped and counted."""
    root = Path(root)
    csv_path = find_csv(root)
    header, rows = read_rows(csv_path)
    id_column, parse_genres, image_folder = _layout(header, rows)
    posters, skipped, seen = [], Counter(), set()
    unsafe = []
    for row in rows:
        if None in row or None in row.values():  # more or fewer fields than the header: an unquoted comma
            skipped["malformed row"] += 1
            continue
        poster_id = row[id_column].strip()
        if not poster_id:
            skipped["empty id"] += 1
            continue
        if not is_plain_name(poster_id):
            skipped["id not a plain file name"] += 1
            unsafe.append(poster_id)
            continue
        if poster_id in seen:
            skipped["duplicate id"] += 1
            continue
        seen.add(poster_id)
        genres = parse_genres(row)
        if not genres:
            skipped["no genres"] += 1
            continue
        image = find_image(root / image_folder, poster_id)
        if image is None:
            skipped["no image file"] += 1
            continue
        posters.append(Poster(poster_id, image, genres, _titles(row), " ".join((row.get("group") or "").split())))
    if unsafe:
        print(f"{csv_path}: {len(unsafe)} ids are not plain file names (e.g. {unsafe[0]!r}); those rows are "
              f"left out", file=sys.stderr)
    commas = [g for p in posters for g in p.genres if "," in g] if parse_genres is _simple_genres else []
    with_comma = sum(any("," in g for g in p.genres) for p in posters)
    if with_comma > len(posters) / 2:  # Kaggle's "Comedy, Drama" in the id,title,genres layout: genres run together
        raise DataError(f"{csv_path}: {with_comma} of {len(posters)} posters' genres hold a comma (e.g. "
                        f"{commas[0]!r}); this layout separates genres with |: write them as "
                        f"{'|'.join(g.strip() for g in commas[0].split(','))!r}, e.g. with "
                        f"`sed -i 's/, /|/g' {csv_path}` if no title holds ', '")
    if commas:  # a few genre names with a comma of their own: each is read as one genre, as written
        print(f"{csv_path}: {len(commas)} genres hold a comma (e.g. {commas[0]!r}); this layout separates genres "
              f"with |, so each is read as one genre", file=sys.stderr)
    if not posters:
        raise DataError(f"{csv_path}: no poster with both genres and an image in {root / image_folder} "
                        f"(skipped: {dict(skipped) or 'none'})")
    name = root.name.replace(" ", "_")  # it names files and folders: no spaces, as in the Makefile
    return PosterSet(name, root, merge_genre_spellings(posters, csv_path), skipped)


def _titles(row: dict[str, str]) -> tuple[str, ...]:
    return tuple(t for c in TITLE_COLUMNS if (t := (row.get(c) or "").strip()) and t != "UNKNOWN")


def read_titles(root: Path | str) -> dict[str, tuple[str, ...]]:
    """Poster id -> its titles (TITLE_COLUMNS), for every well-formed row, with or without an image; empty for a
    layout without titles. They tell when two data sets hold the same anime or franchise (posters.union)."""
    header, rows = read_rows(find_csv(Path(root)))
    id_column = _layout(header, rows)[0]
    return {row[id_column].strip(): _titles(row) for row in rows if None not in row and None not in row.values()}


def merge_genre_spellings(posters: list[Poster], source: Path) -> list[Poster]:
    """Genres that differ only in case (`Sci-fi`, `Sci-Fi`) become one, spelled as most posters spell it."""
    spellings = Counter(g for p in posters for g in p.genres)
    canonical = {}
    for name, _ in spellings.most_common():
        canonical.setdefault(name.casefold(), name)
    merged = {name: canonical[name.casefold()] for name in spellings if canonical[name.casefold()] != name}
    if not merged:
        return posters
    print(f"{source}: genres merged that differ only in case: "
          f"{', '.join(f'{a} -> {b}' for a, b in sorted(merged.items()))}", file=sys.stderr)
    return [replace(p, genres=tuple(sorted({canonical[g.casefold()] for g in p.genres}))) for p in posters]


def read_genre_rows(csv_path: Path | str) -> list[tuple[str, tuple[str, ...]]]:
    """(Name, genres) of every row of a Kaggle-style table with no images (genres () where UNKNOWN)."""
    _, rows = read_rows(Path(csv_path))
    return [((row.get("Name") or "").strip(), _kaggle_genres(row)) for row in rows]


def read_genre_table(csv_path: Path | str) -> tuple[Counter, int, int]:
    """Genre counts, rows without genres, and all rows, from a Kaggle-style table with no images."""
    rows = read_genre_rows(csv_path)
    counts = Counter(g for _, genres in rows for g in genres)
    return counts, sum(not genres for _, genres in rows), len(rows)
