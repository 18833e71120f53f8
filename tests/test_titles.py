"""The title as a second input: a title head on TF-IDF n-grams, fused with the picked poster model by a weight
chosen on validation, kept out of the poster-only comparison, and never taught by a table row of a franchise
that is evaluated."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file
from sklearn.base import clone

import postergenre
from postergenre.core.errors import DataError
from postergenre.core.workspace import file_sha256
from postergenre.evaluation.report import write_report
from postergenre.evaluation.results import read_results
from postergenre.extract.features import Features, load_features
from postergenre.heads.final import fit_final
from postergenre.heads.titles import TITLE_HEAD, TitleTable, run_titles, title_head, title_layers
from postergenre.heads.train import run_heads
from postergenre.modelfiles.titles import read_titles, titles_path
from postergenre.posters.data import read_posters
from postergenre.posters.union import UNKNOWN
from postergenre.predict.titles import with_title_head
from postergenre.serve.server import answer
from tests.conftest import run_module

GENRES = ["Action", "Romance", "Sports"]
WORDS = {"Action": "Blade", "Romance": "Love", "Sports": "Ball"}


def test_the_title_head_reads_words_and_leaves_unknown_genres_out():
    rng = np.random.default_rng(0)
    labels = (rng.random((300, 3)) < 0.4).astype(np.int8)
    titles = [" ".join([f"Name{i}"] + [WORDS[g] for g, y in zip(GENRES, row) if y]) for i, row in enumerate(labels)]
    head = clone(title_head(C=4.0)).fit(titles[:200], labels[:200])
    scores = head.predict_proba(titles[200:])
    assert scores.shape == (100, 3)
    assert all(scores[labels[200:, g] == 1, g].mean() > scores[labels[200:, g] == 0, g].mean() + 0.3 for g in range(3))
    unknown = labels[:200].copy()
    unknown[:100, 2] = UNKNOWN  # half the rows do not label Sports: left out of its fit, not taken as negatives
    assert title_head(C=4.0).fit(titles[:200], unknown).predict_proba(titles[200:]).shape == (100, 3)


def _features(folder, seed: int = 0) -> Features:
    """A feature file's contents for the posters of `folder` (a simple-layout data set): noisy embeddings."""
    posters = read_posters(folder).posters
    rng = np.random.default_rng(seed)
    Y = np.array([[g in p.genres for g in GENRES] for p in posters], dtype=np.uint8)
    X = (Y @ rng.normal(0, 1, (3, 8)) + rng.normal(0, 2, (len(Y), 8))).astype(np.float32)
    parts = np.array(["train", "val", "test"])[np.arange(len(Y)) % 5 // 2 % 3]  # 40/40/20
    attrs = {"dataset": folder.name, "data": str(folder), "backbone": "efficientnet_lite0", "weights_sha256": "w",
             "image_size": 224, "preprocessing": "p", "tta": "none", "batch_size": 8, "split": "{}"}
    return Features(np.array([p.id for p in posters]), parts, X, Y, GENRES, attrs)


def _folder(tmp_path, n: int = 150):
    """A data set whose titles name their genres (and a series name), with small images."""
    rng = np.random.default_rng(1)
    folder = tmp_path / "titled"
    (folder / "images").mkdir(parents=True)
    rows = ["id,title,genres"]
    for i in range(n):
        genres = [g for g in GENRES if rng.random() < 0.4] or ["Action"]
        rows.append(f"p{i},Series{i} {' '.join(WORDS[g] for g in genres)},{'|'.join(genres)}")
        Image.new("RGB", (8, 12), (i, 0, 0)).save(folder / "images" / f"p{i}.jpg")
    (folder / "covers.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_titles_are_fused_with_the_picked_poster_model_and_reported_apart(tmp_path):
    folder = _folder(tmp_path)
    features = _features(folder)
    results, models = tmp_path / "results", tmp_path / "models"
    run_heads(features, ["logistic"], models, results)
    written = run_titles(features, results)
    fused = "efficientnet_lite0-logistic+title"
    assert set(written) == {TITLE_HEAD, fused}
    # the titles name the genres: the title head and the fusion beat the poster model, here
    poster = {r["model"]: r for r in read_results(results)[folder.name]}
    assert {r["kind"] for r in poster.values()} == {"baseline", "head"}  # the title results are not among them
    poster_map = poster["efficientnet_lite0-logistic"]["test"]["overall"]["mAP_macro"]
    title_results = {r["model"]: r for r in read_results(results, ("titles",))[folder.name]}
    assert title_results[TITLE_HEAD]["poster_weight"] == 0.0
    assert title_results[fused]["poster_model"] == "efficientnet_lite0-logistic"
    assert 0 <= title_results[fused]["poster_weight"] < 1
    assert written[fused]["test"]["overall"]["mAP_macro"] > poster_map + 0.1
    report = write_report(results, tmp_path / "features", tmp_path / "reports", models_dir=models).read_text()
    section = report[report.index("### Poster + title"):]
    assert "| efficientnet_lite0-logistic (poster only, picked) | 1.0 |" in section
    assert f"| {fused} | {title_results[fused]['poster_weight']:.1f} |" in section and "| better |" in section
    assert f"make titles DATA={folder}" in section


def test_a_table_never_teaches_the_franchise_of_an_evaluated_poster(tmp_path):
    folder = _folder(tmp_path, n=20)
    features = _features(folder)
    held = [pid for pid, part in zip(features.ids, features.parts) if part != "train"]
    trained = [pid for pid, part in zip(features.ids, features.parts) if part == "train"]
    titles = {p.id: p.titles for p in read_posters(folder).posters}
    table = tmp_path / "table.csv"
    table.write_text("anime_id,Name,Genres\n"
                     f"1,{titles[held[0]][0]} Season 2,\"Action, Drama\"\n"  # a sequel of an evaluated poster
                     f"2,{titles[trained[0]][0]}: The Movie,Romance\n"  # a movie of a training poster's franchise
                     "3,Unrelated Saga,\"Sports, Mecha\"\n4,No Genres,UNKNOWN\n")
    held = {str(pid) for pid, part in zip(features.ids, features.parts) if part != "train"}
    texts, labels, report = TitleTable(table, features.genres, titles).without(held)
    assert texts == [f"{titles[trained[0]][0]}: The Movie", "Unrelated Saga"]
    assert report["rows"] == 3 and report["added"] == 2 and report["left_out"] == 1  # the row of no genre: none
    np.testing.assert_array_equal(labels, [[0, 1, 0], [0, 0, 1]])  # Drama and Mecha are not the data set's


def test_genres_a_table_does_not_label_are_unknown_for_its_rows(tmp_path):
    features = _features(_folder(tmp_path, n=20))
    table = tmp_path / "table.csv"
    table.write_text("anime_id,Name,Genres\n1,Unrelated Saga,Action\n")
    _, labels, report = TitleTable(table, features.genres, {}).without(set())
    assert report["unknown"] == ["Romance", "Sports"]
    np.testing.assert_array_equal(labels, [[1, UNKNOWN, UNKNOWN]])


def test_the_final_model_answers_with_a_title_by_every_route(sample_heads, sample_dir, tmp_path):
    """make titles then make final: the title head is saved beside the final model, vouched for by it, and the
    command line, the API and the page answer with poster and title where one is given, the poster alone else."""
    work = tmp_path / "work"
    shutil.copytree(sample_heads, work)
    features = load_features(next((work / "features").glob("*.h5")))
    run_titles(features, work / "results")
    final = fit_final(features, work / "results", work / "models")
    beside = titles_path(final)
    assert beside.is_file() and "## With a title" in final.with_suffix(".md").read_text()
    poster = sorted((sample_dir / "images").iterdir())[0]

    alone = run_module("predict", "--model", str(final), str(poster), "--json")
    titled = run_module("predict", "--model", str(final), str(poster), "--json", "--title", "Crimson Harbor")
    assert "the poster alone" in alone.stderr and "poster and title" in titled.stderr
    alone_report, titled_report = json.loads(alone.stdout), json.loads(titled.stdout)
    assert (alone_report["input"], titled_report["input"]) == ("poster", "poster and title")
    assert titled_report["model"] == f"{final.stem}+title"
    assert alone_report["predictions"][0]["probabilities"] != titled_report["predictions"][0]["probabilities"]
    table = tmp_path / "titles.csv"
    table.write_text(f"image,title\n{poster.name},Crimson Harbor\n")
    from_table = run_module("predict", "--model", str(final), str(poster), "--json", "--titles", str(table))
    assert json.loads(from_table.stdout)["predictions"] == titled_report["predictions"]
    two = sorted((sample_dir / "images").iterdir())[:2]
    missing = run_module("predict", "--model", str(final), *map(str, two), "--titles", str(table), check=False)
    assert missing.returncode == 1 and "1 of 2 images have no title" in missing.stderr

    model = postergenre.load(final)
    api = model.predict(poster, titles="Crimson Harbor")[0]
    assert api.probabilities == pytest.approx(titled_report["predictions"][0]["probabilities"], abs=1e-6)
    with pytest.raises(DataError, match="2 titles for 1 images"):
        model.predict(poster, titles=["a", "b"])

    fused = with_title_head(model.predictor, final)
    status, answer_ = answer(model.predictor, poster.read_bytes(), "image/jpeg", None, None, "Crimson Harbor", fused)
    assert status == 200 and answer_["input"] == "poster and title"
    assert answer_["probabilities"] == pytest.approx(api.probabilities, abs=1e-4)
    assert answer(model.predictor, poster.read_bytes(), "image/jpeg", None, None, "Crimson Harbor")[0] == 400

    shutil.copy(next((work / "models").glob("*-logistic.skops")), final)  # another poster model in its place
    stale = run_module("predict", "--model", str(final), str(poster), "--title", "Crimson Harbor", check=False)
    assert stale.returncode == 1 and "fused with another poster model" in stale.stderr


def _title_file(tmp_path, **changes):
    """A small title head's file beside a poster model file (any bytes: the head vouches for its checksum)."""
    poster = tmp_path / "m-final.skops"
    poster.write_bytes(b"a poster model")
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 3)) < 0.4).astype(np.int8)
    titles = [" ".join([f"Name{i}"] + [WORDS[g] for g, y in zip(GENRES, row) if y]) for i, row in enumerate(labels)]
    vocabularies, arrays = title_layers(title_head(C=4.0).fit(titles, labels))
    settings = {"genres": GENRES, "poster_model_sha256": file_sha256(poster), "poster_weight": 0.5,
                "thresholds": [0.3] * 3, "recall_thresholds": {"0.9": 0.1}, "vocabularies": vocabularies,
                "out_of_fold": {"mAP_macro": 0.5}}
    arrays = {**arrays, "slope": np.ones(3), "shift": np.zeros(3)}
    settings.update({k: v for k, v in changes.items() if k in settings})
    arrays.update({k: v for k, v in changes.items() if k in arrays})
    path = titles_path(poster)
    save_file({k: np.ascontiguousarray(v, dtype=np.float64) for k, v in arrays.items()}, str(path),
              metadata={"postergenre": json.dumps(settings)})
    return poster, path, titles


def test_a_title_file_reads_back_and_answers_like_its_head(tmp_path):
    poster, path, titles = _title_file(tmp_path)
    head = read_titles(path, poster)
    probabilities = head.title_probabilities(titles[:5])
    assert probabilities.shape == (5, 3) and ((probabilities > 0) & (probabilities < 1)).all()
    poster_probabilities = np.full((5, 3), 0.5)
    np.testing.assert_allclose(head.fuse(poster_probabilities, titles[:5]), 0.5 * 0.5 + 0.5 * probabilities,
                               rtol=1e-6)


@pytest.mark.parametrize("change, message", [
    ({"coef": np.full((3, 5), np.nan)}, "do not fit its 3 genres"),
    ({"intercept": np.array([np.nan, 0, 0])}, "not finite"),
    ({"slope": np.array([-1.0, 1, 1])}, "not finite"),
    ({"poster_weight": 2}, "poster_weight"),
    ({"poster_model_sha256": "0" * 64}, "fused with another poster model"),
    ({"vocabularies": {"char": ["ab"] * 3, "word": []}}, "distinct n-grams"),
    ({"thresholds": [0.3]}, "one threshold per genre"),
])
def test_an_edited_title_file_is_refused_in_one_line(tmp_path, change, message):
    poster, path, _ = _title_file(tmp_path, **change)
    with pytest.raises(DataError, match=message) as error:
        read_titles(path, poster)
    assert "\n" not in str(error.value)
