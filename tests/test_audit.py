"""make audit: the labelled posters ranked by how likely their genres are wrong (audit/)."""
import csv

import numpy as np
import pytest

from postergenre.audit.labels import audit_labels
from bench.audit import corrupt, top_k_precision
from postergenre.core.errors import DataError
from postergenre.extract.features import load_features
from tests.conftest import run_module


def learnable_posters(n: int = 400, genres: int = 6, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Features from which each genre can be learnt, and the genres."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, genres)) < 0.3).astype(np.uint8)
    return (y @ rng.normal(0, 2, (genres, 16)) + rng.normal(0, 1, (n, 16))).astype(np.float32), y


def test_corrupted_labels_rise_to_the_top():
    """One genre flipped on 5% of the posters: the audit's top k holds them at several times the chance rate."""
    X, y = learnable_posters()
    noisy, corrupted = corrupt(y, 0.05, seed=0)
    assert len(corrupted) == 20 and (noisy != y).sum() == 20 and (noisy != y).any(axis=1)[corrupted].all()
    assert top_k_precision(y, 0.05, 0, X) >= 0.3  # chance is 0.05


def test_suspected_genres_are_the_flipped_ones():
    """A genre removed is suspected missing, a genre added is suspected wrong; clean labels mostly pass."""
    X, y = learnable_posters()
    probabilities = np.clip(y * 0.9 + 0.05, 0, 1).astype(float)  # a model that learnt the clean labels
    noisy = y.copy()
    noisy[0, np.flatnonzero(y[0])[0]] = 0  # removed
    noisy[1, np.flatnonzero(y[1] == 0)[0]] = 1  # added
    audit = audit_labels(noisy, probabilities)
    assert set(audit.order[:2]) == {0, 1}
    assert audit.missing[0].sum() == 1 and audit.missing[0, np.flatnonzero(y[0])[0]] and not audit.wrong[0].any()
    assert audit.wrong[1].sum() == 1 and audit.wrong[1, np.flatnonzero(y[1] == 0)[0]] and not audit.missing[1].any()
    assert not (audit.wrong | audit.missing)[2:].any()


def test_make_audit_writes_the_ranking_and_its_page(sample_heads, tmp_path):
    features_file = next((sample_heads / "features").glob("*.h5"))
    features = load_features(features_file)
    result = run_module("audit", "--features", str(features_file), "--results-dir", str(sample_heads / "results"),
                        "--out-dir", str(tmp_path), "--top", "8")
    dataset = features.attrs["dataset"]
    with open(tmp_path / f"{dataset}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["id", "title", "given", "suspected_missing", "suspected_wrong", "label_quality"]
    assert sorted(row["id"] for row in rows) == sorted(map(str, features.ids))  # every labelled poster, once
    quality = [float(row["label_quality"]) for row in rows]
    assert quality == sorted(quality)  # most suspect first
    given = {str(i): "|".join(g for g, on in zip(features.genres, labels) if on)
             for i, labels in zip(features.ids, features.Y)}
    assert all(row["given"] == given[row["id"]] for row in rows)
    for row in rows:  # a suspected wrong genre was given, a suspected missing one was not
        assert set(filter(None, row["suspected_wrong"].split("|"))) <= set(row["given"].split("|"))
        assert not set(filter(None, row["suspected_missing"].split("|"))) & set(row["given"].split("|"))
    page = (tmp_path / f"{dataset}.html").read_text()
    assert page.count("data:image/png;base64,") == 1 and rows[0]["id"] in page
    assert f"{dataset}.csv: {len(rows)} posters ranked by" in result.stdout


def test_a_genre_on_every_poster_or_none_is_left_out_and_said():
    """cleanlab refuses a class with one value: such a genre is not audited, and the others still are."""
    X, y = learnable_posters()
    y[:, 0], y[:, 1] = 1, 0
    probabilities = np.clip(y * 0.9 + 0.05, 0, 1).astype(float)
    audit = audit_labels(y, probabilities)
    assert audit.constant.tolist() == [True, True, False, False, False, False]
    assert not (audit.wrong | audit.missing)[:, :2].any() and len(audit.quality) == len(y)
    with pytest.raises(DataError, match="only 1 genre is on some posters and not others"):
        audit_labels(y[:, :3], probabilities[:, :3])
