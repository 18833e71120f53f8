"""Franchise groups: the posters of one franchise (its seasons, sequels, movies and specials) share a group, so
that a split can keep each franchise in one part and test figures speak of anime the model has never seen.

The rule reads titles only, and is deterministic:
1. Each title is cut to its stem (`franchise_stem`): case and accents folded, the subtitle after ": ", " - ",
   " ~" or "(" cut, punctuation removed, and season, part, movie, OVA, special and number markers removed from
   its end ("Shingeki no Kyojin Season 3 Part 2" and "Shingeki no Kyojin: The Final Season" both give
   "shingeki no kyojin").
2. Two posters join when one of their stems is the same; when two stems' character 2-4-gram TF-IDF vectors have
   a cosine of at least `SIMILAR` ("major s2" and "major"); or when one stem starts with the whole words of
   another of at least `MIN_PREFIX` characters ("haikyuu" and "haikyuu to the top").
3. Groups are the connected components of those joins. A poster without a title is a group of its own.

A data set may name groups itself in a `group` column (posters.data.Poster.group); a poster's named group wins
over the rule. docs/evaluation.md shows what the rule groups on the real data sets.
"""
from __future__ import annotations

import re
import unicodedata

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.feature_extraction.text import TfidfVectorizer

from postergenre.posters.data import Poster

SIMILAR = 0.7  # stems' character n-gram cosine at which two franchises are one
MIN_PREFIX = 5  # characters of the shortest stem that another stem may extend
_CHUNK = 1000  # stems compared at once: bounds the similarity matrix's memory for tens of thousands of titles

_LEADING = {"gekijouban", "gekijoban", "eiga", "shin", "zoku"}
_TRAILING = re.compile(r"season|seasons|part|cour|movie|movies|film|the|gekijouban|ova|ovas|ona|onas|oad|special|"
                       r"specials|tv|final|recap|picture|drama|shin|zoku|kan|hen|\d+(st|nd|rd|th)?|s\d+|"
                       r"[ivx]+|ni|san|shi|yon|go|roku|shichi|nana|hachi|kyuu|juu")


def normalise_title(title: str) -> str:
    """Case, accents' compatibility forms and punctuation removed: 'Re:Zero' and 're zero' are one title."""
    return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", title).casefold()).split())


def franchise_stem(title: str) -> str:
    """The title with its subtitle and its season, part, movie and number markers removed (step 1 above)."""
    words = normalise_title(re.split(r": | - | ~|\(", unicodedata.normalize("NFKC", title))[0]).split()
    while len(words) > 1 and words[0] in _LEADING:
        words.pop(0)
    while len(words) > 1 and _TRAILING.fullmatch(words[-1]):
        words.pop()
    return " ".join(words)


def _similar_pairs(stems: list[str], similar: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs of stems whose character 2-4-gram TF-IDF cosine is at least `similar`."""
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit_transform(stems)
    rows, cols = [], []
    for start in range(0, len(stems), _CHUNK):
        cosine = (vectors[start:start + _CHUNK] @ vectors.T).tocoo()
        keep = cosine.data >= similar
        rows.append(cosine.row[keep] + start)
        cols.append(cosine.col[keep])
    return np.concatenate(rows), np.concatenate(cols)


def _prefix_pairs(stems: list[str]) -> tuple[list[int], list[int]]:
    """Index pairs (a, b) where stem b begins with the whole words of stem a, of at least MIN_PREFIX characters."""
    index = {stem: k for k, stem in enumerate(stems)}
    words = [stem.split() for stem in stems]
    pairs = [(index[prefix], k) for k in range(len(stems)) for n in range(1, len(words[k]))
             if len(prefix := " ".join(words[k][:n])) >= MIN_PREFIX and prefix in index]
    return [a for a, _ in pairs], [b for _, b in pairs]


def franchise_groups(titles: dict[str, tuple[str, ...]], named: dict[str, str] | None = None,
                     similar: float = SIMILAR) -> dict[str, str]:
    """Poster id -> its franchise group: the group's shortest stem (a poster of no title: "#" and its id; a poster
    `named` gives a group: "=" and that name, whatever its titles)."""
    named = named or {}
    ruled = sorted(pid for pid in titles if pid not in named)
    poster_stems = {pid: sorted({s for t in titles[pid] if (s := franchise_stem(t))}) for pid in ruled}
    stems = sorted({s for found in poster_stems.values() for s in found})
    index = {s: k for k, s in enumerate(stems)}
    similar_rows, similar_cols = _similar_pairs(stems, similar) if stems else (np.zeros(0, int), np.zeros(0, int))
    prefix_rows, prefix_cols = _prefix_pairs(stems)
    # nodes: the stems, then the posters; a poster joins each of its stems
    poster_rows = [len(stems) + k for k, pid in enumerate(ruled) for _ in poster_stems[pid]]
    poster_cols = [index[s] for pid in ruled for s in poster_stems[pid]]
    rows = np.concatenate([similar_rows, prefix_rows, poster_rows]).astype(int)
    cols = np.concatenate([similar_cols, prefix_cols, poster_cols]).astype(int)
    size = len(stems) + len(ruled)
    _, component = connected_components(coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(size, size)),
                                        directed=False)
    names: dict[int, str] = {}
    for k, stem in enumerate(stems):  # the group's shortest stem names it (ties: the first alphabetically)
        current = names.get(component[k])
        if current is None or len(stem) < len(current):
            names[component[k]] = stem
    groups = {pid: names.get(component[len(stems) + k], f"#{pid}") for k, pid in enumerate(ruled)}
    return {**groups, **{pid: f"={name}" for pid, name in named.items()}}


def poster_groups(posters: list[Poster]) -> dict[str, str]:
    """Poster id -> franchise group, by their titles, and by their `group` column where it names one."""
    return franchise_groups({p.id: p.titles for p in posters}, {p.id: p.group for p in posters if p.group})
