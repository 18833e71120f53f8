"""Model files run no code when loaded: every loader refuses pickles, untrusted types and hostile settings."""
import json
import os
import re
import struct
import shutil

import joblib
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.base import clone
from skops.io import dump as skops_dump

from postergenre.extract.backbones import build_backbone
from postergenre.extract.features import Features, embedding_fingerprint
from postergenre.heads.estimators import HEADS
from postergenre.heads.train import save_head
from postergenre.modelfiles import ModelFileError
from postergenre.modelfiles.heads import read_head
from postergenre.modelfiles.networks import read_checkpoint, read_network
from postergenre.posters.split import Split
from postergenre.predict.models import load_model
from tests.conftest import run_module


class RunsACommand:
    """What a hostile model file holds: unpickling it calls os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def hostile_files(folder, marker):
    """The same payload in every container a user might be handed."""
    folder.mkdir()
    torch.save({"model": RunsACommand(marker)}, folder / "net.pt")
    joblib.dump({"estimator": RunsACommand(marker)}, folder / "head.joblib")
    shutil.copy(folder / "net.pt", folder / "renamed.safetensors")
    shutil.copy(folder / "head.joblib", folder / "renamed.skops")
    return sorted(folder.iterdir())


def test_pickled_payloads_are_refused_unrun(tmp_path, sample_dir):
    marker = tmp_path / "ran"
    for path in hostile_files(tmp_path / "hostile", marker):
        with pytest.raises(ModelFileError, match=f"^{path}: ") as refused:
            load_model(path)
        assert "\n" not in str(refused.value)
        if path.suffix in (".pt", ".joblib"):
            assert "pickles, which can run code when loaded" in str(refused.value)
    with pytest.raises(ModelFileError, match="can read safely"):
        read_checkpoint(tmp_path / "hostile" / "net.pt")
    assert not marker.exists()

    # through each command a user runs
    evil = str(tmp_path / "hostile" / "net.pt")
    image = str(next((sample_dir / "images").iterdir()))
    for command in (["predict", "--model", evil, "--images", image, "--out", str(tmp_path / "p.csv")],
                    ["explain", "poster", "--model", evil, "--image", image, "--genre", "Action",
                     "--out", str(tmp_path / "h.png")],
                    ["serve", "--model", evil, "--port", "0"]):
        result = run_module(*command, check=False)
        assert result.returncode == 1 and result.stderr.startswith(f"error: {evil}: .pt model files are pickles")
    assert not marker.exists() and not (tmp_path / "p.csv").exists()


def test_resume_refuses_a_pickled_checkpoint(sample_dir, sample_split, tmp_path):
    marker = tmp_path / "ran"
    run = tmp_path / "runs" / Split.load(sample_split).dataset / "cnn-posternet-4-8-8-8"
    run.mkdir(parents=True)
    torch.save({"model": {}, "state": RunsACommand(marker)}, run / "last.pt")
    result = run_module("cnn", "--data", str(sample_dir), "--split", str(sample_split), "--runs-dir",
                        str(tmp_path / "runs"), "--results-dir", str(tmp_path / "results"), "--models-dir",
                        str(tmp_path / "models"), "--widths", "4,8,8,8", "--workers", "0", "--epochs", "1", "--resume",
                        check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {run / 'last.pt'}: not a checkpoint this version can read safely")
    assert not marker.exists()


def test_a_head_file_with_untrusted_types_is_refused(tmp_path):
    skops_dump({"estimator": os.system, "settings": {}}, tmp_path / "head.skops")
    with pytest.raises(ModelFileError, match="holds types a head never has .*system.*not loaded"):
        read_head(tmp_path / "head.skops")
    (tmp_path / "broken.skops").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match="not a saved head"):
        read_head(tmp_path / "broken.skops")


def test_network_settings_are_checked_before_anything_is_built(trained, tmp_path):
    saved = next((trained / "models").glob("*.safetensors"))
    weights, settings = read_network(saved)
    assert load_model(saved).genres == settings["genres"]

    def with_settings(name, **changes):
        path = tmp_path / f"{name}.safetensors"
        save_file(weights, str(path), metadata={"postergenre": json.dumps({**settings, **changes})})
        return path

    huge = with_settings("huge", build={"widths": [10**6] * 4})  # would ask for terabytes
    with pytest.raises(ModelFileError, match="not a model this version saved \\(cnn.build.widths.0: "):
        load_model(huge)
    with pytest.raises(ModelFileError, match="\\(cnn.genres: "):
        load_model(with_settings("genres", genres=["Action"] * 5000, thresholds=[0.5] * 5000))
    with pytest.raises(ModelFileError, match="\\(finetune.build.backbone: Value error, not a backbone name\\)"):
        load_model(with_settings("backbone", kind="finetune", build={"backbone": "../../etc", "freeze": "none"}))
    malformed = {  # each a one-line refusal naming what is wrong, before anything is built
        "extra key": ({"surprise": 1}, "cnn.surprise: Extra inputs"),
        "list for a dict": ({"spec": [224]}, "cnn.spec: Input should be a valid dictionary"),
        "zero std": ({"spec": {**settings["spec"], "std": [0, 1, 1]}}, "cnn.spec.std.0: Input should be greater"),
        "boolean batch size": ({"batch_size": True}, "cnn.batch_size: Input should be a valid integer"),
        "NaN threshold": ({"thresholds": [float("nan")] * len(settings["genres"])}, "cnn.thresholds.0: "),
        "unknown kind": ({"kind": "vit"}, "settings: Input tag 'vit' found"),
    }
    for name, (changes, message) in malformed.items():
        with pytest.raises(ModelFileError, match=re.escape(message)) as error:
            load_model(with_settings(name.replace(" ", "-"), **changes))
        assert "\n" not in str(error.value), name
    deep = tmp_path / "deep.safetensors"
    save_file(weights, str(deep), metadata={"postergenre": "[" * 200_000 + "]" * 200_000})
    with pytest.raises(ModelFileError, match="not a saved network"):
        load_model(deep)
    timm_net = with_settings("timm", kind="finetune", build={"backbone": "timm:vit_huge_patch14_224", "freeze": "none"})
    with pytest.raises(ModelFileError, match="built on timm:vit_huge_patch14_224, not a built-in backbone; pass "
                                             "--trust-timm"):
        load_model(timm_net)
    with pytest.raises(ModelFileError, match="weights of another architecture"):
        load_model(with_settings("wider", build={"widths": [4, 8, 8, 16]}))
    (tmp_path / "garbage.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a saved network"):
        load_model(tmp_path / "garbage.safetensors")
    with pytest.raises(ModelFileError, match="model file not found"):
        load_model(tmp_path / "nope.safetensors")
    assert sorted(load_file(saved)) == sorted(weights)


def test_a_sparse_file_declaring_huge_weights_is_refused_unread(tmp_path):
    """A 64 GiB tensor declared in the header of a file that is sparse on disk: refused from the header."""
    path = tmp_path / "sparse.safetensors"
    header = json.dumps({"__metadata__": {"postergenre": "{}"},
                         "w": {"dtype": "F32", "shape": [2**34], "data_offsets": [0, 2**36]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 2**36)  # a hole: nothing on disk
    with pytest.raises(ModelFileError, match="declares 64.0 GiB of weights, over the 2 GiB"):
        load_model(path)


def test_a_head_is_checked_against_the_features_its_backbone_gives(tmp_path):
    backbone = build_backbone("efficientnet_lite0")
    X, Y = np.random.default_rng(0).normal(size=(40, backbone.dim)), np.tile(np.eye(2, dtype=np.uint8), (20, 1))
    head = clone(HEADS["logistic"][0]).fit(X, Y)

    def saved(name, **attrs):
        features = Features(np.arange(40).astype(str), np.array(["train"] * 40), X, Y, ["A", "B"],
                            {**embedding_fingerprint(backbone, tta=False), "batch_size": 8, **attrs})
        save_head(tmp_path / name, head, features, {}, [0.5, 0.5])
        return tmp_path / name

    predictor = load_model(saved("good.skops"))
    assert predictor.genres == ["A", "B"] and predictor.spec.size == 224 and not predictor.embedder.tta
    with pytest.raises(ModelFileError, match="image_size: head has 260, features have 224"):
        load_model(saved("resized.skops", image_size=260))
    with pytest.raises(ModelFileError, match="weights_sha256: head has 'other'"):
        load_model(saved("reweighted.skops", weights_sha256="other"))
    with pytest.raises(ModelFileError, match="built on timm:resnet18, not a built-in backbone"):
        load_model(saved("timm.skops", backbone="timm:resnet18"))  # refused before timm downloads anything


@pytest.mark.parametrize("name", ["logistic", "mlp"])
def test_every_head_the_project_saves_loads_again_with_a_genre_on_every_poster(tmp_path, name):
    """One-vs-rest fits scikit-learn's _ConstantPredictor for a genre on every training poster: still a head."""
    backbone = build_backbone("efficientnet_lite0")
    X = np.random.default_rng(0).normal(size=(40, backbone.dim))
    Y = np.column_stack([np.ones(40, dtype=np.uint8), np.tile([0, 1], 20)])  # "Anime" is on every poster
    features = Features(np.arange(40).astype(str), np.array(["train"] * 40), X, Y, ["Anime", "Action"],
                        {**embedding_fingerprint(backbone, tta=False), "batch_size": 8})
    save_head(tmp_path / "head.skops", clone(HEADS[name][0]).fit(X, Y), features, {}, [0.5, 0.5])
    predictor = load_model(tmp_path / "head.skops")
    assert (predictor.head.predict_proba(X[:3])[:, 0] > 0.9).all()
