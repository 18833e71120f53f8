"""How much a split that is not grouped by franchise flatters: test figures on the posters whose franchise has a
training poster (a sequel, season or movie of an anime the model learnt from) and on those of a new franchise.

The report gives them for an ungrouped split, the bench for both; posters/franchises.py's rule says which posters
are of one franchise.
"""
from __future__ import annotations

import numpy as np

from postergenre.evaluation.intervals import figure_intervals
from postergenre.evaluation.metrics import macro_map
from postergenre.evaluation.sets import predict_sets


def seen_franchise(test_ids: np.ndarray, train_ids: np.ndarray, groups: dict[str, str]) -> np.ndarray:
    """For each test poster: whether a training poster is of its franchise (`groups`: poster id -> group)."""
    trained = {groups.get(str(pid), f"#{pid}") for pid in train_ids}
    return np.array([groups.get(str(pid), f"#{pid}") in trained for pid in test_ids], dtype=bool)


def seen_and_new(y: np.ndarray, scores: np.ndarray, thresholds: np.ndarray, seen: np.ndarray) -> dict[str, dict]:
    """Test mAP (macro) with its 95% interval on the posters of a franchise seen in training and on those of a
    new one: {"seen": {"posters", "mAP_macro", "interval"}, "new": {...}} (a group with no poster: absent)."""
    found = {}
    for name, rows in (("seen", seen), ("new", ~seen)):
        if rows.any():
            low_high = figure_intervals(y[rows], scores[rows], predict_sets(scores[rows], thresholds))["mAP_macro"]
            found[name] = {"posters": int(rows.sum()), "mAP_macro": macro_map(y[rows], scores[rows]),
                           "interval": low_high}
    return found


def seen_and_new_text(found: dict[str, dict]) -> str:
    """`seen_and_new`'s figures as a sentence's end: "0.41 (0.37-0.45) on 65 posters of a seen franchise, ..."."""
    return "; ".join(f"{f['mAP_macro']:.3f} ({f['interval'][0]:.3f}-{f['interval'][1]:.3f}) on {f['posters']} "
                     f"posters of a {'franchise seen in training' if name == 'seen' else 'new franchise'}"
                     for name, f in found.items())
