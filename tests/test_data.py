import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from postergenre.core.errors import DataError
from postergenre.core.files import UMASK, write_csv_atomic, write_text_atomic
from postergenre.posters.data import Poster, PosterSet, read_genre_table, read_posters
from postergenre.posters.split import Split, make_split


def test_kaggle_anime_layout(data_root):
    posters = read_posters(data_root / "anime-posters")
    assert posters.name == "anime-posters"
    assert len(posters.posters) == 1282
    bebop = next(p for p in posters.posters if p.id == "1")
    assert bebop.genres == ("Action", "Award Winning", "Sci-Fi")
    assert bebop.image.name == "1.jpg"
    assert posters.genre_counts()["Action"] == 491


def test_simple_layout(data_root):
    posters = read_posters(data_root / "anilist-covers")
    assert len(posters.posters) == 1047
    hinamatsuri = next(p for p in posters.posters if p.id == "100077")
    assert hinamatsuri.genres == ("Comedy", "Sci-Fi", "Slice of Life", "Supernatural")


def test_movie_onehot_layout(data_root):
    posters = read_posters(data_root / "movie-posters")
    first = next(p for p in posters.posters if p.id == "tt0086425")
    assert first.genres == ("Comedy", "Drama")
    assert first.image.parent.name == "Images"
    # rows repeated in the CSV and rows with no genre are counted, not read
    assert posters.skipped == {"duplicate id": 10, "no genres": 8}
    assert len(posters.posters) == 6151


def test_full_kaggle_csv_with_multiline_synopses(data_root, tmp_path):
    """The 24-column Kaggle file: quoted multi-line synopses, UNKNOWN genres, images found by id."""
    shutil.copy(data_root / "anime-dataset-2023-sample.csv", tmp_path / "anime.csv")
    (tmp_path / "images").mkdir()
    for anime_id in ("1", "5"):  # Cowboy Bebop and its movie
        Image.new("RGB", (20, 30), "red").save(tmp_path / "images" / f"{anime_id}.png")
    posters = read_posters(tmp_path)
    assert [p.id for p in posters.posters] == ["1", "5"]
    assert posters.posters[0].genres == ("Action", "Award Winning", "Sci-Fi")
    assert sum(posters.skipped.values()) == 1822 - 2
    assert posters.skipped["no genres"] > 0  # UNKNOWN rows


def test_genre_table(data_root):
    counts, unknown, rows = read_genre_table(data_root / "anime-dataset-2023-genres.csv")
    assert rows == 24901
    assert unknown == 4929
    assert len(counts) == 21


@pytest.mark.parametrize("content, message", [
    (b"", "no CSV with a known header"),
    (b"name,tags\nx,y\n", "no CSV with a known header"),
    (b"id,title,genres\n1,Caf\xe9,Action\n", "not UTF-8"),
    (b'id,title,genres\n1,"unclosed,Action\n', "malformed row"),
])
def test_bad_csv_gives_one_line_error(tmp_path, content, message):
    (tmp_path / "covers.csv").write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_posters(tmp_path)
    assert "\n" not in str(error.value)


def test_split_is_seeded_stratified_and_disjoint(data_root, tmp_path):
    posters = read_posters(data_root / "anime-posters")
    split = make_split(posters, seed=0, min_count=5)
    assert split == make_split(posters, seed=0, min_count=5)
    assert split.parts != make_split(posters, seed=1, min_count=5).parts

    ids = [pid for part in split.parts.values() for pid in part]
    assert len(ids) == len(set(ids)) == 1282  # each anime in exactly one part
    sizes = {part: len(ids) / 1282 for part, ids in split.parts.items()}
    assert sizes["train"] == pytest.approx(0.7, abs=0.02) and sizes["test"] == pytest.approx(0.15, abs=0.02)

    # Erotica and Hentai (a handful of posters in all) fall under min_count in training and are listed
    assert set(split.dropped_genres) == {"Erotica", "Hentai"}
    assert all(split.dropped_genres[g] == split.genre_counts["train"].get(g, 0) < 5 for g in split.dropped_genres)
    assert all(split.genre_counts["train"][g] >= 5 for g in split.genres)
    # stratification puts the common genres into each part in proportion
    for part in ("val", "test"):
        share = split.genre_counts[part]["Action"] / len(split.parts[part])
        assert share == pytest.approx(491 / 1282, abs=0.04)

    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_genres_under_min_count_overall_do_not_enter_the_stratification():
    """Thousands of one-poster genres (a CSV where each row has its own) cost the stratified split nothing: they
    can never reach min_count training posters, so the parts are those of the data without them."""
    rng = np.random.default_rng(0)
    common = [tuple(g for g in ("Action", "Drama", "Comedy") if rng.random() < 0.4) or ("Action",)
              for _ in range(600)]
    plain = PosterSet("x", Path("x"), [Poster(str(i), Path(f"{i}.jpg"), g) for i, g in enumerate(common)])
    noisy = PosterSet("x", Path("x"), [Poster(str(i), Path(f"{i}.jpg"), g + (f"Unique{i}",))
                                       for i, g in enumerate(common)])
    split = make_split(noisy, seed=0, min_count=5)
    assert split.parts == make_split(plain, seed=0, min_count=5).parts
    assert split.genres == ["Action", "Comedy", "Drama"] and len(split.dropped_genres) == 600
    assert split.dropped_text(3).endswith("and 597 more")


def kaggle_folder(tmp_path, lines: list[str], encoding: str = "utf-8"):
    """A Kaggle-layout folder with the given CSV lines and an image for ids 1-4."""
    folder = tmp_path / "anime"
    (folder / "images").mkdir(parents=True)
    for i in range(1, 5):
        Image.new("RGB", (20, 30)).save(folder / "images" / f"{i}.jpg")
    (folder / "anime.csv").write_text("\n".join(lines) + "\n", encoding=encoding)
    return folder


def test_spreadsheet_quirks(tmp_path, capsys):
    """A byte-order mark, genres spelled two ways, and a row shifted by an unquoted comma."""
    folder = kaggle_folder(tmp_path, [
        "anime_id,Name,Score,Genres",
        '1,Alpha,8.1,"Action, Sci-Fi"',
        '2,Beta,7.0,"Sci-fi,  Slice  of Life"',
        '3,Gamma, the Movie,8.75,"Action"',  # the unquoted comma moves the score into Genres
        '4,Delta,6.5,"action, Sci-Fi"'], encoding="utf-8-sig")
    posters = read_posters(folder)
    assert {p.id: p.genres for p in posters.posters} == {
        "1": ("Action", "Sci-Fi"), "2": ("Sci-Fi", "Slice of Life"), "4": ("Action", "Sci-Fi")}
    assert posters.skipped == {"malformed row": 1}
    assert "genres merged that differ only in case: Sci-fi -> Sci-Fi, action -> Action" in capsys.readouterr().err


def test_kaggle_style_genres_in_the_simple_layout_are_pointed_out(tmp_path, capsys):
    """'Comedy, Drama' in an id,title,genres CSV is one genre there (the layout separates with |): said, once."""
    folder = kaggle_folder(tmp_path, ["id,title,genres", '1,Alpha,"Comedy, Drama"', "2,Beta,Action|Drama"])
    posters = read_posters(folder)
    assert [p.genres for p in posters.posters] == [("Comedy, Drama",), ("Action", "Drama")]
    warning = capsys.readouterr().err
    assert "1 genres hold a comma (e.g. 'Comedy, Drama'); this layout separates genres with |" in warning


def test_genres_run_together_with_commas_in_most_rows_stop_with_the_fix(tmp_path):
    """A Kaggle-style CSV laid out as id,title,genres gave a split of 2 'genres' and exit status 0: now it stops,
    saying how to write the genres."""
    folder = kaggle_folder(tmp_path, ["id,title,genres", '1,Alpha,"Comedy, Drama"', '2,Beta,"Action, Drama"',
                                      "3,Gamma,Action"])
    with pytest.raises(DataError, match=r"2 of 3 posters' genres hold a comma \(e\.g\. 'Comedy, Drama'\); this "
                                        r"layout separates genres with \|: write them as 'Comedy\|Drama'"):
        read_posters(folder)


def test_ids_that_are_paths_touch_nothing_outside(tmp_path, capsys):
    Image.new("RGB", (20, 30)).save(tmp_path / "secret.jpg")  # outside the data folder
    folder = kaggle_folder(tmp_path, [
        "anime_id,Name,Genres", "1,Alpha,Action", "../../secret,Evil,Action", f"{tmp_path / 'secret'},Evil,Action",
        "..,Dots,Action", "\u3042" * 100 + ",Long,Action", "2,Beta,Comedy"])  # 100 characters, 300 bytes
    shutil.copy(tmp_path / "secret.jpg", folder / "secret.jpg")  # reachable as images/../secret too
    posters = read_posters(folder)
    assert [p.id for p in posters.posters] == ["1", "2"]
    assert all(p.image.parent == folder / "images" for p in posters.posters)
    assert posters.skipped == {"id not a plain file name": 4}
    assert "4 ids are not plain file names (e.g. '../../secret'); those rows are left out" in capsys.readouterr().err


def test_writes_never_follow_a_planted_temporary_name(tmp_path):
    """The temporary file is created exclusively under a random name: a symlink planted at the old predictable
    '<out>.tmp' leads nowhere, and the result has a plain file's permissions."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "report.md"
    (tmp_path / "report.md.tmp").symlink_to(victim)
    write_text_atomic(out, "new")
    assert out.read_text() == "new" and victim.read_text() == "keep me"
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~UMASK)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md", "report.md.tmp", "victim.txt"]


def test_csv_cells_from_data_never_run_as_formulas(tmp_path):
    """Genres, ids and reasons go into CSVs that users open in spreadsheets: a cell starting like a formula is
    text there; numbers stay numbers."""
    path = tmp_path / "predictions.csv"
    write_csv_atomic(path, ["image", "=HYPERLINK(\"http://x\")", "Action"], [["@SUM(A1)", "+1", "0.25"]])
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows == [["image", "'=HYPERLINK(\"http://x\")", "Action"], ["'@SUM(A1)", "'+1", "0.25"]]
