"""The command line shared by finetune/ and cnn/: read the split, train, score with the evaluation module."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from postergenre.core.cli import add_settings, settings_from
from postergenre.core.device import autocast_dtype, choose_device, setup_distributed
from postergenre.core.errors import DataError
from postergenre.core.runspec import RunSpec
from postergenre.core.runtime import INFERENCE_PRECISION
from postergenre.evaluation.card import write_refit_card
from postergenre.evaluation.metrics import evaluate
from postergenre.evaluation.results import read_result, result_path, write_result, write_scores
from postergenre.modelfiles import NETWORK_SUFFIX, final_model_path, model_path
from postergenre.modelfiles.networks import load_weights, read_checkpoint, read_network, save_network
from postergenre.posters.data import read_posters, read_titles
from postergenre.posters.images import ImageSpec, PosterImages, eval_transform
from postergenre.posters.split import PARTS, Split, label_matrix, load_current, split_posters
from postergenre.posters.union import added_posters, describe_added, joint_groups
from postergenre.training.loop import BEST, LAST, Part, TrainConfig, fit, load_checkpoint, predict


def add_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    parser.add_argument("--data", required=True, help="data set folder (CSV + images)")
    parser.add_argument("--split", required=True, help="split file from `python -m postergenre.posters split`")
    parser.add_argument("--runs-dir", default="runs", help="checkpoints and logs go to RUNS_DIR/<dataset>/<model>")
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    parser.add_argument("--models-dir", default="models", help="the best model, for make predict and make serve")
    parser.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    parser.add_argument("--test-only", action="store_true", help="score the run's best checkpoint, no training")
    parser.add_argument("--final", action="store_true", help="after the same command without it: train again on "
                        "every labelled poster for the epochs validation chose, as the data set's final model")
    parser.add_argument("--union-data", default=None, metavar="FOLDER",
                        help="also train on this data set's posters, genres mapped and those it does not label left "
                             "out of the loss; scored on --data's own parts (posters/union.py)")
    add_settings(parser, defaults)


def _parts(args: argparse.Namespace) -> tuple[Split, dict[str, Part], dict[str, list[str]], dict | None]:
    """The split, each part's images and labels, each part's poster ids, and with --union-data, what the
    other data set added to the training part: its posters sharing no title with a validation or test
    poster, or with --final (no poster held out), all of them."""
    poster_set = read_posters(args.data)
    split = load_current(args.split, poster_set)
    posters_by_part = split_posters(poster_set, split)
    parts = {name: Part([p.image for p in posters], label_matrix([p.genres for p in posters], split.genres))
             for name, posters in posters_by_part.items()}
    ids = {name: [p.id for p in posters] for name, posters in posters_by_part.items()}
    if not args.union_data:
        return split, parts, ids, None
    other = read_posters(args.union_data)
    other_genres = sorted(other.genre_counts())
    # With --final no poster is held out, so no added poster is left out as the twin of one.
    parts_of = ["train" if args.final else part for part in PARTS for _ in ids[part]]
    keep, labels, report = added_posters(
        [pid for part in PARTS for pid in ids[part]], parts_of, split.genres, [p.id for p in other.posters],
        label_matrix([p.genres for p in other.posters], other_genres), other_genres,
        *joint_groups(read_titles(args.data), read_titles(args.union_data)), other.name)
    added = [p.image for p, kept in zip(other.posters, keep) if kept]
    parts["train"] = Part(parts["train"].paths + added, np.vstack([parts["train"].labels.astype(np.int8), labels]))
    print(f"{split.dataset}: {describe_added(report, len(parts['train'].paths))}")
    return split, parts, ids, report


def train_and_evaluate(args: argparse.Namespace, run_spec: RunSpec, build: Callable[[int], tuple[nn.Module, dict]],
                       build_settings: dict, spec: ImageSpec, settings: dict) -> dict | None:
    """Train `build(n_genres)` -> (model, parameter groups), then score its best epoch on val and test.

    The run is named by `run_spec` with its union and seed; the best epoch is saved with `build_settings` (what
    predict.models.NETWORKS[run_spec.kind] rebuilds it from).
    """
    cfg = settings_from(args, TrainConfig)
    if args.union_data and (cfg.loss != "bce" or cfg.mixup):
        raise DataError("--union-data trains with the BCE loss and without mixup: "
                        "the genres another data set does not label are left out of the loss")
    split, parts, ids, union = _parts(args)
    run_spec = replace(run_spec, union=union["dataset"] if union else None, seed=cfg.seed)
    name, kind = run_spec.name, run_spec.kind
    run_dir = Path(args.runs_dir) / split.dataset / name
    torch.manual_seed(cfg.seed)  # the new layers' initial weights: the same seed gives the same model
    model, groups = build(len(split.genres))
    if args.final:
        return _train_final(args, cfg, name, kind, model, groups, build_settings, spec, split, parts, union)
    if args.test_only:
        state = load_checkpoint(run_dir / LAST, model)["state"]
    else:
        state = fit(model, groups, parts["train"], parts["val"], spec, cfg, run_dir, resume=args.resume)
    if not setup_distributed()[0].main:
        return None

    device = choose_device()
    load_weights(model, read_network(run_dir / BEST)[0], run_dir / BEST)
    model = model.to(device, memory_format=torch.channels_last)
    dtype = autocast_dtype(device, INFERENCE_PRECISION)  # scored as predict will score it, on any CPU
    transform = eval_transform(spec.size, spec.mean, spec.std)
    scores = {part: predict(model, PosterImages(parts[part].paths, transform, parts[part].labels), cfg.batch_size,
                            device, dtype) for part in ("val", "test")}
    result = evaluate(parts["val"].labels, scores["val"], parts["test"].labels, scores["test"], split.genres)
    save_network(model_path(args.models_dir, split.dataset, name, NETWORK_SUFFIX), model, {
        "kind": kind, "build": build_settings, "genres": split.genres, "spec": asdict(spec),
        "thresholds": result["thresholds"]["values"], "batch_size": cfg.batch_size})
    write_scores(args.results_dir, split.dataset, name,
                 {part: (ids[part], parts[part].labels, scores[part]) for part in ("val", "test")})
    history = state["history"]
    write_result(args.results_dir, split.dataset, name, {
        "kind": kind, "data": str(args.data), "spec": run_spec.to_dict(), **settings,
        **({"union": union} if union else {}), "tta": "none",
        "config": asdict(cfg), "training_dtype": str(autocast_dtype(device, cfg.precision) or torch.float32),
        "split": json.dumps({"seed": split.seed, "fractions": split.fractions, "min_count": split.min_count}),
        "history": history, "best_epoch": state["best_epoch"], "run_dir": str(run_dir),
        "train_posters_per_s": float(np.median([h["posters_per_s"] for h in history])) if history else None,
        **result})
    test = result["test"]["overall"]
    print(f"{split.dataset} {name}: best epoch {state['best_epoch']}, test mAP {test['mAP_macro']:.3f}, "
          f"micro-F1 {test['f1_micro']:.3f}")
    return result


def _train_final(args: argparse.Namespace, cfg: TrainConfig, name: str, kind: str, model: nn.Module, groups: dict,
                 build_settings: dict, spec: ImageSpec, split: Split, parts: dict[str, Part],
                 union: dict | None) -> dict | None:
    """Run `name` again on every labelled poster (and every poster `union` added) for the epoch count its
    validation chose, and save the last epoch as the data set's final model, with the evaluated run's
    thresholds (chosen on posters it was not fitted on) and a model card."""
    evaluated_path = result_path(args.results_dir, split.dataset, name)
    if not evaluated_path.is_file():
        raise DataError(f"{evaluated_path} not found: --final refits an evaluated run, so run the same command "
                        f"without --final first")
    evaluated = read_result(evaluated_path)
    epochs = evaluated["best_epoch"]
    everything = Part([path for part in PARTS for path in parts[part].paths],
                      np.concatenate([parts[part].labels for part in PARTS]))
    run_dir = Path(args.runs_dir) / split.dataset / f"{name}-final"
    # No early stopping; the validation part is among the training posters here, so its mAP is a training curve.
    fit(model, groups, everything, parts["val"], spec, replace(cfg, epochs=epochs, patience=epochs + 1), run_dir,
        resume=args.resume)
    if not setup_distributed()[0].main:
        return None
    load_weights(model, read_checkpoint(run_dir / LAST)["model"], run_dir / LAST)
    path = final_model_path(args.models_dir, split.dataset, NETWORK_SUFFIX)
    save_network(path, model, {"kind": kind, "build": build_settings, "genres": split.genres, "spec": asdict(spec),
                               "thresholds": evaluated["thresholds"]["values"], "batch_size": cfg.batch_size,
                               "final": {"source": name, "epochs": epochs, "posters": len(everything.labels)}})
    own = len(everything.labels) - (union["added"] if union else 0)
    also = f" and all {union['added']} of {union['dataset']} (`--union-data`)" if union else ""
    write_refit_card(path, [
        f"# {split.dataset}: final model", "",
        f"`{path.name}`: `{name}` trained again on all {own} labelled posters of `{args.data}`{also} for {epochs} "
        f"epochs, the epoch its validation mAP peaked at when trained on the training part. Reproduce: the run's "
        f"own command with `--final` (`TRAIN_ARGS=--final`)."],
        "Those the evaluated run chose on its validation part, which it was not fitted on", evaluated,
        everything.labels, len(parts["train"].labels), split.genres)
    print(f"{path}: {name} trained on all {len(everything.labels)} labelled posters for {epochs} epochs; "
          f"model card {path.with_suffix('.md')}")
    return evaluated
