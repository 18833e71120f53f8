"""python -m heads.final --features FILE.h5 [--union OTHER.h5]: the data set's final model, refit on every
labelled poster.

`make heads` fits each head on the training part (70% of the posters) so that the validation part
can choose and the test part can score. The model users run should learn from all of them: this
takes the head and parameters the evaluation chose (cross-validated mAP when `make heads CV=...`
ran for every head, else validation mAP), refits it on every labelled poster, and saves it as
models/<dataset>-final.skops with a model card (models/<dataset>-final.md) beside it.

With `--union OTHER.h5` (the file `make heads UNION=...` used), the logistic head trained with the other
data set's posters too competes as well, and when chosen is refit on every poster of both.

Its threshold comes from out-of-fold predictions (the same parameters fitted on 4/5 of the posters,
predicting the other 1/5, five times), never from posters the model was fitted on. The final model
has seen the test part, so it has no test figures of its own; the card gives the evaluated model's.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score

from core import cli
from core.errors import DataError
from core.progress import progress
from evaluation.card import figures_lines, genres_lines, thresholds_text
from evaluation.compare import picked
from evaluation.metrics import choose_thresholds, macro_map, predict_sets
from evaluation.results import read_results
from extract.features import Features, load_features
from heads.estimators import HEADS, UNION_LOGISTIC
from heads.train import fit_quietly, save_head
from heads.union import Added, Union, plus_added
from modelfiles import final_model_path
from posters.files import write_text_atomic
from posters.split import stratified_folds
from posters.union import describe


def choose(heads: list[dict]) -> tuple[dict, str]:
    """The head result the evaluation picks, and by what."""
    if all("cv" in r for r in heads):
        return max(heads, key=lambda r: r["cv"]["mAP_macro"]["mean"]), "cross-validated mAP"
    return max(heads, key=lambda r: r["val"]["overall"]["mAP_macro"]), "validation mAP"


def out_of_fold_scores(estimator, X: np.ndarray, Y: np.ndarray, folds: int, seed: int,
                       added: Added | None = None) -> np.ndarray:
    """Each poster's scores from a model fitted on the other folds (plus what `added` adds for that fold)."""
    scores = np.zeros(Y.shape, np.float64)
    for held in progress(stratified_folds(Y, (1 / folds,) * folds, seed), desc="out-of-fold", unit="fold"):
        rest = np.setdiff1d(np.arange(len(Y)), held)
        X_fit, Y_fit = plus_added(X[rest], Y[rest], added, np.isin(np.arange(len(Y)), held))
        scores[held] = fit_quietly(estimator, X_fit, Y_fit).predict_proba(X[held])
    return scores


def fit_final(features: Features, results_dir: Path | str, models_dir: Path | str, folds: int = 5,
              seed: int = 0, union: Union | None = None) -> Path:
    """Refit the chosen head on every labelled poster of `features` (and of `union`'s other data set, when
    the head trained with it is chosen); returns the saved model's path."""
    dataset = features.attrs["dataset"]
    results = read_results(results_dir).get(dataset, [])
    other = union.source.attrs["dataset"] if union else None
    heads = [r for r in results if r["kind"] == "head" and r["backbone"] == features.attrs["backbone"]
             and r.get("union", {}).get("dataset") in (None, other)]
    if not heads:
        raise DataError(f"{results_dir}/{dataset}: no head results on {features.attrs['backbone']} features; "
                        f"run `make heads` first")
    source, rule = choose(heads)
    unified = "union" in source
    estimator = clone(UNION_LOGISTIC[0] if unified else HEADS[source["head"]][0]).set_params(**source["params"])
    per_genre = source["thresholds"]["per_genre"]
    oof = out_of_fold_scores(estimator, features.X, features.Y, folds, seed, union.added if unified else None)
    thresholds = choose_thresholds(features.Y, oof, per_genre)
    oof_figures = {"mAP_macro": macro_map(features.Y, oof),
                   "f1_micro": float(f1_score(features.Y, predict_sets(oof, thresholds), average="micro",
                                              zero_division=0))}
    X, Y, report = union.everything() if unified else (features.X, features.Y, None)
    model = fit_quietly(estimator, X, Y)
    path = final_model_path(models_dir, dataset)
    save_head(path, model, features, source["params"], thresholds.tolist(),
              final={"source": source["model"], "chosen_by": rule, "posters": len(Y), "folds": folds,
                     "out_of_fold": oof_figures, **({"union": report} if report else {})})
    if report:
        print(f"{dataset}: {describe(report, len(Y))}")
    card = model_card(features, heads, source, rule, picked(results), thresholds, folds, oof_figures, report)
    write_text_atomic(path.with_suffix(".md"), card)
    print(f"{path}: {source['model']} {source['params']} refit on all {len(features.Y)} labelled posters; "
          f"threshold {thresholds_text(thresholds)} from {folds}-fold out-of-fold predictions; "
          f"model card {path.with_suffix('.md')}")
    return path


def model_card(features: Features, heads: list[dict], source: dict, rule: str, overall_pick: dict,
               thresholds: np.ndarray, folds: int, oof: dict, union: dict | None = None) -> str:
    """What a user of the final model should know: data, choice, figures with intervals, thresholds, limits."""
    dataset, n, n_train = features.attrs["dataset"], len(features.Y), int((features.parts == "train").sum())
    also = (f", and on all {union['added']} posters of {union['dataset']} (genres it does not label, "
            f"{', '.join(union['masked']) or 'none'}, left out of their classifiers)" if union else "")
    lines = [f"# {dataset}: final model", "",
             f"`{final_model_path('models', dataset).name}`: the **{source['head']}** head with "
             f"`{source['params']}` on `{features.attrs['backbone']}` features, refit on all {n} labelled posters "
             f"of `{features.attrs['data']}`{also}. "
             f"Reproduce: `make heads final DATA={features.attrs['data']} BACKBONE={features.attrs['backbone']}"
             + (" UNION=<its feature file>" if union else "") + "`.", "",
             "## How it was chosen", "",
             f"Among the heads fitted on these features, by {rule} (never by test figures):", "",
             "| head | val mAP | cross-validated mAP |", "|---|---|---|"]
    for r in sorted(heads, key=lambda r: r["model"]):
        cv = r.get("cv", {}).get("mAP_macro")
        lines.append(f"| {r['model']} | {r['val']['overall']['mAP_macro']:.3f} | "
                     + (f"{cv['mean']:.3f} ± {cv['std']:.3f}" if cv else "-") + " |")
    if overall_pick and overall_pick["model"] != source["model"]:
        lines += ["", f"Over all models, validation mAP picks `{overall_pick['model']}` "
                      f"({overall_pick['val']['overall']['mAP_macro']:.3f}). `make final` refits heads; a network is "
                      "refit by its own training command with `--final` (`TRAIN_ARGS=--final`), an ensemble not yet."]
    lines += ["", *figures_lines(source, n, n_train)]
    lines += ["## Thresholds", "",
              f"A genre is predicted when its probability reaches {thresholds_text(thresholds)} (the top genre "
              f"always is). Chosen for micro-F1 on {folds}-fold out-of-fold predictions of all {n} posters, made by "
              f"the same head and parameters: out-of-fold mAP {oof['mAP_macro']:.3f}, micro-F1 {oof['f1_micro']:.3f} "
              "(the parameters were chosen on the validation part, which is among these posters, so these two "
              "are a little optimistic).", ""]
    if np.ptp(thresholds) > 0:
        lines += ["| genre | threshold |", "|---|---|",
                  *(f"| {g} | {t:.2f} |" for g, t in zip(features.genres, thresholds)), ""]
    return "\n".join(lines + genres_lines(features.genres, features.Y.sum(axis=0)))


def _folds(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: out-of-fold predictions need 2 folds or more")
    return int(text)


def main() -> None:
    parser = cli.parser("python -m heads.final", __doc__)
    parser.add_argument("--features", required=True, help="the feature file `make heads` used")
    parser.add_argument("--results-dir", default="results", help="where `make heads` wrote its results")
    parser.add_argument("--models-dir", default="models", help="the final model and its card go here")
    parser.add_argument("--folds", type=_folds, default=5,
                        help="folds of the out-of-fold predictions for the threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--union", default=None, metavar="OTHER.h5",
                        help="the other data set's feature file `make heads UNION=...` used: its head competes too")
    args = parser.parse_args()
    cli.run(lambda: final_command(args))


def final_command(args: argparse.Namespace) -> None:
    features = load_features(args.features)
    fit_final(features, args.results_dir, args.models_dir, args.folds, args.seed,
              Union.with_file(features, args.union) if args.union else None)


if __name__ == "__main__":
    main()
