"""Pooling of EfficientNet-Lite0's last feature map: average, GeM (p = 3), avg+max, multi-scale.

Embeds one data set's posters once, keeps the four poolings side by side, and tunes the logistic
and MLP heads on each, as `make heads` does. Multi-scale won and became the
`efficientnet_lite0_multiscale` backbone; this script is what docs/ablations.md's pooling rows ran.

    python ablations/pooling.py ../shared/data/anime-posters features/anime-posters-split.json
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from postergenre.evaluation.metrics import macro_map  # noqa: E402
from postergenre.extract.backbones import build_backbone  # noqa: E402
from postergenre.heads.estimators import HEADS  # noqa: E402
from postergenre.heads.train import tune  # noqa: E402
from postergenre.posters.data import read_posters  # noqa: E402
from postergenre.posters.images import SkippingImages, eval_transform  # noqa: E402
from postergenre.posters.split import label_matrix, load_current, split_posters  # noqa: E402


def main(data: str, split_path: str) -> None:
    torch.set_num_threads(2)
    backbone = build_backbone("efficientnet_lite0")
    poster_set = read_posters(data)
    split = load_current(split_path, poster_set)
    parts = split_posters(poster_set, split)
    net, stage_ends = backbone.model.net, {}
    for i, block in enumerate(net.blocks):  # timm's blocks.i is stage i + 1
        block.register_forward_hook(lambda m, inputs, out, name=f"stage{i + 1}": stage_ends.__setitem__(name, out))
    pooled = {}
    for part, posters in parts.items():
        images = SkippingImages([p.image for p in posters], eval_transform(backbone.image_size, backbone.mean,
                                                                           backbone.std), backbone.image_size)
        batches = {k: [] for k in ("avg", "gem", "avgmax", "multiscale")}
        with torch.inference_mode():
            for x, _ in torch.utils.data.DataLoader(images, batch_size=8, num_workers=1):
                last = net.forward_features(x)
                avg = last.mean((2, 3))
                batches["avg"].append(avg)
                batches["gem"].append(last.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3))
                batches["avgmax"].append(torch.cat([avg, last.amax((2, 3))], 1))
                batches["multiscale"].append(torch.cat([avg, stage_ends["stage5"].mean((2, 3)),
                                                        stage_ends["stage6"].mean((2, 3))], 1))
        pooled[part] = ({k: torch.cat(v).numpy() for k, v in batches.items()},
                        label_matrix([p.genres for p in posters], split.genres))
    for pooling in ("avg", "gem", "avgmax", "multiscale"):
        (X_train, Y_train), (X_val, Y_val), (X_test, Y_test) = (
            (pooled[p][0][pooling], pooled[p][1]) for p in ("train", "val", "test"))
        for head in ("logistic", "mlp"):
            estimator, grid = HEADS[head]
            model, params, _ = tune(estimator, grid, X_train, Y_train, X_val, Y_val)
            val = macro_map(Y_val, model.predict_proba(X_val))
            test = macro_map(Y_test, model.predict_proba(X_test))
            print(f"{split.dataset} {pooling:10s} {head:9s} val mAP {val:.3f} test mAP {test:.3f} {params}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
