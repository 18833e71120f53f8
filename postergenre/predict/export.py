"""python -m postergenre.predict.export --model models/<dataset>-<model>.safetensors --out FILE.onnx

A saved network (make finetune or make cnn) as an ONNX graph, for deploying it with any ONNX
runtime and without this project: input `images`, (n, 3, size, size) float32, normalised with the
mean and std written beside it; output `outputs`, one logit per genre (sigmoid gives probabilities).
FILE.json beside the graph holds the genres, thresholds, image size, mean and std.
"""
import json
from pathlib import Path

from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.core.files import write_text_atomic
from postergenre.extract.engines import export_onnx
from postergenre.predict.models import load_model


def export(model: Path, out: Path) -> None:
    predictor = load_model(model, engine="torch")
    if predictor.network is None:
        raise DataError(f"{model}: a head, not a network; its backbone is exported by `make features` "
                        f"(ENGINE=onnxruntime) and the head itself is a scikit-learn model")
    out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(predictor.network, predictor.spec.size, out)
    spec = predictor.spec
    write_text_atomic(out.with_suffix(".json"), json.dumps({
        "model": predictor.name, "input": "images", "output": "outputs (logits)", "genres": predictor.genres,
        "thresholds": predictor.thresholds.tolist(), "image_size": spec.size, "mean": list(spec.mean),
        "std": list(spec.std), "resize": f"squash to {spec.size}x{spec.size}, RGB, scaled to [0, 1]"}, indent=1))
    print(f"{out} and {out.with_suffix('.json')}")


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.predict.export", __doc__)
    parser.add_argument("--model", required=True, help="a saved network: models/<dataset>-<model>.safetensors")
    parser.add_argument("--out", required=True, help="the ONNX file to write")
    args = parser.parse_args(argv)
    cli.run(lambda: export(Path(args.model), Path(args.out)))


if __name__ == "__main__":
    main()
