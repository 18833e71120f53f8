import os
import shutil
import subprocess
from pathlib import Path

import pytest

from postergenre.posters.sample import write_sample
from tests import commands
from tests.commands import ROOT


def shared_data() -> Path:
    """The real posters: POSTERGENRE_DATA, or ../shared/data beside the project."""
    return Path(os.environ.get("POSTERGENRE_DATA", ROOT.parent / "shared" / "data")).resolve()


SLOW_FIXTURES = {"trained", "sample_features", "sample_heads", "anime_slice"}  # features, network, heads, a pipeline


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from the fixtures a test asks for, so that they cannot drift from what it does."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "data_root" in fixtures or "anime_slice" in fixtures:
            item.add_marker("real_data")
        if fixtures & SLOW_FIXTURES:
            item.add_marker("slow")


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory) -> Path:
    """Exported ONNX graphs go to a folder of the test session (commands run by the tests inherit it)."""
    path = tmp_path_factory.mktemp("onnx-cache")
    os.environ["POSTERGENRE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = shared_data()
    if not (root / "anime-posters").is_dir():
        pytest.skip(f"real poster data not found at {root}; set POSTERGENRE_DATA")
    return root


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A small synthetic poster set in the simple id,title,genres layout."""
    out = tmp_path_factory.mktemp("sample")
    write_sample(out, n_posters=64, seed=1)
    return out


@pytest.fixture(scope="session")
def sample_split(sample_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("split") / "sample-split.json"
    run_module("posters", "split", "--data", str(sample_dir), "--out", str(path), "--min-count", "3")
    return path


@pytest.fixture(scope="session")
def trained(sample_dir, sample_split, tmp_path_factory) -> Path:
    """A tiny PosterNet trained for 2 epochs on the sample: runs/, results/ and models/ (one .safetensors) under it."""
    root = tmp_path_factory.mktemp("trained")
    run_module("cnn", "--data", str(sample_dir), "--split", str(sample_split), "--runs-dir", str(root / "runs"),
               "--results-dir", str(root / "results"), "--models-dir", str(root / "models"),
               "--widths", "4,8,8,8", "--batch-size", "16", "--workers", "0", "--epochs", "2")
    return root


@pytest.fixture(scope="session")
def sample_features(sample_dir, sample_split, tmp_path_factory) -> Path:
    """The sample's efficientnet_lite0 feature file on sample_split, through the Python API, extracted once a session:
    copy it before writing beside it."""
    import postergenre

    out = tmp_path_factory.mktemp("features") / "sample-efficientnet_lite0.h5"
    return postergenre.features(sample_dir, "efficientnet_lite0", split_file=sample_split, out=out)


@pytest.fixture(scope="session")
def sample_heads(sample_features, tmp_path_factory) -> Path:
    """`make heads final` on the sample's features, through the Python API's functions: features/, models/ (the
    three heads and the final one) and results/ under the folder returned."""
    import postergenre

    work = tmp_path_factory.mktemp("heads")
    (work / "features").mkdir()
    features = Path(shutil.copy(sample_features, work / "features" / sample_features.name))
    postergenre.fit_heads(features, models_dir=work / "models", results_dir=work / "results")
    postergenre.final(features, results_dir=work / "results", models_dir=work / "models")
    return work


def run_module(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `python -m ...` from the repository root, as the Makefile does (tests/commands.py: in a process of its
    own, forked from one that imported the libraries once)."""
    result = commands.run_module(*args)
    if check and result.returncode != 0:
        raise AssertionError(f"python -m {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


TIMM_ARCHITECTURE = "test_resnet"  # timm's model for tests: exported to ONNX in 3 s, not 12 like a MobileNet
# Its own input spec, unlike ImageNet's usual one: 160 px, mean and std 0.5, the classifier named "fc".


@pytest.fixture(scope="session")
def timm_weights(tmp_path_factory) -> Path:
    """A whole timm checkpoint (its ImageNet classifier included), with random weights the test writes itself."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("timm") / f"{TIMM_ARCHITECTURE}.safetensors"
    save_file(timm.create_model(TIMM_ARCHITECTURE, pretrained=False).state_dict(), str(path))
    return path
