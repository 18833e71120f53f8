"""Which posters' genres look wrong: cleanlab's multi-label label-issue finder on out-of-fold probabilities.

Each poster is scored by a model that did not see it (out-of-fold), so a label the model cannot learn from the
other posters stands out. cleanlab gives each poster a label quality (0 to 1, lower is more suspect: the per-genre
self-confidences, aggregated with more weight on the worst genres) and, by confident learning, the genres that
look mislabelled: a given genre the poster seems not to have (suspected wrong), or one it seems to have and was
not given (suspected missing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from postergenre.core.errors import DataError


@dataclass(frozen=True)
class LabelAudit:
    quality: np.ndarray  # (posters,) cleanlab's label quality; lower is more suspect
    wrong: np.ndarray  # (posters, genres) bool: given, and suspected wrong
    missing: np.ndarray  # (posters, genres) bool: not given, and suspected missing
    constant: np.ndarray  # (genres,) bool: on every poster or on none, so not audited (never suspected)

    @property
    def flagged(self) -> int:
        """How many posters have a genre that looks mislabelled."""
        return int((self.wrong | self.missing).any(axis=1).sum())

    @property
    def order(self) -> np.ndarray:
        """Poster indices, most suspect first (ties by index, so the order is reproducible)."""
        return np.lexsort((np.arange(len(self.quality)), self.quality))


def audit_labels(y: np.ndarray, probabilities: np.ndarray) -> LabelAudit:
    """Audit (posters, genres) 0/1 labels against out-of-fold probabilities of the same shape. A genre on every
    poster or on none has nothing to compare (cleanlab refuses a class with one value): it is left out and listed
    in `constant`; fewer than two genres that vary cannot be audited at all, which is one line."""
    from cleanlab.multilabel_classification.filter import find_multilabel_issues_per_class
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    y = np.asarray(y).astype(bool)
    constant = y.all(axis=0) | ~y.any(axis=0)
    if (~constant).sum() < 2:
        raise DataError(f"only {int((~constant).sum())} genre is on some posters and not others: nothing to audit")
    varied = y[:, ~constant]
    probabilities = np.clip(np.asarray(probabilities, np.float64), 0, 1)[:, ~constant]
    labels = [list(np.flatnonzero(row)) for row in varied]
    quality = get_label_quality_scores(labels, probabilities)
    # one process: cleanlab's worker pool reads a global that only a forked worker has
    issues = np.zeros(y.shape, bool)
    issues[:, ~constant] = np.asarray(find_multilabel_issues_per_class(labels, probabilities, n_jobs=1), bool)
    return LabelAudit(np.asarray(quality), issues & y, issues & ~y, constant)
