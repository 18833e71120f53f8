"""Any timm model as a backbone: its own input spec and stages, local weights, features, fine-tuning, predict."""
import argparse

import numpy as np
import pytest
import timm
import torch

from postergenre.core.workspace import file_sha256
from postergenre.core.runspec import is_backbone_name
from postergenre.extract.backbones import BackboneError, backbone_argument, build_backbone
from postergenre.extract.features import load_features
from postergenre.modelfiles.networks import read_state_dict
from postergenre.posters.data import read_posters
from postergenre.predict.models import load_model, predict_files
from tests.conftest import TIMM_ARCHITECTURE, run_module

BACKBONE = f"timm:{TIMM_ARCHITECTURE}"


def test_a_timm_backbone_from_a_local_file(timm_weights):
    backbone = build_backbone(BACKBONE, str(timm_weights))
    reference = timm.create_model(TIMM_ARCHITECTURE, pretrained=False, num_classes=0).eval()
    reference.load_state_dict({k: v for k, v in read_state_dict(timm_weights).items()
                               if not k.startswith("fc.")})  # the classifier, which num_classes=0 leaves out
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(backbone.model(x), expected)
    assert backbone.dim == expected.shape[1] and backbone.image_size == 160  # its pretrained_cfg's, not 224
    assert backbone.mean == backbone.std == (0.5, 0.5, 0.5) and backbone.weights_sha256 == file_sha256(timm_weights)
    names = [name for name, _ in backbone.stages]
    assert names[0] == "stem" and names[1:] == [f"stage{i}" for i in range(1, len(names))] and len(names) > 4
    ours = {id(m) for m in backbone.model.modules()}
    assert all(id(m) in ours for _, modules in backbone.stages for m in modules)


@pytest.mark.slow
def test_features_finetuning_and_predict_with_a_timm_backbone(sample_dir, sample_split, tmp_path, timm_weights):
    features = tmp_path / f"sample-timm-{TIMM_ARCHITECTURE}.h5"
    run_module("extract", "--data", str(sample_dir), "--split", str(sample_split), "--backbone", BACKBONE,
               "--weights", str(timm_weights), "--out", str(features))
    loaded = load_features(features)
    assert loaded.attrs["backbone"] == BACKBONE and loaded.attrs["engine"] == "onnxruntime"
    assert loaded.X.shape[1] == build_backbone(BACKBONE, "random").dim and np.isfinite(loaded.X).all()

    run_module("finetune", "--data", str(sample_dir), "--split", str(sample_split), "--backbone", BACKBONE,
               "--weights", str(timm_weights), "--freeze", "stage3", "--image-size", "64", "--epochs", "1",
               "--batch-size", "16", "--workers", "0", "--runs-dir", str(tmp_path / "runs"),
               "--results-dir", str(tmp_path / "results"), "--models-dir", str(tmp_path / "models"))
    saved = next((tmp_path / "models").glob("*.safetensors"))
    assert saved.name.endswith(f"-finetune-timm-{TIMM_ARCHITECTURE}-freeze-stage3-64px.safetensors")
    predictor = load_model(saved, trust_timm=True)  # the user built it: the file is theirs
    images = [p.image for p in read_posters(sample_dir).posters[:5]]
    probabilities, errors = predict_files(predictor, images)
    assert probabilities.shape == (5, len(predictor.genres)) and not errors


def test_timm_names_are_checked_before_anything_loads():
    """--backbone's type (test_cli.py runs it through a command); a name timm lacks fails when built."""
    assert is_backbone_name("timm:convnext_base.fb_in22k") and is_backbone_name("efficientnet_lite0")
    assert not any(is_backbone_name(n) for n in ("timm:../x", "timm:ResNet", "timm:", "vgg", None))
    with pytest.raises(argparse.ArgumentTypeError, match="invalid backbone 'timm:../x'"):
        backbone_argument("timm:../x")
    with pytest.raises(BackboneError, match="timm has no model 'no_such_net'"):
        build_backbone("timm:no_such_net", "random")
    with pytest.raises(BackboneError, match="timm:vit_7b_patch16_dinov3: 6,716 M parameters, over the 400 M"):
        build_backbone("timm:vit_7b_patch16_dinov3", "random")  # sized from its config: nothing allocated
