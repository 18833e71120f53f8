"""The report's reproduce commands come from what a result records, never from the model's name."""
from evaluation.report import _command

CONFIG = {"epochs": 6, "augment": "light", "loss": "bce", "mixup": 0.0}


def finetune_result(model: str, **settings) -> dict:
    return {"kind": "finetune", "model": model, "data": "d", "backbone": "efficientnet_lite0", "freeze": "stage4",
            "image_size": 160, "config": CONFIG, **settings}


def test_the_input_size_flag_comes_from_the_result():
    given = finetune_result("renamed-by-hand", image_size_given=True)
    assert _command(given) == ('make finetune DATA=d BACKBONE=efficientnet_lite0 FREEZE=stage4 EPOCHS=6 '
                               'AUGMENT=light TRAIN_ARGS="--image-size 160"')
    # a name that looks like an explicit size changes nothing when the result says it was the default
    default = finetune_result("finetune-efficientnet_lite0-freeze-stage4-160px", image_size_given=False)
    assert "--image-size" not in _command(default)
