"""The heads' side of training with another data set (posters/union.py): a feature file's posters plus another's."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from postergenre.core.errors import DataError
from postergenre.extract.features import Features, fingerprint_differences, load_features
from postergenre.posters.data import read_titles
from postergenre.posters.union import added_posters, joint_groups

# Union.added: (the target rows a model is scored on) -> (X, Y, report) of the source posters it may add.
Added = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, dict]]


def plus_added(X: np.ndarray, Y: np.ndarray, added: Added | None,
               held: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """The rows X, Y to fit on, followed by the posters `added(held)` gives (none without `added`), and what
    was added."""
    if added is None:
        return X, Y, None
    X_added, Y_added, report = added(held)
    return np.vstack([X, X_added]), np.vstack([Y.astype(np.int8), Y_added]), report


@dataclass
class Union:
    """The other data set's features (same embedding) and both sets' titles, to add its posters to any
    choice of the target's training rows: the split's training part, or a cross-validation fold."""
    target: Features
    source: Features
    target_titles: dict[str, tuple[str, ...]]
    source_titles: dict[str, tuple[str, ...]]
    groups: tuple[dict[str, str], dict[str, str]] = field(init=False)  # both sets' franchises (joint_groups)

    @classmethod
    def with_file(cls, target: Features, path: str) -> "Union":
        """`target` with the posters of the feature file at `path`, titles read from both data folders."""
        source = load_features(path)
        return cls(target, source, read_titles(target.attrs["data"]), read_titles(source.attrs["data"]))

    def __post_init__(self) -> None:
        embedding = [{k: v for k, v in f.fingerprint().items() if k != "genres"} for f in (self.source, self.target)]
        if differences := fingerprint_differences(*embedding):
            raise DataError(f"{self.source.attrs['dataset']} and {self.target.attrs['dataset']} features come from "
                            f"different embeddings ({differences}); extract both with the same BACKBONE")
        self.groups = joint_groups(self.target_titles, self.source_titles)

    def added(self, held: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """The source posters of no franchise of the target rows `held` (a boolean mask: those a model is
        validated or scored on): (X, Y with UNKNOWN for unlabelled genres, what was done)."""
        parts = np.where(held, "held", "train")
        keep, labels, report = added_posters(list(self.target.ids), list(parts), self.target.genres,
                                             list(self.source.ids), self.source.Y, self.source.genres,
                                             *self.groups, self.source.attrs["dataset"])
        return self.source.X[keep], labels, report

    def everything(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """Every labelled poster of the target plus every source poster: what a final model learns from."""
        return plus_added(self.target.X, self.target.Y, self.added, np.zeros(len(self.target.ids), dtype=bool))

    def training_set(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """The split's training part plus the added posters: (X, Y, what was done)."""
        return plus_added(*self.target.part("train"), self.added, self.target.parts != "train")
