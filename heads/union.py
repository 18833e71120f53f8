"""The heads' union training set: a feature file's training posters plus another file's (posters/union.py)."""
from __future__ import annotations

import numpy as np

from core.errors import DataError
from extract.features import Features, fingerprint_differences
from posters.union import added_posters


def union_training_set(target: Features, source: Features, target_titles: dict[str, tuple[str, ...]],
                       source_titles: dict[str, tuple[str, ...]]) -> tuple[np.ndarray, np.ndarray, dict]:
    """The target's training posters and the source's posters (all parts) that share no title with the
    target's validation or test posters: (X, Y with UNKNOWN for unlabelled genres, what was done)."""
    embedding = [{k: v for k, v in f.fingerprint().items() if k != "genres"} for f in (source, target)]
    if differences := fingerprint_differences(*embedding):
        raise DataError(f"{source.attrs['dataset']} and {target.attrs['dataset']} features come from different "
                        f"embeddings ({differences}); extract both with the same BACKBONE")
    keep, labels, report = added_posters(list(target.ids), list(target.parts), target.genres, list(source.ids),
                                         source.Y, source.genres, target_titles, source_titles,
                                         source.attrs["dataset"])
    X_train, Y_train = target.part("train")
    return np.vstack([X_train, source.X[keep]]), np.vstack([Y_train.astype(np.int8), labels]), report
