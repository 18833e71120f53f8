"""Every model's results as one JSON file: results/<dataset>/<model>.json."""
from __future__ import annotations

import json
from pathlib import Path

from posters.files import write_text_atomic


def write_result(results_dir: Path | str, dataset: str, model: str, result: dict) -> Path:
    path = Path(results_dir) / dataset / f"{model}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps({"model": model, "dataset": dataset, **result}, indent=1))
    return path


def read_results(results_dir: Path | str) -> dict[str, list[dict]]:
    """dataset -> its results, sorted by model name."""
    results: dict[str, list[dict]] = {}
    for path in sorted(Path(results_dir).glob("*/*.json")):
        result = json.loads(path.read_text())
        results.setdefault(result["dataset"], []).append(result)
    return results
