"""The heads' side of training with another data set (posters/union.py): a feature file's posters plus another's."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import DataError
from extract.features import Features, fingerprint_differences
from posters.union import added_posters


@dataclass
class Union:
    """The other data set's features (same embedding) and both sets' titles, to add its posters to any
    choice of the target's training rows: the split's training part, or a cross-validation fold."""
    target: Features
    source: Features
    target_titles: dict[str, tuple[str, ...]]
    source_titles: dict[str, tuple[str, ...]]

    def __post_init__(self) -> None:
        embedding = [{k: v for k, v in f.fingerprint().items() if k != "genres"} for f in (self.source, self.target)]
        if differences := fingerprint_differences(*embedding):
            raise DataError(f"{self.source.attrs['dataset']} and {self.target.attrs['dataset']} features come from "
                            f"different embeddings ({differences}); extract both with the same BACKBONE")

    def added(self, held: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        """The source posters sharing no title with the target rows `held` (a boolean mask: those a model
        is validated or scored on): (X, Y with UNKNOWN for unlabelled genres, what was done)."""
        parts = np.where(held, "held", "train")
        keep, labels, report = added_posters(list(self.target.ids), list(parts), self.target.genres,
                                             list(self.source.ids), self.source.Y, self.source.genres,
                                             self.target_titles, self.source_titles, self.source.attrs["dataset"])
        return self.source.X[keep], labels, report

    def training_set(self) -> tuple[np.ndarray, np.ndarray, dict]:
        """The split's training part plus the added posters: (X, Y, what was done)."""
        X_added, Y_added, report = self.added(self.target.parts != "train")
        X_train, Y_train = self.target.part("train")
        return np.vstack([X_train, X_added]), np.vstack([Y_train.astype(np.int8), Y_added]), report
