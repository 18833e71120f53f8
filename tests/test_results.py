"""A result file's schema (evaluation.results.Result): written and read through it, a misfit refused in one line."""
import json
import re

import numpy as np
import pytest
from pydantic import ValidationError

from postergenre.core.errors import DataError
from postergenre.evaluation.metrics import evaluate
from postergenre.evaluation.results import read_result, read_results, write_result

GENRES = ["Action", "Comedy", "Drama"]
HEAD = {"kind": "head", "data": "data/toy", "backbone": "efficientnet_lite0", "tta": "none", "head": "logistic",
        "params": {"C": 1.0}}


def _evaluated() -> dict:
    rng = np.random.default_rng(0)
    y = (rng.random((2, 80, 3)) < 0.4).astype(np.uint8)
    y[:, :, 0] |= y.sum(axis=2) == 0
    scores = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.3, y.shape), 0, 1)
    return evaluate(y[0], scores[0], y[1], scores[1], GENRES)


def test_a_result_keeps_what_its_kind_adds_and_a_writer_that_drifts_fails(tmp_path):
    evaluated = _evaluated()
    path = write_result(tmp_path, "toy", "m", {**HEAD, **evaluated})
    result = read_result(path)
    assert result["params"] == {"C": 1.0} and result["model"] == "m" and result["dataset"] == "toy"
    assert result["test"] == json.loads(json.dumps(evaluated["test"])) and "intervals" in result["test"]
    assert [r["model"] for r in read_results(tmp_path)["toy"]] == ["m"]
    without_test = {k: v for k, v in evaluated.items() if k != "test"}
    with pytest.raises(ValidationError, match="test"):
        write_result(tmp_path, "toy", "drifted", {**HEAD, **without_test})
    assert not (tmp_path / "toy" / "drifted.json").exists()


@pytest.mark.parametrize("change, message", [
    (lambda r: {**r, "kind": "rocket"},
     r"\(Input tag 'rocket' found using 'kind' does not match any of the expected tags: 'baseline'"),
    (lambda r: {**r, "val": {**r["val"], "overall": []}}, r"\(head\.val\.overall: Input should be an object"),
    (lambda r: {**r, "test": {**r["test"], "intervals": {"mAP_macro": [0.1]}}},
     r"\(head\.test\.intervals\.mAP_macro: "),
    (lambda r: {**r, "val": {**r["val"], "overall": {}}}, r"\(head\.val\.overall: Value error, no mAP_macro"),
    (lambda r: {**r, "thresholds": {}}, r"\(head\.thresholds\.per_genre: Field required"),
    (lambda r: {**r, "kind": "finetune"}, r"\(finetune\.config: Field required"),
    (lambda r: {**r, "kind": "ensemble", "members": {}},
     r"\(ensemble\.members: Dictionary should have at least 1 item"),
    (lambda r: {**r, "dataset": "../../elsewhere"},
     r"\(its data set and model, '\.\./\.\./elsewhere' and 'm', are not those its path names\)"),
])
def test_a_result_file_that_does_not_fit_is_one_line(tmp_path, capsys, change, message):
    """One line naming it; read_results lists it and goes on with the other files."""
    path = write_result(tmp_path, "toy", "m", {**HEAD, **_evaluated()})
    write_result(tmp_path, "toy", "fine", {**HEAD, **_evaluated()})
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: not a result of this version {message}"):
        read_result(path)
    assert [r["model"] for r in read_results(tmp_path)["toy"]] == ["fine"]
    assert capsys.readouterr().err.startswith(f"skipped: {path}: not a result of this version")


def test_a_result_file_that_is_not_json_is_one_line(tmp_path):
    path = tmp_path / "toy" / "m.json"
    path.parent.mkdir()
    path.write_text('{"model": ')
    with pytest.raises(DataError, match=r"m\.json: not a result of this version \(Invalid JSON: EOF"):
        read_result(path)
    with pytest.raises(DataError, match=r"gone\.json: No such file"):
        read_result(tmp_path / "gone.json")
