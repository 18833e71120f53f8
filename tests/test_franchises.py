"""Franchise groups: seasons, sequels and movies of one franchise share a group, the split and every fold keep a
group in one part, a `group` column wins, and a split from before groups still reads, saying it is ungrouped."""
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from postergenre.evaluation import report
from postergenre.extract.features import Features
from postergenre.heads.union import Union
from postergenre.posters.data import Poster, PosterSet, read_posters
from postergenre.posters.franchises import franchise_groups, franchise_stem
from postergenre.posters.split import Split, load_current, make_split, stratified_folds, update_split
from tests.conftest import run_module


@pytest.mark.parametrize("title, stem", [
    ("Shingeki no Kyojin Season 3 Part 2", "shingeki no kyojin"),
    ("Shingeki no Kyojin: The Final Season", "shingeki no kyojin"),
    ("Boku no Hero Academia 3", "boku no hero academia"),
    ("Haikyuu!! 2nd Season", "haikyuu"),
    ("Natsume Yuujinchou Roku Specials", "natsume yuujinchou"),
    ("Gekijouban Made in Abyss", "made in abyss"),
    ("Re:Zero kara Hajimeru Isekai Seikatsu", "re zero kara hajimeru isekai seikatsu"),
    ("86", "86"),  # a title that is all marker keeps its last word
])
def test_a_stem_drops_subtitles_and_season_markers(title, stem):
    assert franchise_stem(title) == stem


def test_the_rule_groups_real_franchises_and_keeps_others_apart(data_root):
    posters = read_posters(data_root / "anime-posters")
    titles = {p.id: p.titles for p in posters.posters}
    groups = franchise_groups(titles)
    by_title = {t: groups[p.id] for p in posters.posters for t in p.titles}
    assert by_title["Cowboy Bebop"] == by_title["Cowboy Bebop: Tengoku no Tobira"]
    assert by_title["Shingeki no Kyojin Season 2"] == by_title["Shingeki no Kyojin Season 3 Part 2"] \
        == by_title["Shingeki no Kyojin: The Final Season"]
    assert by_title["Psycho-Pass"] == by_title["Psycho-Pass 3: First Inspector"]
    assert len({by_title["Naruto"], by_title["One Piece"], by_title["Cowboy Bebop"], by_title["Monster"]}) == 4
    sizes = Counter(groups.values())
    # no chain of near titles swallows unrelated anime: the largest group is one franchise of a few dozen at most
    assert 600 < len(sizes) < 1000 and max(sizes.values()) <= 20
    assert franchise_groups(titles) == groups  # deterministic


def test_a_grouped_split_keeps_each_franchise_in_one_part_and_stays_stratified(data_root):
    posters = read_posters(data_root / "anime-posters")
    split = make_split(posters, seed=0)
    assert split.grouping == "franchise" and split == make_split(posters, seed=0)
    part_of = split.part_of()
    parts_of_group: dict[str, set[str]] = {}
    for pid, part in part_of.items():
        parts_of_group.setdefault(split.groups[pid], set()).add(part)
    assert all(len(parts) == 1 for parts in parts_of_group.values())
    assert sum(len(p) > 1 for p in Counter(split.groups.values()).items()) > 50  # real groups, not singletons
    total = len(part_of)
    for part, share in zip(("train", "val", "test"), split.fractions):
        assert len(split.parts[part]) / total == pytest.approx(share, abs=0.02)
        for genre in ("Action", "Comedy", "Drama", "Romance", "Fantasy"):
            in_all = sum(split.genre_counts[p].get(genre, 0) for p in split.parts)
            assert split.genre_counts[part].get(genre, 0) / in_all == pytest.approx(share, abs=0.03), (part, genre)

    ungrouped = make_split(posters, seed=0, grouping="none")
    assert ungrouped.grouping == "none" and not ungrouped.groups
    train_groups = {split.groups[pid] for pid in ungrouped.parts["train"]}
    # poster by poster, many test posters have a sibling in training: what the grouped split prevents
    assert sum(split.groups[pid] in train_groups for pid in ungrouped.parts["test"]) > 30


def test_folds_keep_a_group_together_and_without_groups_are_as_before():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 4)) < 0.3).astype(np.uint8)
    groups = np.array([f"g{i // 3}" for i in range(300)])
    folds = stratified_folds(y, (0.2,) * 5, 0, groups)
    assert sorted(np.concatenate(folds)) == list(range(300))
    assert all(not set(groups[a]) & set(groups[b]) for i, a in enumerate(folds) for b in folds[i + 1:])
    assert all(len(f) == 60 for f in folds)
    plain = stratified_folds(y, (0.2,) * 5, 0)
    assert all((a == b).all() for a, b in zip(plain, stratified_folds(y, (0.2,) * 5, 0, np.arange(300))))
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(plain, folds))


def _posters(named: dict[str, str]) -> PosterSet:
    genres = ["Action", "Drama", "Comedy"]
    return PosterSet("x", Path("x"), [
        Poster(str(i), Path(f"{i}.jpg"), (genres[i % 3],), (f"Title {i // 2} Season {i % 2 + 1}",),
               named.get(str(i), "")) for i in range(120)])


def test_a_group_column_wins_over_the_titles():
    # by the titles, 0 and 1 are one franchise ("Title 0"); the column puts 0 with 10 and 11 with 1 instead
    split = make_split(_posters({"0": "saga", "10": "saga", "1": "other", "11": "other"}), min_count=1)
    assert split.groups["0"] == split.groups["10"] == "=saga" and split.groups["1"] == split.groups["11"]
    assert split.groups["2"] == split.groups["3"] and split.groups["0"] != split.groups["1"]
    part_of = split.part_of()
    assert part_of["0"] == part_of["10"] and part_of["1"] == part_of["11"]


def test_a_split_from_before_groups_reads_as_ungrouped_and_updates_as_it_was(tmp_path, capsys):
    posters = _posters({})
    new = make_split(posters, min_count=1, grouping="none")
    raw = {k: v for k, v in json.loads(json.dumps(new.__dict__, default=list)).items()
           if k not in ("grouping", "groups")}
    path = tmp_path / "split.json"
    path.write_text(json.dumps(raw))
    old = load_current(path, posters)
    assert old.grouping == "" and old.parts == new.parts
    assert "an ungrouped split" in capsys.readouterr().err
    more = PosterSet("x", Path("x"), posters.posters + [Poster("new", Path("n.jpg"), ("Drama",), ("Title 0",))])
    updated, changed = update_split(old, more)
    assert updated.grouping == "" and changed.added == ["new"]
    assert all(updated.part_of()[pid] == part for pid, part in old.part_of().items())


def test_a_new_poster_joins_its_franchise_part():
    posters = _posters({})
    split = make_split(posters, min_count=1)
    sequel = Poster("new", Path("n.jpg"), ("Drama",), ("Title 7: The Movie",))
    updated, _ = update_split(split, PosterSet("x", Path("x"), posters.posters + [sequel]))
    assert updated.part_of()["new"] == split.part_of()["14"] and updated.groups["new"] == split.groups["14"]


def test_the_command_makes_a_grouped_split_and_keeps_an_existing_ungrouped_one(sample_dir, tmp_path):
    out = tmp_path / "split.json"
    made = run_module("posters", "split", "--data", str(sample_dir), "--out", str(out), "--min-count", "3")
    assert "franchise groups, each in one part" in made.stdout and Split.load(out).grouping == "franchise"
    run_module("posters", "split", "--data", str(sample_dir), "--out", str(out), "--min-count", "3",
               "--grouping", "none")
    assert Split.load(out).grouping == "none"
    kept = run_module("posters", "split", "--data", str(sample_dir), "--out", str(out), "--min-count", "3")
    assert "every other poster kept its part" in kept.stdout and Split.load(out).grouping == "none"


def test_a_union_leaves_out_the_whole_franchise_of_a_held_out_poster():
    rng = np.random.default_rng(0)
    attrs = {"data": "d", "backbone": "b", "weights_sha256": "w", "image_size": 224, "preprocessing": "p",
             "tta": "none"}
    target = Features(np.array(["t0", "t1", "t2"]), np.array(["train", "val", "test"]), rng.normal(size=(3, 4)),
                      np.ones((3, 1), np.uint8), ["Action"], {**attrs, "dataset": "anime"})
    source = Features(np.array(["s0", "s1", "s2", "s3"]), np.array(["train"] * 4), rng.normal(size=(4, 4)),
                      np.ones((4, 1), np.uint8), ["Action"], {**attrs, "dataset": "anilist"})
    union = Union(target, source, {"t0": ("Naruto",), "t1": ("Monster",), "t2": ("Shingeki no Kyojin",)},
                  {"s0": ("Naruto Shippuuden",), "s1": ("Monster: Special",), "s2": ("Shingeki no Kyojin Season 2",),
                   "s3": ("Cowboy Bebop",)})
    X, _, report = union.training_set()
    # the sequel of a training poster may join; those of the validation and test posters may not
    assert report["added"] == 2 and report["left_out"] == 2 and report["matched"] == 3
    np.testing.assert_array_equal(X[1:], source.X[[0, 3]])


LONE = ("Akira", "Texhnolyze", "Eyeshield", "Beck", "Mushishi", "Hyouka", "Kaiba", "Planetes", "Paprika", "Redline",
        "Baccano", "Durarara", "Kemonozume", "Dorohedoro", "Ping Pong", "Mononoke", "Tatami Galaxy", "Hellsing",
        "Claymore", "Berserk")  # twenty anime of no shared franchise


def test_the_report_says_what_an_ungrouped_split_flatters(tmp_path):
    """On a split poster by poster, the picked model's test mAP on test posters with a training sibling and on the
    others, each with its interval."""
    data = tmp_path / "anime"
    (data / "images").mkdir(parents=True)
    titles = [f"{['Cowboy Bebop', 'Naruto', 'Monster', 'Trigun'][i % 4]} Season {i // 4 + 1}" if i < 60
              else LONE[i - 60] for i in range(80)]
    rows = ["id,title,genres"] + [f"p{i},{t},{'Action' if i % 2 else 'Drama'}" for i, t in enumerate(titles)]
    (data / "covers.csv").write_text("\n".join(rows) + "\n")
    for i in range(80):
        (data / "images" / f"p{i}.jpg").write_bytes(b"")
    posters = read_posters(data)
    split = make_split(posters, min_count=1, grouping="none")
    test_ids = np.array(split.parts["test"])
    rng = np.random.default_rng(0)
    y = np.array([[int(p[1:]) % 2 == 0, int(p[1:]) % 2 == 1] for p in test_ids], dtype=np.uint8)
    saved = {"test": (test_ids, y, np.clip(y * 0.3 + rng.random(y.shape), 0, 1))}
    best = {"model": "head", "data": str(data), "thresholds": {"values": [0.5, 0.5]}}
    lines = report._franchise_lines(split, best, saved)
    seen = sum(int(p[1:]) < 60 for p in test_ids)  # the four series' other seasons are in training
    assert 0 < seen < len(test_ids)
    assert "not grouped by franchise, and that flatters" in lines[0]
    assert re.search(rf"\d\.\d{{3}} \(\d\.\d{{3}}-\d\.\d{{3}}\) on {seen} posters of a franchise seen in training; "
                     rf"\d\.\d{{3}} \(\d\.\d{{3}}-\d\.\d{{3}}\) on {len(test_ids) - seen} posters of a new franchise",
                     lines[0]), lines[0]
    assert report._franchise_lines(make_split(posters, min_count=1), best, saved) == []
