"""Train on two data sets of the same kind of image at once: a data set's training posters plus another
set's posters, its genres mapped onto the first set's vocabulary (make heads UNION=..., and fine-tuning's
--union-data).

Anime posters (MyAnimeList genres) and AniList covers share most genres by name; AniList's Thriller is
MyAnimeList's Suspense (SAME_GENRE). A genre of the target vocabulary that the other set does not label
(Avant Garde, Award Winning, Gourmet ... for AniList covers) is unknown for the added posters, marked -1:
the heads (that genre's classifier) and the training loss leave them out instead of counting them as negatives.

The same anime, or another season or movie of its franchise, must never be on both sides of a split. The two
sets' titles are grouped into franchises together (posters.franchises); an added poster of a franchise that one
of the target's validation or test posters belongs to is left out, so the model is scored on the target's own
validation and test parts exactly like the models trained on it alone.
"""
from __future__ import annotations

import numpy as np

from postergenre.posters.franchises import franchise_groups


# Genres of different names that mean the same, either way round.
SAME_GENRE = {"Thriller": "Suspense"}
UNKNOWN = -1  # a genre the added poster's data set does not label


def genre_map(source: list[str], target: list[str]) -> dict[str, str]:
    """Source genre -> the target genre it means: the same name, or a pair of SAME_GENRE."""
    same = {**SAME_GENRE, **{b: a for a, b in SAME_GENRE.items()}}
    return {g: g if g in target else same[g] for g in source if g in target or same.get(g) in target}


def joint_groups(target_titles: dict[str, tuple[str, ...]],
                 source_titles: dict[str, tuple[str, ...]]) -> tuple[dict[str, str], dict[str, str]]:
    """Each set's poster id -> its franchise group, the two sets' titles grouped together (so that a group names
    the same franchise on both sides)."""
    joint = franchise_groups({**{f"t{pid}": t for pid, t in target_titles.items()},
                              **{f"s{pid}": t for pid, t in source_titles.items()}})
    return ({pid: joint[f"t{pid}"] for pid in target_titles}, {pid: joint[f"s{pid}"] for pid in source_titles})


def added_posters(target_ids: list[str], target_parts: list[str], target_genres: list[str],
                  source_ids: list[str], source_labels: np.ndarray, source_genres: list[str],
                  target_groups: dict[str, str], source_groups: dict[str, str],
                  source_name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Which source posters join the target's training posters (those of no franchise that a target poster
    whose part is not "train" belongs to: one a model is validated or scored on; `*_groups` from joint_groups),
    their labels on the target's genres (UNKNOWN where the source does not label a genre), and what was done:
    (keep mask, labels, report)."""
    held = {target_groups[str(pid)] for pid, part in zip(target_ids, target_parts)
            if part != "train" and str(pid) in target_groups}
    everywhere = {target_groups[str(pid)] for pid in target_ids if str(pid) in target_groups}
    groups = [source_groups.get(str(pid)) for pid in source_ids]
    keep = np.array([group not in held for group in groups], dtype=bool)

    mapping = genre_map(source_genres, target_genres)
    labels = np.full((len(source_ids), len(target_genres)), UNKNOWN, np.int8)
    labels[:, [target_genres.index(t) for t in mapping.values()]] = 0
    for s, t in mapping.items():
        labels[:, target_genres.index(t)] |= source_labels[:, source_genres.index(s)].astype(np.int8)
    report = {"dataset": source_name, "added": int(keep.sum()),
              "matched": int(sum(group in everywhere for group in groups)), "left_out": int((~keep).sum()),
              "renamed": {s: t for s, t in mapping.items() if s != t},
              "masked": [g for g in target_genres if g not in mapping.values()],
              "unmapped": [g for g in source_genres if g not in mapping]}
    return keep, labels[keep], report


def describe_added(report: dict, training_posters: int) -> str:
    """What a union added to a training part of `training_posters` posters in all, as the commands print it."""
    return (f"{training_posters} training posters, {report['added']} of them from {report['dataset']} "
            f"({report['left_out']} left out, of the franchise of a validation or test poster); "
            f"genres not labelled there: {', '.join(report['masked']) or 'none'}")
