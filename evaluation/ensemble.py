"""python -m evaluation.ensemble: average the scores of a data set's models, members chosen on validation.

Greedy ensemble selection (Caruana et al. 2004): start from the model with the best validation mAP,
then keep adding whichever model (again, if it helps) raises the validation mAP of the average, until
none does. The weights are how often each model was added.

Models are confident to different degrees (a strongly regularised logistic head barely leaves its
priors), so each model's logits are first standardised per genre, with means and spreads taken on
the validation part. The average is then mapped back onto the first member's per-genre logit scale,
so that one global threshold still fits; per genre the map keeps the order, so AP is unchanged.

It reads the scores every model left beside its results (results/<dataset>/<model>.scores.npz), so
no model runs again; the test part is only scored, never looked at to choose.
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from scipy.special import expit, logit

from core import cli
from evaluation.metrics import evaluate, macro_map
from evaluation.results import align_scores, read_results, read_scores, write_result, write_scores
from posters.data import DataError

MAX_ROUNDS = 20


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


def ensemble(results_dir: Path | str, dataset: str, name: str = "ensemble") -> dict:
    """Select, score and save the ensemble of `dataset`'s models that left scores; returns the saved result."""
    results = {r["model"]: r for r in read_results(results_dir).get(dataset, [])
               if r["kind"] not in ("baseline", "ensemble")}
    saved = {model: read_scores(path) for model in results
             if (path := Path(results_dir) / dataset / f"{model}.scores.npz").exists()}
    if len(saved) < 2:
        raise DataError(f"{results_dir}/{dataset}: an ensemble needs the scores of two models or more, found "
                        f"{len(saved)} (run make heads, finetune or cnn first)")
    some_member = results[next(iter(saved))]
    genres = [g["genre"] for g in some_member["val"]["per_genre"]]
    if any([g["genre"] for g in results[m]["val"]["per_genre"]] != genres for m in saved):
        raise DataError(f"{results_dir}/{dataset}: the models were trained on different genre lists")
    aligned = {part: align_scores(saved, part) for part in ("val", "test")}
    (val_ids, y_val, val_scores), (test_ids, y_test, test_scores) = aligned["val"], aligned["test"]
    val_logits, test_logits = ({m: _logits(s) for m, s in scores.items()} for scores in (val_scores, test_scores))
    scales = {m: _PerGenreScale(logits) for m, logits in val_logits.items()}
    z_val = {m: scales[m].standardise(logits) for m, logits in val_logits.items()}
    z_test = {m: scales[m].standardise(logits) for m, logits in test_logits.items()}
    weights = select(y_val, z_val)
    n = sum(weights.values())
    mean_val = sum(w * z_val[m] for m, w in weights.items()) / n
    mean_test = sum(w * z_test[m] for m, w in weights.items()) / n
    own, first = _PerGenreScale(mean_val), scales[next(iter(weights))]
    ensemble_val = expit(first.restore(own.standardise(mean_val)))
    ensemble_test = expit(first.restore(own.standardise(mean_test)))
    result = evaluate(y_val, ensemble_val, y_test, ensemble_test, genres)
    write_scores(results_dir, dataset, name,
                 {"val": (val_ids, y_val, ensemble_val), "test": (test_ids, y_test, ensemble_test)})
    record = {"kind": "ensemble", "members": weights, "data": some_member["data"], **result}
    write_result(results_dir, dataset, name, record)
    return record


def describe(members: dict[str, int]) -> str:
    """An ensemble's members as the report shows them: "2x model-a, 1x model-b"."""
    return ", ".join(f"{weight}x {model}" for model, weight in members.items())


class _PerGenreScale:
    """Each genre's mean and spread of some validation logits, to move logits onto and off a common scale."""

    def __init__(self, val_logits: np.ndarray):
        self.mean, self.std = val_logits.mean(axis=0), val_logits.std(axis=0) + 1e-6

    def standardise(self, logits: np.ndarray) -> np.ndarray:
        return (logits - self.mean) / self.std

    def restore(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def _logits(p: np.ndarray) -> np.ndarray:
    """Log-odds, with probabilities of exactly 0 or 1 (ML-kNN gives them) kept finite."""
    return logit(np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6))


def main() -> None:
    parser = cli.parser("python -m evaluation.ensemble", __doc__)
    parser.add_argument("--dataset", required=True, help="the data set's name, e.g. anime-posters")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    args = parser.parse_args()
    cli.run(lambda: ensemble_command(args))


def ensemble_command(args: argparse.Namespace) -> None:
    result = ensemble(args.results_dir, args.dataset)
    test = result["test"]["overall"]
    print(f"{args.dataset} ensemble {result['members']}: val mAP {result['val']['overall']['mAP_macro']:.3f}, "
          f"test mAP {test['mAP_macro']:.3f}, micro-F1 {test['f1_micro']:.3f}")


if __name__ == "__main__":
    main()
