"""A title head fused with a final poster model, `<model>.titles.safetensors` beside that model: what `postergenre
predict --title` reads (predict/titles.py).

The file holds the title head (heads/titles.py) as arrays: each vectoriser's idf weights (its vocabulary, n-gram
by column, is in the settings), one logistic layer over both vectorisers' columns (coef, intercept), and what the
fusion chose on out-of-fold predictions (heads/final.py): the poster's weight, the per-genre calibration of the
fused probabilities (slope, shift on the logit) and their F1 and recall thresholds. Its settings (TitleSettings)
record the sha256 of the poster model it was fused with, so that it is used beside that file only. How titles
become n-grams is not in the file but in VECTORISERS: a file cannot choose code. Reading it needs neither torch
nor skops; turning titles into columns takes scikit-learn's TfidfVectorizer, imported when a title is given.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from postergenre.core.files import safetensors_header
from postergenre.core.workspace import file_sha256
from postergenre.modelfiles import SETTINGS_KEY, ModelFileError
from postergenre.modelfiles.arrays import ACTIVATIONS
from postergenre.modelfiles.settings import MAX_NGRAMS, TitleSettings, parse

TITLES_SUFFIX = ".titles.safetensors"
# How a title head turns a poster's titles into columns: character 2-5-grams within words, and words and word
# pairs, each TF-IDF with sublinear term frequency (heads.titles.title_head builds its vectorisers from these).
VECTORISERS = {"char": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True},
               "word": {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True}}
MAX_TITLES_BYTES, MAX_HEADER_BYTES = 2**28, 2**25
ARRAYS = ("char_idf", "word_idf", "coef", "intercept", "slope", "shift")
sigmoid = ACTIVATIONS["logistic"]


def titles_path(model: Path | str) -> Path:
    """Where the title head fused with the model at `model` is saved."""
    model = Path(model)
    return model.with_name(model.name.removesuffix(model.suffix) + TITLES_SUFFIX)


@dataclass(frozen=True)
class TitleModel:
    """A title head and its fusion with a poster model, read from its file."""
    settings: TitleSettings
    arrays: dict[str, np.ndarray]

    @property
    def genres(self) -> list[str]:
        return list(self.settings.genres)

    def title_probabilities(self, titles: list[str]) -> np.ndarray:
        """The title head's probabilities (titles, genres)."""
        from scipy.sparse import hstack
        from sklearn.feature_extraction.text import TfidfVectorizer

        columns = []
        for name, options in VECTORISERS.items():
            vocabulary = self.settings.vocabularies[name]
            vectoriser = TfidfVectorizer(**options, vocabulary={ngram: i for i, ngram in enumerate(vocabulary)})
            vectoriser.idf_ = self.arrays[f"{name}_idf"]
            columns.append(vectoriser.transform(titles))
        return sigmoid(hstack(columns).tocsr() @ self.arrays["coef"].T + self.arrays["intercept"])

    def fuse(self, poster: np.ndarray, titles: list[str]) -> np.ndarray:
        """The calibrated fusion of a poster model's probabilities with the title head's for the same posters."""
        p = np.clip(fused(poster, self.title_probabilities(titles), self.settings.poster_weight), 1e-7, 1 - 1e-7)
        return sigmoid(self.arrays["slope"] * np.log(p / (1 - p)) + self.arrays["shift"])


def fused(poster: np.ndarray, title: np.ndarray, poster_weight: float) -> np.ndarray:
    """The fusion rule, in evaluation (heads/titles.py) and in prediction alike: a weighted mean of probabilities."""
    return poster_weight * poster + (1 - poster_weight) * title


def write_titles(path: Path | str, settings: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write a title head's file (checked against TitleSettings and the arrays' shapes first)."""
    checked = parse(TitleSettings, settings, path)
    _check_arrays(path, checked, arrays)
    # the coefficients (genres x n-grams, most of the file) in float32, which halves the file
    save_file({k: np.ascontiguousarray(arrays[k], dtype=np.float32 if k == "coef" else np.float64) for k in ARRAYS},
              str(path), metadata={SETTINGS_KEY: json.dumps(settings)})


def read_titles(path: Path | str, poster_model: Path | str) -> TitleModel:
    """The title head at `path`, if it was fused with the file at `poster_model`; anything else, arrays that do not
    fit its genres or vocabularies, or weights that are not finite, is refused in one line."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_TITLES_BYTES:
            raise ValueError("larger than a title head")
        settings = json.loads(safetensors_header(path, MAX_HEADER_BYTES)["__metadata__"][SETTINGS_KEY])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path}: not a title head ({type(e).__name__}: {e})") from None
    checked = parse(TitleSettings, settings, path)
    if checked.poster_model_sha256 != file_sha256(poster_model):
        raise ModelFileError(f"{path}: fused with another poster model than {poster_model}; run make final again")
    try:
        arrays = load_file(str(path))
    except Exception as e:  # safetensors' own error types differ between versions
        raise ModelFileError(f"{path}: not a title head ({type(e).__name__})") from None
    _check_arrays(path, checked, arrays)
    return TitleModel(checked, arrays)


def _check_arrays(path: Path | str, settings: TitleSettings, arrays: dict[str, np.ndarray]) -> None:
    genres = len(settings.genres)
    columns = sum(len(v) for v in settings.vocabularies.values())
    shapes = {"char_idf": (len(settings.vocabularies["char"]),), "word_idf": (len(settings.vocabularies["word"]),),
              "coef": (genres, columns), "intercept": (genres,), "slope": (genres,), "shift": (genres,)}
    if set(arrays) != set(ARRAYS) or any(np.shape(arrays[k]) != shape for k, shape in shapes.items()) \
            or columns > 2 * MAX_NGRAMS:
        raise ModelFileError(f"{path}: its arrays do not fit its {genres} genres and vocabularies")
    if not all(np.isfinite(a).all() for a in arrays.values()) or (np.asarray(arrays["slope"]) <= 0).any():
        raise ModelFileError(f"{path}: weights that are not finite")
