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
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.preprocessing import normalize

from bench.extraction import engine_speeds
from bench.plan import (BACKBONE, CACHED_FINETUNE, CNN_EPOCHS, CV, DATASETS, FINETUNE, FULL, HEAD_NAMES,
                                    HOUR, SEEDS, UNIONS, Scope, features_path, features_step, split_path)
from bench.report import write_bench_report
from postergenre.core.files import write_text_atomic
from postergenre.core.runspec import ENSEMBLE, RunSpec, head_name, make_command
from postergenre.ensemble.final import keep_refit_network
from postergenre.evaluation.results import overall, read_result, result_path
from postergenre.extract.features import load_features
from postergenre.heads.estimators import MLkNNHead
from postergenre.modelfiles import ENSEMBLE_SUFFIX, NETWORK_SUFFIX, final_model_path, members_dir
from postergenre.posters.data import PosterSet, read_posters
from postergenre.testing.reference_mlknn import reference_mlknn


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
    name, split = data.name, split_path(work, data.name)
    dirs = ["--runs-dir", str(work / "runs"), "--results-dir", str(work / "results"),
            "--models-dir", str(work / "models")]

    def result(model: str) -> Path:
        return result_path(work / "results", name, model)

    if len(scope.backbones) > 1:  # the logistic head on each backbone's features chooses the features
        for backbone in scope.backbones:
            steps.run(f"{name} logistic {backbone}", result(head_name(backbone, "logistic")), "heads",
                      "--features", str(features_path(work, name, backbone)), "--heads", "logistic", *dirs[2:])
    backbone = chosen_backbone(work / "results", name, scope.backbones)
    features = features_path(work, name, backbone)
    heads = ["--features", str(features), *dirs[2:]]
    cv_heads = list(scope.cv_heads[name])
    plain = [h for h in HEAD_NAMES if h not in cv_heads and (h != "logistic" or len(scope.backbones) == 1)]
    cv = ["--cv", f"{CV[0]}x{CV[1]}"]
    for step, group, flags in ((f"{name} heads", plain, []), (f"{name} heads cv", cv_heads, cv)):
        if group:
            steps.run(step, result(head_name(backbone, group[-1])), "heads", *heads, "--heads", *group, *flags)
    if other := UNIONS.get(name):
        steps.run(f"{name} union", result(head_name(backbone, "logistic", other)), "heads", *heads,
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
        steps.run(f"{name} {model}", result(model), *command)
    steps.run(f"{name} ensemble", result(ENSEMBLE), "ensemble", "--dataset", name,
              "--results-dir", str(work / "results"))
    steps.run(f"{name} final", final_model_path(work / "models", name), "heads.final", "--features", str(features),
              "--results-dir", str(work / "results"), "--models-dir", str(work / "models"),
              *(["--union", str(features_path(work, other, backbone))] if other else []))
    if not scope.final_ensemble:
        return
    final_ensemble = final_model_path(work / "models", name, ENSEMBLE_SUFFIX)
    for member in read_result(result(ENSEMBLE))["members"]:
        if member in networks:  # refit by its own command with --final, one network after another
            steps.run(f"{name} {member} final", members_dir(final_ensemble) / f"{member}{NETWORK_SUFFIX}",
                      *networks[member], "--final")
            keep_refit_network(work / "models", name)
    steps.run(f"{name} final ensemble", final_ensemble, "ensemble.final", "--features", str(features),
              "--results-dir", str(work / "results"), "--models-dir", str(work / "models"))


def chosen_backbone(results_dir: Path, dataset: str, backbones: tuple[str, ...]) -> str:
    """The one of `backbones` whose features gave the logistic head the best validation mAP."""
    if len(backbones) == 1:
        return backbones[0]
    val_map = {b: overall(read_result(result_path(results_dir, dataset, head_name(b, "logistic"))), "val")
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
    command = make_command("bench", SHARED_DATA=args.data_root, FULL=1 if args.full else None)
    path = write_bench_report(work, Path(args.out), steps.seconds, speed, mlknn, total, command, scope)
    print(f"{path}: {total / 60:.1f} min of steps in all; this run {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()
