"""python -m posters split DATA --out FILE [--seed N --min-count N]
   | python -m posters download CSV --out DATA [--concurrency N --rate R ...]
   | python -m posters sample OUT"""
import argparse
import sys
import time
from dataclasses import fields

from posters.data import DataError, read_posters
from posters.download import DownloadConfig, download, summary
from posters.sample import write_sample
from posters.split import make_split


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m posters", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    split = commands.add_parser("split", help="make the train/val/test split of a data set")
    split.add_argument("data", help="data set folder (CSV + images)")
    split.add_argument("--out", required=True)
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--min-count", type=int, default=5, help="drop genres with fewer training posters")
    fetch = commands.add_parser("download", help="download the posters of a CSV's Image URL column")
    fetch.add_argument("csv", help="a Kaggle anime CSV with anime_id and Image URL")
    fetch.add_argument("--out", required=True, help="data set folder: the CSV is copied there, posters go to images/")
    for field in fields(DownloadConfig):
        fetch.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default)
    sample = commands.add_parser("sample", help="generate the synthetic sample data set")
    sample.add_argument("out")
    sample.add_argument("--posters", type=int, default=360)
    sample.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        if args.command == "split":
            posters = read_posters(args.data)
            result = make_split(posters, seed=args.seed, min_count=args.min_count)
            result.save(args.out)
            sizes = ", ".join(f"{part} {len(ids)}" for part, ids in result.parts.items())
            print(f"{args.out}: {sizes}; {len(result.genres)} genres; "
                  f"dropped {result.dropped_genres or 'none'}; left out {result.left_out or 'none'}")
        elif args.command == "download":
            start = time.perf_counter()
            cfg = DownloadConfig(**{f.name: getattr(args, f.name) for f in fields(DownloadConfig)})
            outcomes = download(args.csv, args.out, cfg)
            print(f"{summary(outcomes, time.perf_counter() - start)}; failures listed in "
                  f"{args.out}/download-failures.csv")
        else:
            write_sample(args.out, n_posters=args.posters, seed=args.seed)
            print(f"{args.out}: {args.posters} synthetic posters")
    except DataError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted: files written so far are whole and kept; run the same command to resume")


if __name__ == "__main__":
    main()
