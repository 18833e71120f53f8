"""The installed package: `import postergenre` from any folder, its API, the `postergenre` command, old model files."""
import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import postergenre
from postergenre.core.errors import DataError
from postergenre.modelfiles.heads import RENAMED_MODULES, read_head
from postergenre.predict.models import load_model, predict_files

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def final_head(sample_heads) -> Path:
    return next((sample_heads / "models").glob("*-final.skops"))


def test_the_steps_default_to_the_makefiles_paths(sample_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert postergenre.split(sample_dir, min_count=3) == Path("features") / f"{sample_dir.name}-split.json"
    with pytest.raises(DataError, match="unknown backbone 'lite0'"):
        postergenre.features(sample_dir, "lite0")


def test_a_loaded_model_predicts_paths_images_and_arrays_as_the_command_does(final_head, sample_dir):
    model = postergenre.load(final_head)
    images = sorted((sample_dir / "images").iterdir())[:5]
    expected, errors = predict_files(load_model(final_head), images)
    assert not errors and final_head.name.endswith("-final.skops")
    as_rgba = np.asarray(Image.open(images[2]).convert("RGBA"))  # opaque alpha is flattened, as a file's is
    predictions = model.predict([images[0], Image.open(images[1]), as_rgba, str(images[3]),
                                 np.asarray(Image.open(images[4]).convert("RGB"))])
    got = np.array([[p.probabilities[g] for g in model.genres] for p in predictions])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert list(model.thresholds) == model.genres
    for p in predictions:  # the model's rule: every genre at or above its threshold, and the top one always
        top = max(p.probabilities, key=p.probabilities.get)
        assert p.genres == [g for g in model.genres if p.probabilities[g] >= model.thresholds[g] or g == top]


def test_bad_images_are_one_line_errors(trained):
    model = postergenre.load(next((trained / "models").glob("*.safetensors")))
    with pytest.raises(DataError, match="uint8 of shape"):
        model.predict([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(DataError, match="image 0: a path, a PIL image or a uint8 array, not int"):
        model.predict([3])
    with pytest.raises(DataError, match="no-such.jpg"):
        model.predict(["no-such.jpg"])


def test_one_image_any_iterable_and_hostile_items_as_the_command_line_takes_them(final_head, sample_dir, tmp_path,
                                                                                 monkeypatch):
    """One path alone (not its characters), a generator; a FIFO, an image of no pixels, an array view of 3.6
    billion pixels or a closed image each one line naming the item, found before any poster is predicted; a
    recall level that is not exactly one the model has lists those it has."""
    model = postergenre.load(final_head)
    poster = sorted((sample_dir / "images").iterdir())[0]
    one = model.predict(str(poster))
    assert len(one) == 1 and one == model.predict(p for p in [poster]) == model.predict(Image.open(poster))
    fifo = tmp_path / "poster.jpg"
    os.mkfifo(fifo)
    closed = Image.open(poster)
    closed.close()
    calls = []
    monkeypatch.setattr(model.predictor, "predict_images", lambda *a, **k: calls.append(1))
    for bad, message in ((fifo, r"image 3 \(.*poster\.jpg\): not a regular file"),
                         (np.zeros((0, 10, 3), np.uint8), r"image 3: 10x0 pixels, an image of none"),
                         (Image.new("RGB", (0, 5)), r"image 3: 0x5 pixels, an image of none"),
                         (np.broadcast_to(np.uint8(0), (60000, 60000, 3)), r"image 3: 60000x60000 pixels, over the"),
                         (closed, r"image 3: an unusable PIL image"), (None, r"image 3: a path, a PIL image")):
        with pytest.raises(DataError, match=message):
            model.predict([poster, poster, poster, bad])
    assert calls == []  # named before any work
    with pytest.raises(DataError, match=r"has recall thresholds for 0\.8, 0\.9, 0\.95, not 0\.8999999"):
        postergenre.load(final_head).predict(poster, recall=0.8999999)


def test_the_readme_example_runs_from_another_folder(final_head, sample_dir, tmp_path):
    """The README's Python example, run as written by a fresh interpreter outside the repository, with its
    model and poster where it names them."""
    block = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[1]
    model_path, image_path = re.findall(r'"([^"]+\.(?:skops|jpg))"', block)
    for name, target in ((model_path, final_head), (image_path, next((sample_dir / "images").iterdir()))):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(target)
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert any(g in result.stdout for g in postergenre.load(final_head).genres), result.stdout


def test_the_command_lists_its_commands_without_importing_them():
    result = subprocess.run([str(Path(sys.executable).parent / "postergenre"), "--help"], capture_output=True,
                            text=True, cwd="/", timeout=60)
    assert result.returncode == 0 and "predict" in result.stdout and "report" in result.stdout
    probe = "import sys, postergenre.cli; print(sorted(m for m in ('torch', 'sklearn', 'numpy') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/").stdout == "[]\n"
    probe = ("import sys\nfrom postergenre.cli import main\ntry:\n    main(['predict', '--help'])\nexcept SystemExit:\n"
             "    print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/")
    assert "usage: postergenre predict" in result.stdout and result.stderr == "[]\n", result.stderr
    wrong = subprocess.run([sys.executable, "-m", "postergenre", "fetaures"], capture_output=True, text=True, cwd="/")
    assert wrong.returncode != 0 and "no command 'fetaures'; choose from posters, features" in wrong.stderr


def test_a_subcommand_takes_the_flags_of_its_module(capsys, monkeypatch):
    from postergenre.cli import main
    from postergenre.core import cli

    monkeypatch.setattr(cli, "PROG_PREFIX", None)  # main sets it; put back after the test
    with pytest.raises(SystemExit):
        main(["heads", "--help"])
    assert capsys.readouterr().out.startswith("usage: postergenre heads [-h] --features FEATURES")


def test_a_head_saved_before_the_package_still_loads(trained, tmp_path):
    """Heads written before the rename name their classes heads.estimators.*: they load as they are, and a file
    that names any other untrusted type is still refused."""
    from postergenre.heads.estimators import HEADS
    from postergenre.modelfiles import ModelFileError
    from postergenre.modelfiles.heads import write_head

    X = np.random.default_rng(0).normal(size=(40, 4))
    Y = (X[:, :3] > 0).astype(int)
    estimator = HEADS["mlknn"][0].fit(X, Y)
    write_head(tmp_path / "new.skops", estimator, {"genres": ["a", "b", "c"]})
    old = _renamed(tmp_path / "new.skops", {new: old for old, new in RENAMED_MODULES.items()})
    assert b'"heads.estimators"' in zipfile.ZipFile(io.BytesIO(old)).read("schema.json").replace(b" ", b"")
    (tmp_path / "old.skops").write_bytes(old)
    loaded, settings = read_head(tmp_path / "old.skops")
    np.testing.assert_array_equal(loaded.predict_proba(X), estimator.predict_proba(X))
    assert settings == {"genres": ["a", "b", "c"]}
    (tmp_path / "other.skops").write_bytes(_renamed(tmp_path / "new.skops", {
        "postergenre.heads.estimators": "os"}))
    with pytest.raises(ModelFileError, match="holds types a head never has"):
        read_head(tmp_path / "other.skops")


def _renamed(path: Path, modules: dict[str, str]) -> bytes:
    """The skops file at `path` with its schema's modules renamed, as an older or a forged file has them."""
    out = io.BytesIO()
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(out, "w") as renamed:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == "schema.json":
                for old, new in modules.items():
                    data = data.replace(f'"{old}"'.encode(), f'"{new}"'.encode())
            renamed.writestr(info, data)
    return out.getvalue()
