"""The split follows its CSV: rows appended, genres changed or rows removed are seen by every step that reads the
split, and updating it keeps every poster's part."""
import csv
import shutil

from postergenre.extract.features import load_features
from postergenre.posters.split import Split
from tests.conftest import run_module


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "title", "genres"])
        writer.writeheader()
        writer.writerows(rows)


def test_appended_rows_and_changed_genres_reach_the_split_features_and_heads(sample_dir, tmp_path):
    data, split, features = tmp_path / "posters", tmp_path / "split.json", tmp_path / "posters-lite0.h5"
    shutil.copytree(sample_dir, data)
    csv_path = data / "covers.csv"
    rows = _rows(csv_path)
    _write(csv_path, rows[:-10])
    run_module("posters", "split", "--data", str(data), "--out", str(split), "--min-count", "3")
    extract = ("extract", "--data", str(data), "--split", str(split), "--backbone", "efficientnet_lite0",
               "--out", str(features))
    run_module(*extract)
    before = Split.load(split).part_of()

    _write(csv_path, rows)  # 10 rows appended
    for step in (extract, ("heads", "--features", str(features), "--heads", "logistic", "--models-dir",
                           str(tmp_path / "models"), "--results-dir", str(tmp_path / "results"))):
        stopped = run_module(*step, check=False)
        assert stopped.returncode == 1, stopped.stdout
        assert "changed since" in stopped.stderr and "make split" in stopped.stderr, stopped.stderr
    assert "(+10 posters, 0 genres changed, 0 removed)" in run_module(*extract, check=False).stderr
    updated = run_module("posters", "split", "--data", str(data), "--out", str(split), "--min-count", "3")
    assert "(+10 posters, 0 genres changed, 0 removed); every other poster kept its part" in updated.stdout
    after = Split.load(split).part_of()
    assert all(after[poster] == part for poster, part in before.items())
    assert len(after) == len(before) + 10
    assert f"{len(before)} posters reused, 10 embedded" in run_module(*extract).stdout
    assert set(load_features(features).ids) == set(after)

    changed = [dict(row, genres="Horror|Sports") if i < 3 else row for i, row in enumerate(rows)]
    _write(csv_path, changed)
    updated = run_module("posters", "split", "--data", str(data), "--out", str(split), "--min-count", "3")
    assert "(+0 posters, 3 genres changed, 0 removed)" in updated.stdout and Split.load(split).part_of() == after
    assert f"{len(after)} posters reused, 0 embedded" in run_module(*extract).stdout
    loaded = load_features(features)
    first = list(loaded.ids).index(rows[0]["id"])
    assert [g for g, y in zip(loaded.genres, loaded.Y[first]) if y] == ["Horror", "Sports"]

    _write(csv_path, changed[5:])
    updated = run_module("posters", "split", "--data", str(data), "--out", str(split), "--min-count", "3")
    assert "(+0 posters, 0 genres changed, 5 removed)" in updated.stdout
    assert set(Split.load(split).part_of()) == set(after) - {row["id"] for row in rows[:5]}
