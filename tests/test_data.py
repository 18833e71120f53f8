import shutil

import pytest
from PIL import Image

from posters.data import DataError, read_genre_table, read_posters
from posters.split import Split, make_split


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

    # Erotica (1 training poster) and Hentai (3) fall under min_count and are listed
    assert split.dropped_genres == {"Erotica": 1, "Hentai": 3}
    assert all(split.genre_counts["train"][g] >= 5 for g in split.genres)
    # stratification puts the common genres into each part in proportion
    for part in ("val", "test"):
        share = split.genre_counts[part]["Action"] / len(split.parts[part])
        assert share == pytest.approx(491 / 1282, abs=0.04)

    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split
