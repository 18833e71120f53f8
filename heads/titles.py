"""python -m postergenre.heads.titles --features FILE.h5 [--titles TABLE.csv]: the title as a second input, beside
the poster.

A user knows the title of the anime whose poster they give, and a title carries what a poster cannot show. The
title head (`title_head`) is one-vs-rest logistic regression on TF-IDF of the poster's titles (the Kaggle
layout's `Name` and `English name`, the simple layout's `title`): character 2-5-grams within words, and words
and word pairs. Its C is chosen on validation mAP, as the image heads' are.

It is fused with the data set's picked poster-only model (evaluation.compare.picked) by a weight on the two
probabilities, `weight * poster + (1 - weight) * title`, the weight chosen on validation mAP; the thresholds are
chosen again on the fused validation scores. The results (`title-logistic`, the title alone, and
`<model>+title`) go to results/<dataset>/ as kind "titles": read_results leaves them out of the poster-only
comparison, whose question stays which image model is best; the report shows them in a section of their own,
each against the picked poster-only model on the same test posters.

With `--titles TABLE.csv` (make titles TITLES=..., e.g. the Kaggle table of every anime's name and genres), the
title head also learns from its rows, except those of any franchise (posters.franchises, grouped with the data
set's own titles) that has a validation or test poster: the table lists every anime, those evaluated included.
Genres the table does not label are unknown for its rows, as a union's are (posters/union.py).
"""
from __future__ import annotations

from pathlib import Path

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline, make_union

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write
from postergenre.core.progress import progress
from postergenre.core.workspace import file_sha256
from postergenre.evaluation.calibration import GenreCalibration
from postergenre.evaluation.compare import picked
from postergenre.evaluation.metrics import evaluate, macro_map
from postergenre.evaluation.results import read_results, read_scores_of, write_result, write_scores
from postergenre.extract.features import Features, load_features
from postergenre.heads.estimators import MaskedOneVsRest
from postergenre.heads.train import fit_quietly, tune
from postergenre.posters.data import read_genre_rows, read_posters
from postergenre.posters.franchises import franchise_groups
from postergenre.posters.split import stratified_folds
from postergenre.modelfiles.settings import MAX_NGRAMS
from postergenre.modelfiles.titles import VECTORISERS, fused, titles_path, write_titles
from postergenre.posters.union import UNKNOWN, genre_map

TITLE_C = [0.25, 1.0, 4.0, 16.0, 64.0]
TITLE_GRID = {"maskedonevsrest__estimator__C": TITLE_C}
FUSION_WEIGHTS = np.round(np.linspace(0, 1, 11), 2)  # the poster's weight; the title's is 1 minus it
TITLE_HEAD = "title-logistic"
SATURATED = 30.0  # the logit of a genre its training rows all label alike: a probability within 1e-13 of it


def title_head(C: float = 4.0) -> Pipeline:
    """One-vs-rest logistic regression on TF-IDF of a poster's titles (modelfiles.titles.VECTORISERS: character
    2-5-grams within words, and word 1-2-grams); genres a row does not label (-1) are left out of that genre's fit."""
    return make_pipeline(
        make_union(*(TfidfVectorizer(**options, min_df=2 if name == "char" else 1, max_features=MAX_NGRAMS)
                     for name, options in VECTORISERS.items())),
        MaskedOneVsRest(LogisticRegression(C=C, max_iter=1000)))


def title_text(titles: tuple[str, ...]) -> str:
    """A poster's titles as the title head reads them: each of its names, one after the other."""
    return " / ".join(titles)


def title_texts(ids: np.ndarray, titles: dict[str, tuple[str, ...]]) -> np.ndarray:
    """The title text of each poster of `ids` ("" for one without titles), as an array to index by rows."""
    return np.array([title_text(titles.get(str(pid), ())) for pid in ids], dtype=object)


class TitleTable:
    """A table of titles and genres (make titles TITLES=...) read once, its rows grouped into franchises with the
    data set's own titles, and its genres mapped onto the data set's (UNKNOWN where it does not label one)."""

    def __init__(self, table: Path | str, genres: list[str], titles: dict[str, tuple[str, ...]]):
        self.table = str(table)
        self.rows = [(name, found) for name, found in read_genre_rows(table) if name and found]
        groups = franchise_groups({**{f"t{i}": (name,) for i, (name, _) in enumerate(self.rows)},
                                   **{f"p{pid}": found for pid, found in titles.items()}})
        self.row_groups = [groups[f"t{i}"] for i in range(len(self.rows))]
        self.poster_groups = {pid: groups[f"p{pid}"] for pid in titles}
        mapping = genre_map(sorted({g for _, found in self.rows for g in found}), genres)
        self.labels = np.full((len(self.rows), len(genres)), UNKNOWN, np.int8)
        self.known = sorted({genres.index(g) for g in mapping.values()})
        self.labels[:, self.known] = 0
        index = {g: genres.index(t) for g, t in mapping.items()}
        for row, (_, found) in enumerate(self.rows):
            self.labels[row, [index[g] for g in found if g in index]] = 1
        self.unknown = [g for i, g in enumerate(genres) if i not in self.known]

    def without(self, held: set[str]) -> tuple[list[str], np.ndarray, dict]:
        """The rows of no franchise of the posters `held` (ids: those a model is validated or scored on): (titles,
        labels, what was done)."""
        held_groups = {self.poster_groups[pid] for pid in held if pid in self.poster_groups}
        kept = np.array([group not in held_groups for group in self.row_groups], dtype=bool)
        return [name for (name, _), keep in zip(self.rows, kept) if keep], self.labels[kept], {
            "table": self.table, "rows": len(self.rows), "added": int(kept.sum()),
            "left_out": int((~kept).sum()), "unknown": self.unknown}


def fit_title_head(features: Features, texts: np.ndarray, titles: dict[str, tuple[str, ...]],
                   table: Path | str | None = None) -> tuple[BaseEstimator, dict, list[dict], dict | None]:
    """The title head fitted on the training posters' `texts` (one a row of `features`; with `table`, its rows
    too: table_rows), its C chosen on validation mAP: (model, its parameters, every trial, what the table added)."""
    train, val = features.parts == "train", features.parts == "val"
    X_fit, Y_fit, added = list(texts[train]), features.Y[train].astype(np.int8), None
    if table:
        extra, extra_labels, added = TitleTable(table, features.genres, titles).without(
            {str(pid) for pid in features.ids[~train]})
        X_fit, Y_fit = X_fit + extra, np.vstack([Y_fit, extra_labels])
    model, params, trials = tune(title_head(), TITLE_GRID, X_fit, Y_fit, list(texts[val]), features.Y[val])
    return model, params, trials, added


def fusion_weight(y_val: np.ndarray, poster_val: np.ndarray, title_val: np.ndarray) -> float:
    """The poster's weight, of FUSION_WEIGHTS, whose fused validation scores have the best mAP."""
    return float(max(FUSION_WEIGHTS, key=lambda w: macro_map(y_val, fused(poster_val, title_val, w))))


def title_params(result: dict) -> float:
    """The C a title result chose, checked against TITLE_C: a result file cannot choose another."""
    C = (result.get("params") or {}).get("maskedonevsrest__estimator__C")
    if C not in TITLE_C:
        raise DataError(f"result {result['dataset']}/{result['model']}: C {C!r} is not one the title head searches "
                        f"({', '.join(map(str, TITLE_C))})")
    return float(C)


@dataclass(frozen=True)
class TitleFusion:
    """A final poster model's title head, refit on every labelled poster (and a table's rows), and the fusion's
    out-of-fold probabilities: each poster's fused from a title head and a poster model fitted without its fold."""
    model: Pipeline
    poster_weight: float
    fused_out_of_fold: np.ndarray
    poster_out_of_fold_map: float
    added: dict | None  # what the table added to the refit

    def save(self, poster_model: Path, genres: list[str], thresholds: np.ndarray, recall: dict[str, float],
             calibration: GenreCalibration, figures: dict[str, float]) -> Path:
        """Write the title head beside the final poster model it was fused with (modelfiles/titles.py), with the
        thresholds, recall thresholds and calibration chosen on the fused out-of-fold probabilities."""
        vocabularies, arrays = title_layers(self.model)
        path = titles_path(poster_model)
        with atomic_write(path) as tmp:
            write_titles(tmp, {"genres": genres, "poster_model_sha256": file_sha256(poster_model),
                               "poster_weight": self.poster_weight, "thresholds": thresholds.tolist(),
                               "recall_thresholds": recall, "vocabularies": vocabularies,
                               "out_of_fold": {"poster_mAP_macro": self.poster_out_of_fold_map, **figures}},
                         {**arrays, "slope": calibration.slope, "shift": calibration.intercept})
        return path


def title_layers(model: Pipeline) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """A fitted title head as its vectorisers' vocabularies (n-gram by column) and arrays (modelfiles/titles.py).
    A genre one class only labelled is a constant: a zero row, its logit saturated."""
    union, masked = model.steps[0][1], model.steps[1][1]
    vocabularies, arrays = {}, {}
    for name, (_, vectoriser) in zip(VECTORISERS, union.transformer_list):
        vocabularies[name] = sorted(vectoriser.vocabulary_, key=vectoriser.vocabulary_.get)
        arrays[f"{name}_idf"] = vectoriser.idf_
    width = sum(map(len, vocabularies.values()))
    coef, intercept = np.zeros((len(masked.estimators_), width)), np.zeros(len(masked.estimators_))
    for genre, estimator in enumerate(masked.estimators_):
        if isinstance(estimator, LogisticRegression):
            coef[genre], intercept[genre] = estimator.coef_[0], estimator.intercept_[0]
        else:
            intercept[genre] = SATURATED if estimator.y_[0] == 1 else -SATURATED
    return vocabularies, {**arrays, "coef": coef, "intercept": intercept}


def title_fusion(features: Features, poster_out_of_fold: np.ndarray, results_dir: Path | str, folds: int,
                 seed: int, table: Path | str | None = None) -> TitleFusion | None:
    """For `make final`: where `make titles` has a title result for this data set, the title head with its C,
    its out-of-fold probabilities over grouped folds (the table's rows of a held fold's franchises left out),
    fused with the final poster model's (`poster_out_of_fold`, as it will predict them) by the weight out-of-fold
    mAP chooses, and refit on every poster and table row. None without a title result."""
    dataset = features.attrs["dataset"]
    result = next((r for r in read_results(results_dir, ("titles",)).get(dataset, []) if r["model"] == TITLE_HEAD),
                  None)
    if result is None:
        return None
    C = title_params(result)
    titles = {p.id: p.titles for p in read_posters(features.attrs["data"]).posters if p.titles}
    texts = title_texts(features.ids, titles)
    rows = TitleTable(table, features.genres, titles) if table else None
    Y = features.Y.astype(np.int8)

    def fitted(fit: np.ndarray, held: np.ndarray) -> Pipeline:
        extra, extra_labels, added = rows.without({str(pid) for pid in features.ids[held]}) if rows else ([], Y[:0],
                                                                                                         None)
        return fit_quietly(title_head(C), list(texts[fit]) + extra, np.vstack([Y[fit], extra_labels])), added

    title_oof = np.zeros(Y.shape)
    for held in progress(stratified_folds(Y, (1 / folds,) * folds, seed, features.groups), desc="title out-of-fold",
                         unit="fold"):
        fit = np.setdiff1d(np.arange(len(Y)), held)
        title_oof[held] = fitted(fit, held)[0].predict_proba(list(texts[held]))
    weight = fusion_weight(features.Y, poster_out_of_fold, title_oof)
    model, added = fitted(np.arange(len(Y)), np.zeros(0, dtype=int))
    return TitleFusion(model, weight, fused(poster_out_of_fold, title_oof, weight),
                       macro_map(features.Y, poster_out_of_fold), added)


def _aligned(features: Features, saved: tuple[np.ndarray, np.ndarray, np.ndarray], texts: np.ndarray,
             model: BaseEstimator, part: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The posters of `part` that the poster model scored (`saved`, from its scores file): (ids, labels, poster
    scores, title scores); refused if that model was scored on another split than these features'."""
    ids, _, poster = saved
    row = {str(pid): i for i, pid in enumerate(features.ids)}
    if any(features.parts[row[str(pid)]] != part for pid in ids if str(pid) in row) or \
            poster.shape[1] != len(features.genres):
        raise DataError(f"{features.attrs['dataset']}: the poster model was scored on another split or genres than "
                        f"these features; run `make heads` again")
    keep = np.array([str(pid) in row for pid in ids], dtype=bool)
    rows = [row[str(pid)] for pid in ids[keep]]
    return ids[keep], features.Y[rows], poster[keep], model.predict_proba(list(texts[rows]))


def run_titles(features: Features, results_dir: Path | str, table: Path | str | None = None) -> dict[str, dict]:
    """Fit the title head, fuse it with the picked poster-only model, and write both results (module doc)."""
    dataset = features.attrs["dataset"]
    titles = {p.id: p.titles for p in read_posters(features.attrs["data"]).posters if p.titles}
    if not titles:
        raise DataError(f"{features.attrs['data']}: no titles (the Kaggle layout's Name or English name, the simple "
                        f"layout's title column), so there is nothing for a title head to read")
    poster_model = picked(read_results(results_dir).get(dataset, []))
    saved = read_scores_of(results_dir, dataset, [poster_model["model"]]) if poster_model else {}
    if not saved:
        raise DataError(f"{results_dir}/{dataset}: no poster model with scores to fuse the title with; run "
                        f"`make heads` first")
    texts = title_texts(features.ids, titles)
    model, params, trials, added = fit_title_head(features, texts, titles, table)
    scores = {name: _aligned(features, saved[poster_model["model"]][name], texts, model, name)
              for name in ("val", "test")}  # (ids, labels, poster scores, title scores) of the posters both scored
    weight = fusion_weight(*scores["val"][1:])
    setting = {"data": features.attrs["data"], "backbone": features.attrs["backbone"], "tta": features.attrs["tta"],
               "split": features.attrs["split"], "params": params, "grid": trials,
               **({"titles_table": added} if added else {})}
    written = {}
    for name, w, source in ((TITLE_HEAD, 0.0, None), (f"{poster_model['model']}+title", float(weight),
                                                       poster_model["model"])):
        val, test = (fused(scores[p][2], scores[p][3], w) for p in ("val", "test"))
        result = evaluate(scores["val"][1], val, scores["test"][1], test, features.genres)
        write_scores(results_dir, dataset, name, {p: (scores[p][0], scores[p][1], s) for p, s in
                                                  (("val", val), ("test", test))})
        write_result(results_dir, dataset, name, {"kind": "titles", **setting, "poster_model": source,
                                                  "poster_weight": w, **result})
        written[name] = result
        print(f"{dataset} {name}: C {params}, poster weight {w:.1f} (on validation mAP), test mAP "
              f"{result['test']['overall']['mAP_macro']:.3f}")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.heads.titles", __doc__)
    parser.add_argument("--features", required=True, help="the feature file `make heads` used")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    parser.add_argument("--titles", help="a table of titles and genres to learn from too (the Kaggle layout: Name, "
                        "Genres), e.g. anime-dataset-2023-genres.csv")
    args = parser.parse_args(argv)
    cli.run(lambda: run_titles(load_features(args.features), args.results_dir, args.titles))


if __name__ == "__main__":
    main()
