"""A trained network's name and reproducing command come from its run spec alone (core/runspec.py)."""
import json
from dataclasses import replace

from bench import comparison, plan
from postergenre.core.runspec import RunSpec
from postergenre.evaluation.report import _command
from tests.test_bench import PlannedSteps


def test_names_are_the_ones_saved_models_already_have():
    on_images = RunSpec("finetune", "efficientnet_lite0", "stage4", 160)
    assert on_images.name == "finetune-efficientnet_lite0-freeze-stage4-160px"
    assert replace(on_images, union="anilist-covers", seed=1).name == \
        "finetune-efficientnet_lite0-freeze-stage4-160px-union-anilist-covers-seed1"
    assert RunSpec("finetune", "timm:convnext_tiny", "stage2", loss="asl", mixup=0.4, cached_views=2).name == \
        "finetune-timm-convnext_tiny-freeze-stage2-asl-mixup0.4-cached2"
    assert RunSpec("cnn").name == "cnn-posternet" and RunSpec("cnn", widths=(8, 16), seed=2).name == \
        "cnn-posternet-8-16-seed2"


def test_the_trained_run_records_its_spec(trained):
    result = json.loads(next((trained / "results").glob("*/cnn-*.json")).read_text())
    spec = RunSpec.of(result)
    assert spec.name == result["model"] and spec.widths == (4, 8, 8, 8)
    legacy = {k: v for k, v in result.items() if k != "spec"}  # results written before specs
    assert RunSpec.of(legacy).name == "cnn-posternet"  # their widths were not recorded: the default


def test_a_changed_spec_field_moves_the_bench_and_the_report_with_it(tmp_path, monkeypatch):
    """Freeze the cached fine-tuning up to stage6 instead: the bench plans, names and trains that run, and the
    report's command for its result reproduces it, with no name rebuilt or parsed anywhere."""
    monkeypatch.setitem(plan.CACHED_FINETUNE, "freeze", "stage6")
    steps = PlannedSteps(tmp_path)
    comparison.run_dataset(steps, tmp_path / "data" / "movie-posters", tmp_path, plan.HOUR)
    spec = RunSpec("finetune", "efficientnet_lite0", "stage6", cached_views=1)
    command = steps.commands[f"movie-posters {spec.name}"]
    assert command[command.index("--freeze") + 1] == "stage6" and "stage5" not in " ".join(steps.commands)
    result = {"kind": "finetune", "data": "d/movie-posters", "spec": spec.to_dict(),
              "config": {"epochs": 3, "augment": "light"}}
    assert _command(result) == ('make finetune DATA=d/movie-posters BACKBONE=efficientnet_lite0 FREEZE=stage6 '
                                'EPOCHS=3 AUGMENT=light TRAIN_ARGS="--cached-views 1"')
    union = {**result, "spec": replace(spec, union="anilist-covers", seed=1).to_dict()}
    assert _command(union).endswith('TRAIN_ARGS="--cached-views 1 --union-data d/anilist-covers" SEEDS="1"')
