"""How predict, serve and the API are told which model to load, and the one route that loads it: flags that need
no heavy import to parse, the model they name, and `load_predictor`, which takes the light path (predict/light.py,
ONNX Runtime and NumPy alone) wherever the model allows it and loads the full model (PyTorch) only where it must:
a network, an ensemble, ML-kNN, PyTorch or reduced precision asked for, or a backbone's local weights."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from postergenre.builtin import BUILTIN, NAMES
from postergenre.core.runtime import ENGINES, INFERENCE_PRECISION
from postergenre.modelfiles import HEAD_SUFFIX, NETWORK_SUFFIX, ModelFileError, find_final_model, model_path


class Predicts(Protocol):
    """What every loaded model offers its callers (predict.models.Predictor, predict.light.LightHead)."""
    name: str
    genres: list[str]
    thresholds: np.ndarray
    recall_thresholds: dict[str, float] | None
    final: dict | None  # a final model's record of its refit on every labelled poster (make final)
    batch_size: int

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        """Probabilities (images, genres) of decoded RGB posters."""


def load_predictor(path: Path | str, weights: str | None = None, precision: str = INFERENCE_PRECISION,
                   engine: str = "auto", trust_timm: bool = False) -> Predicts:
    """The model saved at `path`, on the light path where it can run there, else in full."""
    from postergenre.predict.light import load_light

    light = None if weights else load_light(path, engine, precision)
    if light is not None:
        return light
    from postergenre.predict.models import load_model  # PyTorch: seconds to import, so only where needed

    return load_model(path, weights, precision, engine, trust_timm=trust_timm)


def builtin_or(model: Path | str) -> Path:
    """`model` as a path: the built-in model's name (`anime`) names its file."""
    return BUILTIN if str(model) in NAMES else Path(model)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, or --dataset for that data set's best saved model (chosen_model)."""
    parser.add_argument("--model", help="a saved model: models/*.skops (a head), models/*.safetensors (a network) or "
                        "models/<dataset>-final.json (an ensemble), or `anime` for the built-in one; default: "
                        "--dataset's final model, else the one picked by cross-validated or validation mAP; without "
                        "--dataset either, the built-in anime genre model")
    parser.add_argument("--dataset", help="without --model: use this data set's best saved model")
    parser.add_argument("--models-dir", default="models", help="where --dataset's models are looked for")
    parser.add_argument("--results-dir", default="results", help="where --dataset's results are looked for")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="a head's backbone: auto is onnxruntime on the CPU in fp32, torch otherwise")
    parser.add_argument("--trust-timm", action="store_true",
                        help="build a model on a timm backbone (timm:<name>), which may be large or download weights")


def chosen_model(args: argparse.Namespace) -> Path:
    """The model file the flags of `add_model_arguments` name: --model, else --dataset's best, else the built-in
    anime genre model (postergenre.builtin); a choice the flags did not spell out is announced on stderr."""
    if args.model:
        return builtin_or(args.model)
    if not args.dataset:
        if getattr(args, "data", None) is not None:
            raise ModelFileError("give --model, or --dataset for that data set's evaluated model, to score --data")
        print(f"model: the built-in anime genre model ({BUILTIN}; its card {BUILTIN.with_suffix('.md').name}); "
              "--model or --dataset for your own", file=sys.stderr, flush=True)
        return BUILTIN
    scoring = getattr(args, "data", None) is not None  # a labelled part: the final model has seen it
    path = default_model(args.dataset, args.models_dir, args.results_dir, final=not scoring)
    why = ("final model, refit on all its labelled posters" if path == find_final_model(args.models_dir, args.dataset)
           else "evaluated model picked by cross-validated or validation mAP"
           + (" (its final model has seen these posters)" if scoring else ""))
    print(f"model: {path} ({args.dataset}'s {why})", file=sys.stderr, flush=True)  # stdout: the predictions
    return path


def default_model(dataset: str, models_dir: Path | str = "models", results_dir: Path | str = "results",
                  final: bool = True) -> Path:
    """The final model of `dataset` (make final) if there is one and `final`, else its saved model that the
    evaluation picks (evaluation.compare.choosing_score); the error lists the saved models there are."""
    models_dir = Path(models_dir)
    if final and (found := find_final_model(models_dir, dataset)):
        return found
    # only here: results import scikit-learn's metrics, seconds of importing that a final model's answer does
    # without
    from postergenre.evaluation.compare import choosing_score
    from postergenre.evaluation.results import read_results

    ranked = sorted((r for r in read_results(results_dir).get(dataset, []) if r["kind"] in ("head", "finetune", "cnn")),
                    key=lambda r: -choosing_score(r)[0])
    for result in ranked:
        for suffix in (HEAD_SUFFIX, NETWORK_SUFFIX):
            if (path := model_path(models_dir, dataset, result["model"], suffix)).is_file():
                return path
    saved = sorted(p.name for p in models_dir.glob("*") if p.suffix in (HEAD_SUFFIX, NETWORK_SUFFIX))
    raise ModelFileError(f"no saved model of {dataset} in {models_dir.resolve()}/ (make heads, finetune or cnn save "
                         f"them; --models-dir names another folder); "
                         + (f"pass one of: {', '.join(saved[:8])}" if saved else "none is saved yet"))
