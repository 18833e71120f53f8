"""python -m postergenre.heads.final --features FILE.h5 [--union OTHER.h5]: the data set's final model, refit on every
labelled poster.

`make heads` fits each head on the training part (70% of the posters) so that the validation part
can choose and the test part can score. The model users run should learn from all of them: this
takes the head and parameters the evaluation chose (evaluation.compare.choosing_score: the out-of-fold
validation mAP of `make heads CV=...`, else validation mAP), refits it on every labelled poster, and saves it as
models/<dataset>-final.skops with a model card (models/<dataset>-final.md) beside it. (`make final-ensemble`,
ensemble/final.py, refits the evaluated ensemble's members instead.)

With `--union OTHER.h5` (the file `make heads UNION=...` used), the logistic head trained with the other
data set's posters too competes as well, and when chosen is refit on every poster of both.

Its calibration (evaluation/calibration.py) and thresholds, for F1 and for each recall level
(evaluation/recall.py), come from out-of-fold predictions (the same parameters fitted on 4/5 of the posters,
predicting the other 1/5, five times), never from posters the model was fitted on. The final model has seen
the test part, so it has no test figures of its own; the card gives the evaluated model's.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import f1_score

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.core.progress import progress
from postergenre.core.runspec import make_command
from postergenre.evaluation.calibration import GenreCalibration, fit_genre_calibration
from postergenre.evaluation.card import figures_lines, genres_lines, thresholds_text, trivial_lines
from postergenre.evaluation.compare import against_trivial, choosing_score, picked
from postergenre.evaluation.metrics import choose_thresholds, macro_map
from postergenre.evaluation.recall import recall_thresholds
from postergenre.evaluation.results import overall, read_results
from postergenre.evaluation.sets import predict_sets
from postergenre.extract.features import Features, load_features
from postergenre.heads.arrays import calibrate_last_layer
from postergenre.heads.estimators import HEADS, head_estimator
from postergenre.heads.titles import TitleFusion, title_fusion
from postergenre.heads.train import fit_quietly, save_head
from postergenre.heads.union import Added, Union, plus_added
from postergenre.modelfiles import final_model_path
from postergenre.modelfiles.titles import titles_path
from postergenre.posters.split import stratified_folds
from postergenre.posters.union import describe_added


def head_results(features: Features, results: list[dict], results_dir: Path | str, other: str | None = None,
                 kinds: list[str] | None = None) -> list[dict]:
    """Of the data set's `results` (read from `results_dir`), those of the heads fitted on these features (with
    `other`, a data set's name, the union head trained with it too; with `kinds`, only those heads), or one line
    saying to run make heads."""
    dataset = features.attrs["dataset"]
    heads = [r for r in results if r["kind"] == "head"
             and r["backbone"] == features.attrs["backbone"] and r.get("union", {}).get("dataset") in (None, other)
             and (kinds is None or r["head"] in kinds)]
    if not heads:
        raise DataError(f"{results_dir}/{dataset}: no head results on {features.attrs['backbone']} features; "
                        f"run `make heads` first")
    return heads


def source_estimator(source: dict) -> BaseEstimator:
    """The unfitted head of result `source`, with the parameters its evaluation chose, checked against what the
    head searches (a result file cannot choose code or sizes: heads.estimators.head_estimator)."""
    return head_estimator(source.get("head"), source.get("params"), "union" in source,
                          f"result {source['dataset']}/{source['model']}")


def refit(source: dict, features: Features, union: Union | None = None) -> tuple[BaseEstimator, np.ndarray,
                                                                                  dict | None]:
    """The head of result `source` fitted on every labelled poster of `features` (a union head: and on every
    poster of the other set): (the model, the labels it learnt from, what the union added)."""
    X, Y, report = union.everything() if "union" in source else (features.X, features.Y, None)
    return fit_quietly(source_estimator(source), X, Y), Y, report


def out_of_fold_scores(estimator, X: np.ndarray, Y: np.ndarray, folds: int, seed: int,
                       added: Added | None = None, groups: np.ndarray | None = None) -> np.ndarray:
    """Each poster's scores from a model fitted on the other folds (plus what `added` adds for that fold); with
    `groups` (one label a poster: its franchise), a group's posters are in one fold."""
    scores = np.zeros(Y.shape, np.float64)
    for held in progress(stratified_folds(Y, (1 / folds,) * folds, seed, groups), desc="out-of-fold", unit="fold"):
        rest = np.setdiff1d(np.arange(len(Y)), held)
        X_fit, Y_fit, _ = plus_added(X[rest], Y[rest], added, np.isin(np.arange(len(Y)), held))
        scores[held] = fit_quietly(estimator, X_fit, Y_fit).predict_proba(X[held])
    return scores


def fit_final(features: Features, results_dir: Path | str, models_dir: Path | str, folds: int = 5,
              seed: int = 0, union: Union | None = None, kinds: list[str] | None = None,
              titles_table: Path | str | None = None) -> Path:
    """Refit the chosen head (among `kinds` of head, default all) on every labelled poster of `features` (and of
    `union`'s other data set, when the head trained with it is chosen); returns the saved model's path. Where
    `make titles` left a title result, the title head is refit too (with `titles_table`'s rows) and saved beside it,
    fused by a weight chosen on out-of-fold predictions (heads.titles.title_fusion)."""
    dataset = features.attrs["dataset"]
    results = read_results(results_dir).get(dataset, [])
    heads = head_results(features, results, results_dir, union.source.attrs["dataset"] if union else None, kinds)
    source = picked(heads)
    rule = choosing_score(source)[1]
    oof = out_of_fold_scores(source_estimator(source), features.X, features.Y, folds, seed,
                             union.added if "union" in source else None, features.groups)
    calibration = fit_genre_calibration(features.Y, oof, folds, seed)
    model, Y, report = refit(source, features, union)
    if not calibrate_last_layer(model, calibration.slope, calibration.intercept):
        calibration = None  # ML-kNN's probabilities are neighbour counts, with no logit to scale
    chosen = OutOfFold.of(features.Y, oof, source["thresholds"]["per_genre"], folds, calibration)
    fusion = title_fusion(features, calibration.apply(oof) if calibration else oof, results_dir, folds, seed,
                          titles_table)
    fused = fusion and OutOfFold.of(features.Y, fusion.fused_out_of_fold, source["thresholds"]["per_genre"], folds,
                                    fit_genre_calibration(features.Y, fusion.fused_out_of_fold, folds, seed))
    path = final_model_path(models_dir, dataset)
    save_head(path, model, features, source["params"], chosen.thresholds.tolist(),
              final={"source": source["model"], "chosen_by": rule, "posters": len(Y), "folds": folds,
                     "out_of_fold": chosen.figures, **({"union": report} if report else {}),
                     **({"calibration": chosen.calibration_record()} if calibration else {})},
              recall_thresholds=chosen.recall,
              card=model_card(features, heads, source, rule, picked(results), chosen, report,
                              [r for r in results if r["kind"] == "baseline"],
                              against_trivial(results, results_dir, dataset, source))
              + (title_lines(fusion, fused) if fusion else ""))
    if fusion:
        titles = fusion.save(path, features.genres, fused.thresholds, fused.recall, fused.calibration, fused.figures)
        print(f"{titles}: the title head, fused with weight {fusion.poster_weight:.1f} on the poster; out-of-fold mAP "
              f"{fusion.poster_out_of_fold_map:.3f} poster only, {fused.figures['mAP_macro']:.3f} poster + title")
    else:
        titles_path(path).unlink(missing_ok=True)  # one fused with an earlier final model vouches for nothing now
    if report:
        print(f"{dataset}: {describe_added(report, len(Y))}")
    print(f"{path}: {source['model']} {source['params']} refit on all {len(features.Y)} labelled posters; "
          f"{chosen.summary()} from {folds}-fold out-of-fold predictions; model card {path.with_suffix('.md')}")
    return path


@dataclass(frozen=True)
class OutOfFold:
    """What a final head's out-of-fold predictions chose: its per-genre calibration (None for ML-kNN), then, on
    the calibrated probabilities, its F1 thresholds and recall thresholds, and the figures they reach."""
    folds: int
    calibration: GenreCalibration | None
    thresholds: np.ndarray
    recall: dict[str, float]
    figures: dict[str, float]  # out-of-fold mAP and micro-F1

    @classmethod
    def of(cls, y: np.ndarray, oof: np.ndarray, per_genre: bool, folds: int,
           calibration: GenreCalibration | None) -> "OutOfFold":
        oof = calibration.apply(oof) if calibration else oof
        thresholds = choose_thresholds(y, oof, per_genre)
        f1 = float(f1_score(y, predict_sets(oof, thresholds), average="micro", zero_division=0))
        return cls(folds, calibration, thresholds, recall_thresholds(y, oof),
                   {"mAP_macro": macro_map(y, oof), "f1_micro": f1})

    def calibration_record(self) -> dict:
        c = self.calibration
        return {"slope": c.slope.tolist(), "intercept": c.intercept.tolist(), "ece_before": c.ece_before,
                "ece_after": c.ece_after}

    def summary(self) -> str:
        kept = f"calibration on {int(self.calibration.kept.sum())} genres, " if self.calibration else ""
        return (f"{kept}threshold {thresholds_text(self.thresholds)} and recall thresholds "
                + ", ".join(f"{level}: {t:.4f}" for level, t in self.recall.items()))


def model_card(features: Features, heads: list[dict], source: dict, rule: str, overall_pick: dict,
               chosen: OutOfFold, union: dict | None = None, baselines: list[dict] = (),
               trivial: dict | None = None) -> str:
    """What a user of the final model should know: data, choice, figures with intervals, calibration, thresholds,
    limits."""
    dataset, n, n_train = features.attrs["dataset"], len(features.Y), int((features.parts == "train").sum())
    also = (f", and on all {union['added']} posters of {union['dataset']} (genres it does not label, "
            f"{', '.join(union['masked']) or 'none'}, left out of their classifiers)" if union else "")
    reproduce = make_command("heads final", DATA=features.attrs["data"], BACKBONE=features.attrs["backbone"],
                             UNION="<its feature file>" if union else None)
    lines = [f"# {dataset}: final model", "",
             f"`{final_model_path('models', dataset).name}`: the **{source['head']}** head with "
             f"`{source['params']}` on `{features.attrs['backbone']}` features, refit on all {n} labelled posters "
             f"of `{features.attrs['data']}`{also}. "
             f"Reproduce: `{reproduce}`.", "",
             "## How it was chosen", "",
             f"Among the heads fitted on these features, by {rule} (never by test figures):", "",
             "| head | val mAP | out-of-fold val mAP | cross-validated mAP |", "|---|---|---|---|"]
    for r in sorted(heads, key=lambda r: r["model"]):
        cv = r.get("cv", {})
        lines.append(f"| {r['model']} | {overall(r, 'val'):.3f} | "
                     + (f"{cv['val_mAP_macro']:.3f}" if "val_mAP_macro" in cv else "-") + " | "
                     + (f"{cv['mAP_macro']['mean']:.3f} ± {cv['mAP_macro']['std']:.3f}" if cv else "-") + " |")
    if overall_pick and overall_pick["model"] != source["model"]:
        score, rule = choosing_score(overall_pick)
        lines += ["", f"Over all models, the {rule} picks `{overall_pick['model']}` ({score:.3f}). `make final` "
                      "refits heads; a network is refit by its own training command with `--final` "
                      "(`TRAIN_ARGS=--final`), an ensemble not yet."]
    thresholds, oof = chosen.thresholds, chosen.figures
    lines += ["", *figures_lines(source, n, n_train), *trivial_lines(source, list(baselines), trivial),
              *calibration_lines(features.genres, chosen.calibration, chosen.folds)]
    lines += ["## Thresholds", "",
              f"A genre is predicted when its probability reaches {thresholds_text(thresholds)} (the top genre "
              f"always is). Chosen for micro-F1 on {chosen.folds}-fold out-of-fold predictions of all {n} posters, "
              f"made by the same head and parameters: out-of-fold mAP {oof['mAP_macro']:.3f}, micro-F1 "
              f"{oof['f1_micro']:.3f} (the parameters were chosen on the validation part, which is among these "
              "posters, so these two are a little optimistic).", ""]
    if np.ptp(thresholds) > 0:
        lines += ["| genre | threshold |", "|---|---|",
                  *(f"| {g} | {t:.2f} |" for g, t in zip(features.genres, thresholds)), ""]
    lines += ["## Genre sets with a recall guarantee", "",
              "`postergenre predict --recall LEVEL` predicts every genre whose probability is above the level's "
              "threshold, chosen by conformal risk control on the same out-of-fold predictions, so that a poster "
              "like these gets on average at least that share of its true genres (evaluation/recall.py):", "",
              "| recall level | threshold |", "|---|---|",
              *(f"| {level} | {t:.4f} |" for level, t in chosen.recall.items()), ""]
    return "\n".join(lines + genres_lines(features.genres, features.Y.sum(axis=0)))


def title_lines(fusion: TitleFusion, fused: OutOfFold) -> str:
    """The card's section on the title head fused with the final model (`postergenre predict --title`)."""
    unknown = ", ".join(fusion.added["unknown"]) or "no genre" if fusion.added else ""
    table = (f", and on {fusion.added['added']:,} rows of {fusion.added['table']} ({unknown} unknown there)"
             if fusion.added else "")
    return "\n".join(["", "## With a title", "",
                      f"Given a poster's title (`postergenre predict --title`), the model adds a title head (TF-IDF "
                      f"of the title's character and word n-grams, logistic regression, refit on every labelled "
                      f"poster's titles{table}): the probabilities are {fusion.poster_weight:.1f} x the poster's "
                      f"+ {1 - fusion.poster_weight:.1f} x the title's, a weight chosen on {fused.folds}-fold "
                      f"out-of-fold predictions over franchise groups, then calibrated again, with thresholds of "
                      f"their own ({thresholds_text(fused.thresholds)}). Out-of-fold mAP: "
                      f"{fusion.poster_out_of_fold_map:.3f} from the poster alone, {fused.figures['mAP_macro']:.3f} "
                      "with the title. Without a title, the poster model answers alone.", ""])


def calibration_lines(genres: list[str], calibration: GenreCalibration | None, folds: int) -> list[str]:
    """The card's calibration section: each genre's cross-validated log-loss before and after, and the ECE."""
    if calibration is None:
        return ["## Calibration", "", "None: ML-kNN's probabilities are neighbour counts, with no logit to scale.", ""]
    kept = calibration.kept
    return ["## Calibration", "",
            f"Each genre's probability is Platt-scaled (the logit times a slope, plus an intercept) where "
            f"{folds}-fold cross-validation on the out-of-fold predictions said it lowers the log-loss: "
            f"{int(kept.sum())} of {len(genres)} genres. The scaling is increasing, so no ranking, AP or mAP "
            f"changes. Expected calibration error of the out-of-fold probabilities: {calibration.ece_before:.4f} "
            f"before, {calibration.ece_after:.4f} after (each poster calibrated by a fit without it).", "",
            "| genre | calibrated | log-loss before | after | slope | intercept |", "|---|---|---|---|---|---|",
            *(f"| {g} | {'yes' if k else 'no'} | {b:.4f} | {a:.4f} | {s:.2f} | {i:.2f} |" for g, k, b, a, s, i in
              zip(genres, kept, calibration.log_loss_before, calibration.log_loss_after, calibration.slope,
                  calibration.intercept)), ""]


def _folds(text: str) -> int:
    if not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: out-of-fold predictions need 2 folds or more")
    return int(text)


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.heads.final", __doc__)
    parser.add_argument("--features", required=True, help="the feature file `make heads` used")
    parser.add_argument("--results-dir", default="results", help="where `make heads` wrote its results")
    parser.add_argument("--models-dir", default="models", help="the final model and its card go here")
    parser.add_argument("--folds", type=_folds, default=5,
                        help="folds of the out-of-fold predictions for the threshold")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--union", default=None, metavar="OTHER.h5",
                        help="the other data set's feature file `make heads UNION=...` used: its head competes too")
    parser.add_argument("--heads", nargs="+", default=None, choices=list(HEADS),
                        help="only these heads compete (make builtin: the logistic ones, which fit the package)")
    parser.add_argument("--titles", default=None, metavar="TABLE.csv",
                        help="where `make titles` left a title result: a table of titles and genres its title head "
                        "learns from too (make titles TITLES=...)")
    args = parser.parse_args(argv)
    cli.run(lambda: final_command(args))


def final_command(args: argparse.Namespace) -> None:
    features = load_features(args.features)
    fit_final(features, args.results_dir, args.models_dir, args.folds, args.seed,
              Union.with_file(features, args.union) if args.union else None, args.heads, args.titles)


if __name__ == "__main__":
    main()
