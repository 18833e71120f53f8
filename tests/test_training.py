import json
import math
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from postergenre.core.errors import DataError
from postergenre.extract.backbones import TF_MEAN, TF_STD, build_backbone
from postergenre.finetune.model import FineTuned
from postergenre.modelfiles.networks import read_network
from postergenre.posters.data import read_posters
from postergenre.posters.decode import load_image
from postergenre.posters.images import eval_transform, train_transform
from postergenre.posters.sample import write_sample
from postergenre.posters.split import Split, label_matrix, split_posters
from postergenre.training import cached
from postergenre.training.cached import FromActivations, activations
from postergenre.training.loop import KnownLabelsBCE, Part, TrainConfig, _loss, _scheduler, mixup, param_groups
from tests import commands
from tests.conftest import ROOT, run_module

TINY = ["--widths", "4,8,8,8", "--batch-size", "16", "--workers", "0", "--augment", "light"]


def cnn_cli(sample_dir, split, tmp_path, *extra):
    return ["cnn", "--data", str(sample_dir), "--split", str(split), "--runs-dir", str(tmp_path / "runs"),
            "--results-dir", str(tmp_path / "results"), "--models-dir", str(tmp_path / "models"), *TINY, *extra]


def final_weights(tmp_path):
    run = next((tmp_path / "runs").glob("*/*"))
    return torch.load(run / "last.pt", weights_only=True)["model"], load_file(run / "best.safetensors")


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights(sample_dir, sample_split, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run_module(*cnn_cli(sample_dir, sample_split, whole, "--epochs", "4"))

    started = commands.start_module(*cnn_cli(sample_dir, sample_split, resumed, "--epochs", "4"))
    assert started.wait_for_line("epoch 1:")
    time.sleep(0.3)  # kill it in the epoch after the first checkpoint
    started.send_signal(signal.SIGKILL)
    assert started.wait().returncode == -signal.SIGKILL
    result = run_module(*cnn_cli(sample_dir, sample_split, resumed, "--epochs", "4", "--resume"))
    assert "resumed" in result.stdout

    for a, b in zip(final_weights(whole), final_weights(resumed)):
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert list((resumed / "results").glob("*/cnn-posternet-4-8-8-8.json"))


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_refused(sample_dir, sample_split, tmp_path):
    run_module(*cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "1"))
    theirs = next((tmp_path / "runs").glob("*/cnn-posternet-4-8-8-8"))
    ours = theirs.with_name("cnn-posternet-4-8-8-16")
    ours.mkdir()
    shutil.copy(theirs / "last.pt", ours / "last.pt")
    wider = [*cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "2", "--resume"), "--widths", "4,8,8,16"]
    result = run_module(*wider, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {ours / 'last.pt'}: weights of another architecture (0 missing, 0 unexpected, ")
    (ours / "last.pt").write_bytes(b"not a checkpoint")
    result = run_module(*wider, check=False)
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {ours / 'last.pt'}: not a checkpoint this version can read safely")


@pytest.mark.distributed
def test_two_processes_with_gloo(sample_dir, sample_split, tmp_path):
    _, *flags = cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "3", "--lr", "0.01")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", "29517", "-m", "postergenre.cnn", *flags],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    run = next((tmp_path / "runs").glob("*/*"))
    assert (run / "last.pt").exists() and (run / "best.safetensors").exists()
    log = np.genfromtxt(run / "log.csv", delimiter=",", names=True)
    assert log["train_loss"][-1] < log["train_loss"][0]
    assert len(list((tmp_path / "results").glob("*/*.json"))) == 1  # rank 0 alone writes results


def test_frozen_stages_stay_fixed():
    torch.manual_seed(0)
    model = FineTuned(build_backbone("efficientnet_lite0", "random"), n_genres=3, freeze="stage4")
    frozen = {id(p) for m in model.frozen for p in m.parameters()}
    assert frozen and all(not p.requires_grad for m in model.frozen for p in m.parameters())
    model.train()
    assert all(not m.training for module in model.frozen for m in module.modules())
    assert model.head.training and model.body.net.blocks[-1].training
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(param_groups(model.parameter_groups(1e-3, 1e-2), 0.01))
    loss = nn.functional.binary_cross_entropy_with_logits(model(torch.randn(4, 3, 64, 64)), torch.ones(4, 3))
    loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        changed = not torch.equal(before[name], p)
        assert changed == (id(p) not in frozen and p.grad is not None), name
    with pytest.raises(DataError, match="no stage 'layer9'"):
        FineTuned(build_backbone("efficientnet_lite0", "random"), 3, freeze="layer9")


def test_no_weight_decay_on_norms_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(1, 3, 5, 5))
    groups = param_groups({"all": (list(model.named_parameters()), 0.1)}, weight_decay=0.05)
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(model[0].weight), id(model[3].weight)}


def test_warmup_then_cosine():
    optimizer = torch.optim.AdamW([nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = _scheduler(optimizer, TrainConfig(epochs=4, warmup_epochs=1), steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 0.01
    # the closed form: (step + 1) / warm-up steps, then half a cosine from 1 to 0 over the other steps
    expected = [(s + 1) / 10 if s < 10 else 0.5 * (1 + math.cos(math.pi * (s - 10) / 30)) for s in range(40)]
    assert lrs == pytest.approx(expected, abs=1e-12)


def test_the_asl_option_is_the_asymmetric_loss():
    """--loss asl trains with timm's ASL at gamma_neg 4, clip 0.05: an easy negative's loss shrinks to
    -(p - 0.05)^4 log(1 - (p - 0.05)), a positive's is BCE's."""
    asl = _loss(TrainConfig(loss="asl"), np.zeros((4, 1)), torch.device("cpu"))
    p = torch.sigmoid(torch.tensor(-1.0)) - 0.05
    torch.testing.assert_close(asl(torch.tensor([[-1.0]]), torch.tensor([[0.0]])), -(p ** 4) * torch.log(1 - p))
    positive = nn.functional.binary_cross_entropy_with_logits(torch.tensor([2.0]), torch.tensor([1.0]))
    torch.testing.assert_close(asl(torch.tensor([[2.0]]), torch.tensor([[1.0]])), positive)


def test_unknown_labels_add_nothing_to_the_loss():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.3, 0.2, -2.0]], requires_grad=True)
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    weight = torch.tensor([1.0, 3.0, 2.0])
    torch.testing.assert_close(KnownLabelsBCE(weight)(logits, targets), nn.BCEWithLogitsLoss(pos_weight=weight)(
        logits, targets))  # every label known: plain BCE
    masked = targets.clone()
    masked[1, 2] = -1  # the second poster's data set does not label the third genre
    KnownLabelsBCE()(logits, masked).backward()
    assert logits.grad[1, 2] == 0 and (logits.grad.flatten()[:5] != 0).all()
    known = torch.ones_like(targets, dtype=torch.bool)
    known[1, 2] = False
    torch.testing.assert_close(KnownLabelsBCE()(logits, masked), nn.functional.binary_cross_entropy_with_logits(
        logits[known], targets[known]))


@pytest.mark.slow
def test_fine_tuning_with_another_data_sets_posters(sample_dir, sample_split, tmp_path):
    """--union-data adds the other set's posters to the training part, except those sharing a title with
    a validation or test poster; the scores are on --data's own parts."""
    other = tmp_path / "other"
    write_sample(other, n_posters=24, seed=2)  # titles "Synthetic poster 0".."23", as the sample's first 24
    held = {pid for part in ("val", "test") for pid in Split.load(sample_split).parts[part]}
    twins = sum(f"s{i:04d}" in held for i in range(24))
    assert 0 < twins < 24
    result = run_module(*cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "1", "--union-data", str(other)))
    saved = json.loads(next((tmp_path / "results").glob("*/cnn-posternet*-union-other.json")).read_text())
    assert saved["union"]["left_out"] == twins and saved["union"]["added"] == 24 - twins
    train = len(Split.load(sample_split).parts["train"])
    assert f"{train + 24 - twins} training posters, {24 - twins} of them from other" in result.stdout
    assert saved["test"]["overall"]["posters"] == len(Split.load(sample_split).parts["test"])
    refused = run_module(*cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "1", "--union-data", str(other),
                                  "--mixup", "0.2"), check=False)
    assert refused.returncode != 0 and "--union-data trains with the BCE loss" in refused.stderr

    # the final model holds no poster out, so it learns from every one of the other set's, twins included
    run_module(*cnn_cli(sample_dir, sample_split, tmp_path, "--epochs", "1", "--union-data", str(other), "--final"))
    final = tmp_path / "models" / f"{Split.load(sample_split).dataset}-final.safetensors"
    posters = sum(len(ids) for ids in Split.load(sample_split).parts.values())
    assert read_network(final)[1]["final"] == {"source": "cnn-posternet-4-8-8-8-union-other", "epochs": 1,
                                               "posters": posters + 24}
    card = final.with_suffix(".md").read_text()
    assert f"all {posters} labelled posters of `{sample_dir}` and all 24 of other" in card


def test_mixup_blends_posters_and_their_genres_alike():
    torch.manual_seed(0)
    labels = torch.eye(8)[:, :5].clone()  # 8 posters, 5 genres; the last three posters have none
    images = labels[:, None, None, :].expand(8, 3, 4, 5).clone()  # each image spells out its genres
    mixed_images, mixed_labels = mixup(images, labels, alpha=0.4)
    # the same partner and weight for a poster's pixels and its genres
    torch.testing.assert_close(mixed_images, mixed_labels[:, None, None, :].expand(8, 3, 4, 5))
    # a permutation of the batch: every poster's genres are handed out once in all
    torch.testing.assert_close(mixed_labels.sum(dim=0), labels.sum(dim=0))
    assert not torch.equal(mixed_labels, labels)


@pytest.mark.slow
def test_the_same_command_twice_gives_the_same_model(sample_dir, sample_split, tmp_path):
    """Fine-tuning on the CPU is reproducible: same seed, same weights and scores, bit for bit."""
    def train(folder):
        run_module("finetune", "--data", str(sample_dir), "--split", str(sample_split), "--backbone",
                   "efficientnet_lite0", "--freeze", "stage6", "--image-size", "64", "--epochs", "1",
                   "--batch-size", "16", "--runs-dir", str(folder / "runs"), "--results-dir", str(folder / "results"),
                   "--models-dir", str(folder / "models"))
        scores = np.load(next((folder / "results").glob("*/*.scores.npz")))
        return {key: scores[key] for key in scores.files}, load_file(next((folder / "models").glob("*.safetensors")))

    (scores_a, weights_a), (scores_b, weights_b) = train(tmp_path / "a"), train(tmp_path / "b")
    for key in scores_a:
        np.testing.assert_array_equal(scores_a[key], scores_b[key])
    assert weights_a.keys() == weights_b.keys()
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], rtol=0, atol=0)


@pytest.mark.parametrize("backbone, freeze", [("efficientnet_lite0", "stage4"), ("efficientnet_lite0", "stage7"),
                                              ("resnet50", "stem")])
def test_the_top_run_from_cached_activations_is_the_model_run_on_images(backbone, freeze):
    """Same logits and same gradients: training on the cache trains the model (stage7: the head alone)."""
    torch.manual_seed(0)
    model = FineTuned(build_backbone(backbone, "random"), n_genres=3, freeze=freeze).train()
    images, targets = torch.randn(4, 3, 64, 64), torch.rand(4, 3).round()
    with torch.no_grad():
        cached = activations(model, model.first_trainable, images)
    gradients = []
    for run, inputs in ((model, images), (FromActivations(model, model.first_trainable), cached)):
        model.zero_grad()
        torch.manual_seed(1)  # the head's dropout
        logits = run(inputs)
        nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
        gradients.append((logits.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (logits_a, grads_a), (logits_b, grads_b) = gradients
    torch.testing.assert_close(logits_a, logits_b)
    assert grads_a.keys() == grads_b.keys() and any("body" in name for name in grads_a) != (freeze == "stage7")
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], msg=name)
    assert FineTuned(build_backbone(backbone, "random"), 3, "none").first_trainable is None


def test_the_activation_cache_is_seeded_per_view_and_resumes(sample_dir, sample_split, tmp_path, monkeypatch):
    posters = split_posters(read_posters(sample_dir), Split.load(sample_split))
    train, val = (Part([p.image for p in posters[part]], label_matrix([p.genres for p in posters[part]], ["a"]))
                  for part in ("train", "val"))
    torch.manual_seed(0)
    model = FineTuned(build_backbone("efficientnet_lite0", "random"), 1, "stage5")
    transforms = train_transform("light", 64, TF_MEAN, TF_STD), eval_transform(64, TF_MEAN, TF_STD)
    real_embed, computed = cached._embed, []
    monkeypatch.setattr(cached, "_embed", lambda *args: computed.append(args[-1]) or real_embed(*args))

    def cache(views, seed=0):
        computed.clear()
        _, train_set, val_set = cached.cached_inputs(model, train, val, *transforms, views, seed, tmp_path, 16, 0,
                                                     torch.device("cpu"))
        return train_set.views, val_set.views

    views, val_view = cache(2)
    assert computed == ["caching val view 1", "caching train view 1", "caching train view 2"]
    assert views.shape[:2] == (2, len(train.paths)) and not torch.equal(views[0], views[1])  # two augmentations
    with torch.no_grad():
        eval_images = torch.stack([transforms[1](load_image(path)) for path in val.paths])
        torch.testing.assert_close(val_view[0].float(), activations(model, model.first_trainable, eval_images),
                                   rtol=1e-2, atol=1e-2)  # float16
    more, _ = cache(3)
    assert computed == ["caching train view 3"] and torch.equal(more[:2], views)
    with h5py.File(tmp_path / cached.CACHE, "a") as f:  # as if stopped while writing view 2
        f.attrs["done"] = json.dumps(["val0", "train0", "train2"])
    again, _ = cache(3)
    assert computed == ["caching train view 2"] and torch.equal(again, more)  # each view has its own seed
    cache(2, seed=1)
    assert len(computed) == 3  # another seed: another cache
    with pytest.raises(DataError, match="--cached-views needs frozen stages"):
        cached.cached_inputs(FineTuned(build_backbone("efficientnet_lite0", "random"), 1, "none"), train, val,
                             *transforms, 2, 0, tmp_path, 16, 0, torch.device("cpu"))
