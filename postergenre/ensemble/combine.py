"""Averaging the scores of a data set's models, members chosen on validation (`make ensemble`).

Greedy ensemble selection (Caruana et al. 2004): start from the model with the best validation mAP,
then keep adding whichever model (again, if it helps) raises the validation mAP of the average, until
none does. The weights are how often each model was added. A cross-validated head (`make heads CV=...`)
takes part in the selection with its out-of-fold scores of the validation posters, from heads fitted
without them: its plain validation scores come from parameters tuned on those very posters, which
flatters it. Networks have no folds and take part with their validation scores.

Models are confident to different degrees (a strongly regularised logistic head barely leaves its
priors), so each model's logits are first standardised per genre, with means and spreads taken on
the validation part. The average is then mapped back onto the first member's per-genre logit scale,
so that one global threshold still fits; per genre the map keeps the order, so AP is unchanged.

It reads the scores every model left beside its results (results/<dataset>/<model>.scores.npz), so
no model runs again; the test part is only scored, never looked at to choose.

The ensemble's validation mAP is that of a selection made on those very posters, so it flatters the
ensemble (anime: 0.357 on validation, 0.250 on test). What chooses between it and single models is
therefore its out-of-fold validation mAP: each fold of the validation part scored by a selection made
on the other folds (`out_of_fold_map`), on all the validation posters at once, as a model's own
validation mAP is.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from postergenre.core.errors import DataError
from postergenre.core.runspec import ENSEMBLE
from postergenre.evaluation.metrics import evaluate, macro_map
from postergenre.evaluation.results import (OUT_OF_FOLD, align_scores, read_results, read_scores, scores_path,
                                            write_result, write_scores)
from postergenre.posters.data import read_posters
from postergenre.posters.franchises import poster_groups
from postergenre.posters.split import stratified_folds

MAX_ROUNDS = 20
SELECTION_FOLDS = 5


def select(y_val: np.ndarray, scores_val: dict[str, np.ndarray], max_rounds: int = MAX_ROUNDS) -> dict[str, int]:
    """model -> how many times greedy selection on validation mAP added it."""
    def val_map(total: np.ndarray, count: int) -> float:
        return macro_map(y_val, total / count)

    chosen: Counter[str] = Counter()
    total, best = np.zeros_like(next(iter(scores_val.values()))), -1.0
    for _ in range(max_rounds):
        count = sum(chosen.values()) + 1
        name, score = max(((name, val_map(total + s, count)) for name, s in scores_val.items()), key=lambda c: c[1])
        if score <= best:
            break
        chosen[name] += 1
        total, best = total + scores_val[name], score
    return dict(chosen)


def out_of_fold_map(y_val: np.ndarray, val_scores: dict[str, np.ndarray], folds: int = SELECTION_FOLDS,
                    seed: int = 0, groups: np.ndarray | None = None) -> float:
    """Validation mAP of the ensemble's predictions, each fold's made by a Combination fitted (members,
    weights and scales) on the other folds only; `val_scores` are those selection chooses on (`selection_scores`);
    `groups` (each poster's franchise) keeps a franchise in one fold."""
    predictions = np.zeros_like(next(iter(val_scores.values())), dtype=np.float64)
    for held in stratified_folds(y_val, (1 / folds,) * folds, seed, groups):
        rest = np.setdiff1d(np.arange(len(y_val)), held)
        combination = Combination.fit(y_val[rest], {m: s[rest] for m, s in val_scores.items()})
        predictions[held] = combination({m: s[held] for m, s in val_scores.items()})
    return macro_map(y_val, predictions)


def ensemble(results_dir: Path | str, dataset: str, name: str = ENSEMBLE) -> dict:
    """Select, score and save the ensemble of `dataset`'s models that left scores; returns the saved result."""
    results = {r["model"]: r for r in read_results(results_dir).get(dataset, [])
               if r["kind"] not in ("baseline", "ensemble")}
    saved = {model: read_scores(path) for model in results
             if (path := scores_path(results_dir, dataset, model)).exists()}
    if len(saved) < 2:
        raise DataError(f"{results_dir}/{dataset}: an ensemble needs the scores of two models or more, found "
                        f"{len(saved)} (run make heads, finetune or cnn first)")
    some_member = results[next(iter(saved))]
    genres = [g["genre"] for g in some_member["val"]["per_genre"]]
    if any([g["genre"] for g in results[m]["val"]["per_genre"]] != genres for m in saved):
        raise DataError(f"{results_dir}/{dataset}: the models were trained on different genre lists")
    aligned = {part: align_scores(saved, part) for part in ("val", "test")}
    (val_ids, y_val, val_scores), (test_ids, y_test, test_scores) = aligned["val"], aligned["test"]
    selection = selection_scores(saved, val_ids)
    combination = Combination.fit(y_val, val_scores, selection)
    ensemble_val, ensemble_test = combination(val_scores), combination(test_scores)
    result = evaluate(y_val, ensemble_val, y_test, ensemble_test, genres)
    write_scores(results_dir, dataset, name,
                 {"val": (val_ids, y_val, ensemble_val), "test": (test_ids, y_test, ensemble_test)})
    record = {"kind": "ensemble", "members": combination.weights, "data": some_member["data"],
              "combination": combination.to_dict(),
              "selection": {"folds": SELECTION_FOLDS,
                            "mAP_macro": out_of_fold_map(y_val, selection, groups=groups_of(some_member, val_ids)),
                            "out_of_fold_members": sorted(m for m in saved if OUT_OF_FOLD in saved[m])}, **result}
    write_result(results_dir, dataset, name, record)
    return record


def groups_of(result: dict, ids: np.ndarray) -> np.ndarray | None:
    """The franchise group of each of these posters, from the titles of the result's data folder (none where the
    folder is not here): the ensemble's selection folds keep a franchise together, as the heads' folds do."""
    if not Path(result.get("data") or "").is_dir():
        return None
    groups = poster_groups(read_posters(result["data"]).posters)
    return np.array([groups.get(str(pid), f"#{pid}") for pid in ids])


def selection_scores(saved: dict[str, dict], val_ids: np.ndarray) -> dict[str, np.ndarray]:
    """model -> the validation scores selection chooses on, in the order of `val_ids`: a cross-validated
    head's out-of-fold ones, another model's own."""
    chosen_on = {m: {"val": scores.get(OUT_OF_FOLD, scores["val"])} for m, scores in saved.items()}
    ids, _, aligned = align_scores(chosen_on, "val")
    if not np.array_equal(ids, val_ids):
        raise DataError("the out-of-fold scores cover other validation posters than the models' own scores; "
                        "run make heads again")
    return aligned


@dataclass
class Combination:
    """How an ensemble averages its members' scores: the weights, and the per-genre logit scales taken on
    the validation part (each member's, the average's own, and the first member's, whose scale the average
    is mapped back onto)."""
    weights: dict[str, int]
    scales: dict[str, "PerGenreScale"]
    own: "PerGenreScale"

    @classmethod
    def fit(cls, y_val: np.ndarray, val_scores: dict[str, np.ndarray],
            selection: dict[str, np.ndarray] | None = None) -> "Combination":
        """Members and weights chosen on the validation mAP (`select`) of the `selection` scores (default
        `val_scores`), and the scales of the members' validation scores, which the ensemble applies to."""
        val_logits = {m: _logits(s) for m, s in val_scores.items()}
        scales = {m: PerGenreScale.of(logits) for m, logits in val_logits.items()}
        selection_logits = val_logits if selection is None else {m: _logits(s) for m, s in selection.items()}
        weights = select(y_val, {m: PerGenreScale.of(logits).standardise(logits)
                                 for m, logits in selection_logits.items()})
        mean_val = sum(w * scales[m].standardise(val_logits[m]) for m, w in weights.items()) / sum(weights.values())
        return cls(weights, {m: scales[m] for m in weights}, PerGenreScale.of(mean_val))

    def __call__(self, scores: dict[str, np.ndarray]) -> np.ndarray:
        """The ensemble's probabilities from its members' (posters, genres) probabilities."""
        mean = sum(w * self.scales[m].standardise(_logits(scores[m])) for m, w in self.weights.items())
        first = self.scales[next(iter(self.weights))]
        return expit(first.restore(self.own.standardise(mean / sum(self.weights.values()))))

    def to_dict(self) -> dict:
        return {"weights": self.weights, "scales": {m: scale.to_dict() for m, scale in self.scales.items()},
                "own": self.own.to_dict()}

    @classmethod
    def from_dict(cls, saved: dict) -> "Combination":
        return cls(dict(saved["weights"]), {m: PerGenreScale(**scale) for m, scale in saved["scales"].items()},
                   PerGenreScale(**saved["own"]))


@dataclass
class PerGenreScale:
    """Each genre's mean and spread of some validation logits, to move logits onto and off a common scale."""
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of(cls, val_logits: np.ndarray) -> "PerGenreScale":
        return cls(val_logits.mean(axis=0), val_logits.std(axis=0) + 1e-6)

    def __post_init__(self) -> None:
        self.mean, self.std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)

    def standardise(self, logits: np.ndarray) -> np.ndarray:
        return (logits - self.mean) / self.std

    def restore(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def _logits(p: np.ndarray) -> np.ndarray:
    """Log-odds, with probabilities of exactly 0 or 1 (ML-kNN gives them) kept finite."""
    return logit(np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6))
