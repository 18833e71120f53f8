"""How predict and serve are told which model to load: flags that need no heavy import to parse."""
from __future__ import annotations

import argparse

from postergenre.core.runtime import ENGINES


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, or --dataset for that data set's best saved model (predict.models.chosen_model)."""
    parser.add_argument("--model", help="a saved model: models/*.skops (a head), models/*.safetensors (a network) or "
                        "models/<dataset>-final.json (an ensemble); default: --dataset's final model, else the one "
                        "picked by cross-validated or validation mAP")
    parser.add_argument("--dataset", help="without --model: use this data set's best saved model")
    parser.add_argument("--models-dir", default="models", help="where --dataset's models are looked for")
    parser.add_argument("--results-dir", default="results", help="where --dataset's results are looked for")
    parser.add_argument("--engine", default="auto", choices=ENGINES,
                        help="a head's backbone: auto is onnxruntime on the CPU in fp32, torch otherwise")
    parser.add_argument("--trust-timm", action="store_true",
                        help="build a model on a timm backbone (timm:<name>), which may be large or download weights")
