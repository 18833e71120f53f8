"""python -m postergenre.posters split --data DIR --out FILE [--seed N --min-count N --grouping franchise|none]
   | python -m postergenre.posters download --csv FILE --out-dir DIR [--concurrency N --rate R ...]
   | python -m postergenre.posters sample --out-dir DIR"""
import argparse
import time
from collections import Counter
from pathlib import Path

from postergenre.core import cli
from postergenre.posters.data import read_posters
from postergenre.posters.download import DownloadConfig, download, summary
from postergenre.posters.sample import write_sample
from postergenre.posters.split import GROUPINGS, Split, make_split, update_split


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.posters", __doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="make the train/val/test split of a data set",
                                formatter_class=parser.formatter_class)
    split.add_argument("--data", required=True, help="data set folder (CSV + images)")
    split.add_argument("--out", required=True, help="split file to write (.json)")
    split.add_argument("--seed", type=int, default=0, help="seeds the stratified split")
    split.add_argument("--min-count", type=int, default=5, help="drop genres with fewer training posters")
    split.add_argument("--grouping", choices=GROUPINGS, help="franchise: keep each franchise (its seasons, sequels "
                       "and movies) in one part; none: poster by poster. Default: an existing split's own, else "
                       "franchise")
    fetch = commands.add_parser("download", help="download the posters of a CSV's Image URL column",
                                formatter_class=parser.formatter_class)
    fetch.add_argument("--csv", required=True, help="a Kaggle anime CSV with anime_id and Image URL")
    fetch.add_argument("--out-dir", required=True, help="data set folder: the CSV is copied there, posters go to "
                       "images/")
    cli.add_settings(fetch, DownloadConfig())
    sample = commands.add_parser("sample", help="generate the synthetic sample data set",
                                 formatter_class=parser.formatter_class)
    sample.add_argument("--out-dir", required=True, help="data set folder to write")
    sample.add_argument("--posters", type=int, default=360, help="how many synthetic posters")
    sample.add_argument("--seed", type=int, default=0, help="seeds the drawing")
    args = parser.parse_args(argv)
    cli.run(lambda: {"split": split_command, "download": download_command, "sample": sample_command}[args.command](
        args), interrupted="interrupted: files written so far are whole and kept; run the same command to resume")


def split_command(args: argparse.Namespace) -> None:
    """A new split; or, where --out is a split of the same seed, minimum count and grouping (none given: any),
    that split updated to the CSV as it is now, every poster keeping its part (posters.split.update_split)."""
    posters, out = read_posters(args.data), Path(args.out)
    old = Split.load(out) if out.is_file() else None
    if old is not None and old.labels and (old.seed, old.min_count) == (args.seed, args.min_count) \
            and args.grouping in (None, old.grouping or "none"):
        result, changed = update_split(old, posters)
        print(f"{out}: updated to {posters.root} as it is now ({changed}); every other poster kept its part")
    else:
        result = make_split(posters, seed=args.seed, min_count=args.min_count, grouping=args.grouping or "franchise")
    result.save(out)
    sizes = ", ".join(f"{part} {len(ids)}" for part, ids in result.parts.items())
    grouped = "ungrouped: a franchise's posters may be in several parts"
    if result.grouping == "franchise":
        largest, size = Counter(result.groups.values()).most_common(1)[0]
        grouped = f"{len(set(result.groups.values()))} franchise groups, each in one part (largest {largest!r}: {size})"
    print(f"{out}: {sizes}; {grouped}; {len(result.genres)} genres; "
          f"dropped {result.dropped_text()}; left out {result.left_out or 'none'}")


def download_command(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    outcomes = download(args.csv, args.out_dir, cli.settings_from(args, DownloadConfig))
    print(f"{summary(outcomes, time.perf_counter() - start)}; failures listed in "
          f"{args.out_dir}/download-failures.csv")


def sample_command(args: argparse.Namespace) -> None:
    write_sample(args.out_dir, n_posters=args.posters, seed=args.seed)
    print(f"{args.out_dir}: {args.posters} synthetic posters")


if __name__ == "__main__":
    main()
