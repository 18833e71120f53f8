"""ONNX Runtime and PyTorch give the same embeddings, the exported graph is cached by weights, and
a saved network exports to ONNX."""
import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from postergenre.core.errors import DataError
from postergenre.core.workspace import cache_dir
from postergenre.extract.backbones import build_backbone
from postergenre.extract.engines import EMBEDDING_TOLERANCE, embed, make_embedder, resolve_engine
from postergenre.extract.features import Features, embedding_fingerprint
from postergenre.heads.estimators import HEADS
from postergenre.heads.train import save_head
from postergenre.posters.data import read_posters
from postergenre.posters.images import ImageSpec, PosterImages, eval_transform, pixels_transform
from postergenre.predict.export import export
from postergenre.predict.models import load_model
from tests.conftest import TIMM_ARCHITECTURE, run_module


def poster_batch(sample_dir, spec: ImageSpec, n: int = 5, pixels: bool = False) -> torch.Tensor:
    """`n` sample posters, normalised for a network, or as uint8 `pixels` for an Embedder."""
    posters = read_posters(sample_dir).posters[:n]
    transform = pixels_transform(spec.size) if pixels else eval_transform(spec.size, spec.mean, spec.std)
    dataset = PosterImages([p.image for p in posters], transform)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


@pytest.mark.slow
@pytest.mark.parametrize("tta", [False, True])
def test_onnxruntime_embeddings_match_torch(sample_dir, tta):
    """The multi-scale backbone (inner stages tapped by hooks) exports too; an odd batch size works."""
    backbone = build_backbone("efficientnet_lite0_multiscale")
    spec = ImageSpec(backbone.image_size, backbone.mean, backbone.std)
    pixels = poster_batch(sample_dir, spec, pixels=True)
    assert pixels.dtype == torch.uint8
    expected = make_embedder(backbone, tta, engine="torch", precision="fp32")(pixels)
    # the Embedder normalises whole batches of pixels exactly as eval_transform normalises each poster
    np.testing.assert_array_equal(expected, embed(backbone.model, poster_batch(sample_dir, spec), tta, None))
    got = make_embedder(backbone, tta, engine="onnxruntime")(pixels)
    assert got.shape == expected.shape == (5, backbone.dim) and got.dtype == np.float32
    assert np.abs(got - expected).max() < EMBEDDING_TOLERANCE
    assert np.abs(expected).max() > 100 * EMBEDDING_TOLERANCE  # the tolerance is small beside the values


@pytest.mark.slow
def test_the_onnx_graph_is_exported_once_per_weights(sample_dir, tmp_path, monkeypatch, capsys, timm_weights):
    """The export's mechanics, on a small timm backbone: every backbone takes the same path."""
    monkeypatch.setenv("POSTERGENRE_CACHE", str(tmp_path / "cache"))
    backbone = build_backbone(f"timm:{TIMM_ARCHITECTURE}", str(timm_weights))
    make_embedder(backbone, engine="onnxruntime")
    graphs = list(cache_dir().glob("*.onnx"))
    assert [g.name for g in graphs] == [
        f"timm-{TIMM_ARCHITECTURE}-{backbone.image_size}px-uint8-{backbone.weights_sha256}.onnx"]
    assert f"exporting timm:{TIMM_ARCHITECTURE}" in capsys.readouterr().err
    exported_at = graphs[0].stat().st_mtime_ns

    pixels = poster_batch(sample_dir, ImageSpec(backbone.image_size, backbone.mean, backbone.std), 2, pixels=True)
    embeddings = make_embedder(build_backbone(f"timm:{TIMM_ARCHITECTURE}", str(timm_weights)),
                               engine="onnxruntime")(pixels)
    assert "exporting" not in capsys.readouterr().err and graphs[0].stat().st_mtime_ns == exported_at

    # a cached graph changed since its export (damaged, or its weights zeroed) is exported again, not trusted
    for changed in (b"not a graph", graphs[0].read_bytes().replace(b"\x3f", b"\x00")):
        graphs[0].write_bytes(changed)
        again = make_embedder(backbone, engine="onnxruntime")(pixels)
        assert "does not match the checksum of its export, exporting it again" in capsys.readouterr().err
        np.testing.assert_array_equal(again, embeddings)


def test_engine_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_engine("auto", cpu, "auto") == resolve_engine("auto", cpu, "fp32") == "onnxruntime"
    assert resolve_engine("auto", cpu, "bf16") == resolve_engine("auto", cuda, "auto") == "torch"
    assert resolve_engine("torch", cpu, "fp32") == "torch"
    with pytest.raises(DataError, match="onnxruntime runs in fp32; use --engine torch"):
        resolve_engine("onnxruntime", cpu, "bf16")


def test_inference_is_fp32_unless_asked_on_a_cpu_with_bf16_units(trained, sample_dir, monkeypatch):
    """On a CPU with bf16 units `auto` trains in bf16, but features, predictions and evaluation stay fp32 unless
    bf16 is asked for, so the same command gives the same figures on any CPU. The bf16 path, forced, runs."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    backbone = build_backbone("efficientnet_lite0")
    assert make_embedder(backbone, engine="torch").dtype is None
    assert make_embedder(backbone, engine="torch", precision="auto").dtype == torch.bfloat16
    model = next((trained / "models").glob("*.safetensors"))
    fp32, bf16 = load_model(model), load_model(model, precision="bf16")
    assert fp32.dtype is None and bf16.dtype == torch.bfloat16
    images = poster_batch(sample_dir, fp32.spec, 3)
    np.testing.assert_allclose(bf16.predict_proba(images), fp32.predict_proba(images), atol=0.05)
    result = json.loads(next((trained / "results").rglob("*.json")).read_text())  # the one trained network's
    assert result["training_dtype"] in ("torch.float32", "torch.bfloat16")


def test_a_saved_network_exports_to_onnx(trained, sample_dir, tmp_path):
    import onnxruntime

    model = next((trained / "models").glob("*.safetensors"))
    out = tmp_path / "deploy" / "network.onnx"
    run_module("predict.export", "--model", str(model), "--out", str(out))
    card = json.loads(out.with_suffix(".json").read_text())
    predictor = load_model(model, precision="fp32")
    assert card["genres"] == predictor.genres and card["image_size"] == predictor.spec.size

    images = poster_batch(sample_dir, predictor.spec, 3)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = session.run(None, {card["input"]: images.numpy()})[0]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), predictor.predict_proba(images), atol=1e-5)

    backbone = build_backbone("efficientnet_lite0")
    X, Y = np.random.default_rng(0).normal(size=(20, backbone.dim)), np.tile(np.eye(2, dtype=np.uint8), (10, 1))
    features = Features(np.arange(20).astype(str), np.array(["train"] * 20), X, Y, ["A", "B"],
                        {**embedding_fingerprint(backbone, tta=False), "batch_size": 8})
    save_head(tmp_path / "head.skops", clone(HEADS["logistic"][0]).fit(X, Y), features, {}, [0.5, 0.5])
    with pytest.raises(DataError, match="a head, not a network"):
        export(tmp_path / "head.skops", tmp_path / "head.onnx")
    assert not (tmp_path / "head.onnx").exists()
