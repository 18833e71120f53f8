"""The bench report, assembled from the results a bench run leaves (here, made-up models on made-up posters)."""
import json
import re
from dataclasses import replace

import numpy as np

from bench.comparison import Steps, run_dataset
from bench.plan import BACKBONE_CHOICES, FINETUNE, FULL, HOUR, features_step
from bench.report import write_bench_report
from postergenre.core.runspec import ENSEMBLE, RunSpec, head_name
from postergenre.ensemble.combine import ensemble
from postergenre.evaluation.metrics import evaluate
from postergenre.evaluation.results import write_result, write_scores

GENRES = ["Action", "Comedy", "Drama"]


def test_report_rows_wall_times_goals_and_ablations(tmp_path):
    rng = np.random.default_rng(0)
    ids = {part: [f"{part}{i}" for i in range(200)] for part in ("train", "val", "test")}
    y = {part: (rng.random((200, 3)) < 0.4).astype(np.uint8) for part in ids}
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "anime-posters-split.json").write_text(json.dumps({"parts": ids}))
    lite0, lite2 = ({"backbone": b, "head": "logistic", "params": {}, "tta": "none", "tune_seconds": 5.0}
                    for b in BACKBONE_CHOICES)
    union = {**lite2, "union": {"dataset": "anilist-covers", "added": 700, "left_out": 200, "matched": 600,
                                "masked": ["Gourmet"]}}
    trained = {"history": [], "run_dir": "runs/x"}
    on_images = {"freeze": "stage4", "image_size": 160, "best_epoch": 6, **trained,
                 "config": {"epochs": 6, "augment": "light", "loss": "bce", "lr": 1e-3, "seed": 0}}
    on_cache = {"freeze": "stage5", "image_size": 224, "best_epoch": 5, **trained,
                "config": {"epochs": 6, "augment": "light", "loss": "bce", "lr": 1e-3, "seed": 0,
                           "cached_views": 2}}
    for model, kind, extra in (("lite0-logistic", "head", lite0), ("lite2-logistic", "head", lite2),
                               ("lite2-logistic-union", "head", union), ("finetune-lite0", "finetune", on_images),
                               ("finetune-lite0-cached", "finetune", on_cache)):
        scores = {p: np.clip(0.3 + 0.4 * y[p] + rng.normal(0, 0.5, y[p].shape), 0, 1) for p in ("val", "test")}
        result = evaluate(y["val"], scores["val"], y["test"], scores["test"], GENRES)
        write_result(tmp_path / "results", "anime-posters", model, {"kind": kind, "data": "d", **extra, **result})
        write_scores(tmp_path / "results", "anime-posters", model, {p: (ids[p], y[p], scores[p]) for p in scores})
    ensemble(tmp_path / "results", "anime-posters")
    steps = Steps(tmp_path)
    steps.seconds = {features_step("anime-posters", BACKBONE_CHOICES[0]): 100.0,
                     features_step("anime-posters", BACKBONE_CHOICES[1]): 200.0,
                     "anime-posters finetune-lite0": 300.0, "anime-posters finetune-lite0-cached": 290.0,
                     "anime-posters ensemble": 2.0}
    speed = {"posters": 400, "batch_size": 8, "torch": {"whole_path": 20.0, "model_only": 25.0},
             "onnxruntime": {"whole_path": 60.0, "model_only": 100.0}}
    mlknn = {"dataset": "movie-posters", "posters": 10, "k": 20, "ours_s": 1.0, "theirs_s": 6.0,
             "same_predictions": True, "hnsw_recall": 0.991}

    text = write_bench_report(tmp_path, tmp_path / "bench.md", steps.seconds, speed, mlknn, 900.0,
                              "make bench").read_text()

    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in text.splitlines() if line.startswith("| ")}
    # wall s: a head costs the features plus its tuning; the ensemble costs its members too
    assert rows["lite0-logistic"][-2] == "105"
    assert rows["finetune-lite0"][-2] == "300" and rows["finetune-lite0-cached"][-2] == "290"
    assert rows["lite2-logistic"][-2] == rows["lite2-logistic-union"][-2] == "205"
    ensemble_members = json.loads((tmp_path / "results" / "anime-posters" / "ensemble.json").read_text())["members"]
    walls = {"lite0-logistic": 105, "lite2-logistic": 205, "lite2-logistic-union": 205, "finetune-lite0": 300,
             "finetune-lite0-cached": 290}
    assert rows["ensemble"][-2] == str(2 + sum(walls[m] for m in ensemble_members))
    assert f"`{BACKBONE_CHOICES[1]}` features instead of `{BACKBONE_CHOICES[0]}`" in text
    assert "| anime-posters | trained with anilist-covers too: 700 posters added (200 left out" in text
    assert re.search(r"\| anime-posters \| fine-tuning on cached activations: 224 px, frozen up to stage5, 2 views, "
                     r"6 epochs \(best 5\), against on images: 160 px, frozen up to stage4, 6 epochs \| val mAP "
                     r"[.0-9]+, test mAP [.0-9]+, 300 s \| val mAP [.0-9]+, test mAP [.0-9]+, 290 s \| (yes|no) \|",
                     text)
    assert "| anime-posters | ensemble (" in text and "vs the best single model" in text
    assert "per-genre thresholds vs one global threshold (ensemble)" in text
    assert "| 60.0 | 20.0 | 3.00x |" in text and "| 60.0 | 100.0 | 0.60 |" in text
    assert "6.0x faster; same predictions: yes" in text and "against exact ones | 0.991 |" in text
    # each data set opens with its headline, and the tables carry intervals
    section = text[text.index("## anime-posters"):]
    assert re.match(r"\*\*Headline\.\*\* The (cross-validated|out-of-fold validation|validation) mAP picks \*\*",
                    section.splitlines()[2])
    assert "| model | test mAP (95% CI) | minus the picked model (95% CI) | verdict |" in section
    assert re.match(r"\d\.\d{3} \(\d\.\d{3}–\d\.\d{3}\)$", rows["lite0-logistic"][2])


class PlannedSteps(Steps):
    """Steps that record each command instead of running it."""

    def __init__(self, work):
        super().__init__(work)
        self.commands: dict[str, list[str]] = {}

    def run(self, name, done, *command):
        self.commands[name] = list(command)
        return 0.0


def test_the_hour_leaves_out_what_full_runs(tmp_path):
    """make bench: one backbone, fine-tuning on cached activations only, no final ensemble, the movie logistic
    head not cross-validated, no PosterNet on the movies; FULL=1 adds each of those."""
    rng = np.random.default_rng(0)
    y, scores = (rng.random((2, 50, 3)) < 0.4).astype(np.uint8), rng.random((2, 50, 3))
    figures = evaluate(y[0], scores[0], y[1], scores[1], GENRES)
    for dataset in ("anime-posters", "movie-posters"):
        write_result(tmp_path / "results", dataset, ENSEMBLE, {"kind": "ensemble", "members": {"cnn-posternet": 1},
                                                               "data": "d", **figures})
        for backbone, val_map in zip(BACKBONE_CHOICES, (0.30, 0.31)):
            val = {**figures["val"], "overall": {**figures["val"]["overall"], "mAP_macro": val_map}}
            write_result(tmp_path / "results", dataset, head_name(backbone, "logistic"),
                         {"kind": "head", "data": "d", "backbone": backbone, "tta": "none", "head": "logistic",
                          "params": {}, **figures, "val": val})
    plans = {}
    for scope in (HOUR, FULL):
        for dataset in ("anime-posters", "movie-posters"):
            steps = PlannedSteps(tmp_path)
            run_dataset(steps, tmp_path / "data" / dataset, tmp_path, scope)
            plans[scope.final_ensemble, dataset] = steps.commands
    hour, full = plans[False, "anime-posters"], plans[True, "anime-posters"]
    on_images = RunSpec("finetune", FINETUNE["backbone"], FINETUNE["freeze"], FINETUNE["image_size"])
    assert set(full) - set(hour) == {f"anime-posters {on_images.name}",
                                     f"anime-posters {replace(on_images, union='anilist-covers').name}",
                                     "anime-posters cnn-posternet final", "anime-posters final ensemble",
                                     *(f"anime-posters logistic {b}" for b in BACKBONE_CHOICES)}
    assert set(hour) - set(full) == set()
    # each network's step trains the model its spec names, with the spec's flags
    assert full[f"anime-posters {on_images.name}"][-len(on_images.flags()):] == on_images.flags()
    assert full[f"anime-posters {replace(on_images, union='anilist-covers').name}"][-2:] == [
        "--union-data", str(tmp_path / "data" / "anilist-covers")]
    assert hour["anime-posters heads cv"][-5:] == ["logistic", "mlknn", "mlp", "--cv", "5x1"]
    # FULL's heads read the features the logistic head chose: Lite2, better on validation here
    assert any(BACKBONE_CHOICES[1] in arg for arg in full["anime-posters heads cv"])
    assert not any(BACKBONE_CHOICES[1] in arg for arg in hour["anime-posters heads cv"])
    movies = plans[False, "movie-posters"]
    assert "movie-posters cnn-posternet" not in movies and "movie-posters cnn-posternet" in plans[True, "movie-posters"]
    assert movies["movie-posters heads"][-3:] == ["--heads", "logistic", "mlp"]
    assert movies["movie-posters heads cv"][-4:] == ["--heads", "mlknn", "--cv", "5x1"]
    assert plans[True, "movie-posters"]["movie-posters heads cv"][-5:] == ["logistic", "mlknn", "mlp", "--cv", "5x1"]
