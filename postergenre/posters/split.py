"""One seeded train/validation/test split per data set, shared by every model.

The split is made by iterative stratification (Sechidis et al. 2011, via iterative-stratification) so that
rare genres reach every part, and the genre vocabulary is then built from the training part alone. By default
(`grouping="franchise"`) it keeps each franchise (posters.franchises) in one part, so that no test poster is a
sequel or season of a training one: the test figures speak of new anime. `grouping="none"` splits poster by
poster; a split file from before groups were kept reads as ungrouped, and says so.

The split follows its CSV. It records every poster's genres as it read them (`labels`), and every step that reads
it (`load_current`) compares them with the CSV as it is now: a change stops the step with the one command that
updates the split (`make split`, which make runs by itself when the CSV is newer than the split). Updating keeps
every poster's part, drops removed posters, takes changed genres, and gives each new poster a part drawn from
its id and the seed alone (`_seeded_part`), so that no other poster moves.
"""
from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from iterstrat.ml_stratifiers import IterativeStratification

from postergenre.core.errors import DataError
from postergenre.core.files import write_text_atomic
from postergenre.posters.data import PARTS, Poster, PosterSet
from postergenre.posters.franchises import poster_groups



@dataclass
class Split:
    dataset: str
    seed: int
    fractions: tuple[float, float, float]
    min_count: int
    genres: list[str]  # the vocabulary: genres with at least min_count training posters
    dropped_genres: dict[str, int]  # genre -> training posters, for genres under min_count
    left_out: dict[str, int]  # reason -> posters not in any part
    parts: dict[str, list[str]] = field(default_factory=dict)  # part -> poster ids
    genre_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # part -> genre -> posters
    labels: dict[str, str] = field(default_factory=dict)  # every poster read -> its genres ("|"): what it was made of
    grouping: str = ""  # "franchise": each group in one part; "none": poster by poster; "": made before groups
    groups: dict[str, str] = field(default_factory=dict)  # poster -> its franchise group (grouped splits)

    def dropped_text(self, shown: int = 10) -> str:
        """The dropped genres with their training posters, the first `shown` of them: a CSV can have thousands."""
        items = [f"{genre} ({n})" for genre, n in list(self.dropped_genres.items())[:shown]]
        more = len(self.dropped_genres) - shown
        return (", ".join(items) + (f" and {more:,} more" if more > 0 else "")) or "none"

    def part_of(self) -> dict[str, str]:
        return {pid: part for part, ids in self.parts.items() for pid in ids}

    @property
    def fingerprint(self) -> str:
        """A digest of what the split was made of, every poster's genres: feature files record it."""
        return labels_digest(self.labels)

    def save(self, path: Path | str) -> None:
        """Write atomically, so that a reader never sees half a split."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path | str) -> "Split":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(**{**raw, "fractions": tuple(raw["fractions"])})
        except FileNotFoundError:
            raise DataError(f"{path}: split file not found (run `make split` first)") from None
        except (json.JSONDecodeError, TypeError, KeyError) as e:
            raise DataError(f"{path}: not a valid split file ({e})") from None


@dataclass(frozen=True)
class Changes:
    """How a CSV differs from what its split was made of."""
    added: list[str]
    removed: list[str]
    changed: list[str]  # genres changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def __str__(self) -> str:
        return f"+{len(self.added)} posters, {len(self.changed)} genres changed, {len(self.removed)} removed"


def _labels(posters: PosterSet) -> dict[str, str]:
    return {p.id: "|".join(sorted(p.genres)) for p in posters.posters}


def labels_digest(labels: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()


def current_fingerprint(posters: PosterSet) -> str:
    """The fingerprint a split made of `posters` as they are now would have."""
    return labels_digest(_labels(posters))


def changes(split: Split, posters: PosterSet) -> Changes:
    """What changed in `posters` since `split` was made (nothing to say for a split from before labels were kept)."""
    if not split.labels:
        return Changes([], [], [])
    now = _labels(posters)
    return Changes(sorted(set(now) - set(split.labels)), sorted(set(split.labels) - set(now)),
                   sorted(i for i in set(now) & set(split.labels) if now[i] != split.labels[i]))


_said_ungrouped: set[str] = set()  # split files whose being ungrouped this process has said


def load_current(path: Path | str, posters: PosterSet) -> Split:
    """The split at `path`, if it was made from `posters` as they are now; else one line saying what changed and
    the command that updates it (make runs that command by itself when the CSV is newer than the split)."""
    split = Split.load(path)
    if not split.grouping and str(path) not in _said_ungrouped:
        _said_ungrouped.add(str(path))
        print(f"{path}: an ungrouped split, made before franchise groups: a test poster may be a sequel or season of a "
              f"training one, which flatters test figures; `make split GROUPS=franchise` makes a grouped one "
              f"(posters change parts: fit again after it)", file=sys.stderr)
    changed = changes(split, posters)
    if changed:
        raise DataError(f"{path}: {posters.root} changed since this split was made ({changed}); update it with "
                        f"`make split DATA={posters.root}` (or `postergenre posters split --data {posters.root} "
                        f"--out {path}`): every poster keeps its part")
    return split


def label_matrix(genre_sets: list[tuple[str, ...]], genres: list[str]) -> np.ndarray:
    """(n, len(genres)) 0/1 matrix; genres outside the vocabulary are ignored."""
    index = {g: i for i, g in enumerate(genres)}
    y = np.zeros((len(genre_sets), len(genres)), dtype=np.uint8)
    for row, names in enumerate(genre_sets):
        for g in names:
            if g in index:
                y[row, index[g]] = 1
    return y


def split_posters(posters: PosterSet, split: Split) -> dict[str, list[Poster]]:
    """The posters of each part, in split order."""
    by_id = {p.id: p for p in posters.posters}
    missing = [pid for part in PARTS for pid in split.parts[part] if pid not in by_id]
    if missing:
        raise DataError(f"split lists {len(missing)} posters not in {posters.name} (e.g. {missing[0]}); "
                        f"was the split made from this data?")
    return {part: [by_id[pid] for pid in split.parts[part]] for part in PARTS}


def stratified_folds(y: np.ndarray, fractions: tuple[float, ...], seed: int,
                     groups: np.ndarray | None = None) -> list[np.ndarray]:
    """Row indices of each fold, sized by `fractions`, every genre spread across folds (iterative stratification);
    with `groups` (one label a row), the rows of a group are all in one fold."""
    if groups is not None and len(np.unique(groups)) < len(groups):
        return grouped_folds(y, groups, fractions, seed)
    # iterstrat indexes the genre counts with each row's labels, so they must be booleans.
    fold_of = IterativeStratification(np.asarray(y, dtype=bool), np.asarray(fractions, dtype=float),
                                      np.random.RandomState(seed))
    return [np.flatnonzero(fold_of == fold) for fold in range(len(fractions))]


def grouped_folds(y: np.ndarray, groups: np.ndarray, fractions: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """Iterative stratification (Sechidis et al. 2011) over groups, each group with its rows' summed labels: the
    rarest genre left is placed first, each of its groups (largest first) into the fold that most lacks that
    genre, then rows, then by the seed. iterstrat places rows, not groups, hence this."""
    names, group_of = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.zeros((len(names), y.shape[1]))
    np.add.at(counts, group_of, np.asarray(y, dtype=float) > 0)
    sizes = np.bincount(group_of, minlength=len(names)).astype(float)
    shares = np.asarray(fractions, dtype=float)[:, None]
    lacking_genre, lacking_rows = shares * counts.sum(0), shares[:, 0] * sizes.sum()
    rng = np.random.RandomState(seed)
    shuffled = rng.permutation(len(names))
    order = shuffled[np.argsort(-sizes[shuffled], kind="stable")]  # largest first, ties in the seed's order
    fold_of = np.full(len(names), -1)
    left = counts.copy()
    while (fold_of < 0).any():
        remaining = left.sum(0)
        genre = int(np.argmin(np.where(remaining > 0, remaining, np.inf))) if remaining.any() else None
        for g in order:
            if fold_of[g] >= 0 or (genre is not None and counts[g, genre] == 0):
                continue
            need = lacking_genre[:, genre] if genre is not None else lacking_rows
            best = np.flatnonzero(need == need.max())
            if len(best) > 1:
                best = best[lacking_rows[best] == lacking_rows[best].max()]
            fold = int(best[rng.randint(len(best))])
            fold_of[g] = fold
            lacking_genre[fold] -= counts[g]
            lacking_rows[fold] -= sizes[g]
            left[g] = 0
    return [np.flatnonzero(fold_of[group_of] == fold) for fold in range(len(fractions))]


GROUPINGS = ("franchise", "none")


def make_split(posters: PosterSet, seed: int = 0, fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
               min_count: int = 5, grouping: str = "franchise") -> Split:
    """A new split of `posters`; with grouping "franchise", each franchise group wholly in one part."""
    items: list[Poster] = posters.posters
    totals = posters.genre_counts()
    # A genre with fewer than min_count posters in all can never have min_count training posters: it is not
    # stratified on (iterative stratification's time grows with the genres; 20,000 one-poster genres took minutes).
    stratified = [g for g in sorted(totals) if totals[g] >= min_count]
    groups = _groups(posters, grouping)
    folds = stratified_folds(label_matrix([p.genres for p in items], stratified), fractions, seed,
                             np.array([groups[p.id] for p in items]) if groups else None)
    part_of = {items[i].id: part for part, fold in zip(PARTS, folds) for i in fold}
    return _split_of(posters, part_of, seed, fractions, min_count, grouping, groups)


def _groups(posters: PosterSet, grouping: str) -> dict[str, str]:
    """Poster id -> franchise group for a grouped split (the posters' titles; their `group` column wins); {} for
    none."""
    if grouping not in GROUPINGS:
        raise DataError(f"unknown grouping {grouping!r}; choose from {', '.join(GROUPINGS)}")
    if grouping == "none":
        return {}
    return poster_groups(posters.posters)


def update_split(split: Split, posters: PosterSet) -> tuple[Split, Changes]:
    """`split` made current with `posters`: each poster keeps its part, removed ones drop out, changed genres are
    taken, and a new poster gets the part its id draws with the seed (_seeded_part), whatever else is new."""
    changed = changes(split, posters)
    kept = split.part_of()
    groups = _groups(posters, split.grouping or "none")
    group_part = {groups[pid]: part for pid, part in sorted(kept.items()) if pid in groups}
    part_of = {p.id: kept.get(p.id) or group_part.get(groups.get(p.id, "")) or
               _seeded_part(groups.get(p.id, p.id), split.seed, split.fractions) for p in posters.posters}
    return _split_of(posters, part_of, split.seed, split.fractions, split.min_count, split.grouping, groups), changed


def _seeded_part(key: str, seed: int, fractions: tuple[float, ...]) -> str:
    """A new poster's part, drawn from its id (grouped: its group's name) and the seed alone: adding it moves no
    other poster, and a new franchise's posters land together."""
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    return PARTS[min(int(np.searchsorted(np.cumsum(fractions), draw, side="right")), len(PARTS) - 1)]


def _split_of(posters: PosterSet, part_of: dict[str, str], seed: int, fractions: tuple[float, float, float],
              min_count: int, grouping: str, groups: dict[str, str]) -> Split:
    """The split that puts each poster in `part_of`'s part, with the vocabulary its training part gives."""
    items: list[Poster] = posters.posters
    part_items = {part: [p for p in items if part_of.get(p.id) == part] for part in PARTS}
    train_counts = Counter(g for p in part_items["train"] for g in p.genres)
    all_genres = sorted(posters.genre_counts())
    genres = sorted(g for g in all_genres if train_counts[g] >= min_count)
    dropped = {g: train_counts[g] for g in all_genres if train_counts[g] < min_count}
    if not genres:
        raise DataError(f"{posters.name}: no genre has {min_count} training posters; lower MIN_COUNT")

    vocab = set(genres)
    left_out = dict(posters.skipped)
    parts, counts = {}, {}
    for part, chosen in part_items.items():
        kept = [p for p in chosen if vocab & set(p.genres)]
        if len(kept) < len(chosen):
            left_out["only dropped genres"] = left_out.get("only dropped genres", 0) + len(chosen) - len(kept)
        parts[part] = [p.id for p in kept]
        counts[part] = dict(sorted(Counter(g for p in kept for g in p.genres).items()))
    return Split(posters.name, seed, fractions, min_count, genres, dropped, left_out, parts, counts, _labels(posters),
                 grouping, groups)
