"""python -m bench [--full]: the whole benchmark, step after step, then each step's minutes and the total.

`make bench` runs it. The comparison (bench.comparison) resumes where it stopped; the other steps are short and
run again. The figures go to reports/bench.md, docs/evaluation.md, docs/audit.md and the terminal (the new-anime
table of bench.franchises: docs/results.md holds its last run).
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.plan import BACKBONE, features_path
from postergenre.core import cli
from postergenre.modelfiles import final_model_path

WORK = Path("runs/bench")


def steps(data_root: Path, page_model: Path, full: bool) -> list[tuple[str, list[str]]]:
    """(name, python -m arguments) of each step, in order: bench's own modules, run from the repository, which
    call the project by its installed names."""
    anime = data_root / "anime-posters"
    poster = str(anime / "images" / "1.jpg")
    features = [str(features_path(WORK, name, BACKBONE)) for name in ("movie-posters", "anime-posters",
                                                                       "anilist-covers")]
    return [("comparison", ["bench.comparison", "--data-root", str(data_root), "--work", str(WORK),
                            *(["--full"] if full else [])]),
            ("intervals", ["bench.intervals", "--features", *features[:2]]),
            ("audit", ["bench.audit", "--features", features[1]]),
            ("new anime", ["bench.franchises", "--features", *features[1:], "--titles",
                           str(data_root / "anime-dataset-2023-genres.csv")]),
            ("choices", ["bench.choices", "--results-dir", str(WORK / "results")]),
            ("downloads", ["bench.downloads", "--data", str(anime)]),
            ("page", ["bench.page", "--model", str(page_model), "--image", poster]),
            ("cold start", ["bench.cold_start", "--image", poster,
                            "--model", str(final_model_path(WORK / "models", anime.name))]),
            ("extraction", ["bench.extraction", "--data", str(anime)]),
            ("training", ["bench.training", "--data", str(anime)])]


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m bench", __doc__)
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="the three data set folders")
    parser.add_argument("--page-model", type=Path, required=True, help="the network the page is timed with")
    parser.add_argument("--full", action="store_true", help="run everything, not what fits in an hour")
    args = parser.parse_args(argv)
    minutes: dict[str, float] = {}
    for name, command in steps(args.data_root, args.page_model, args.full):
        print(f"[bench] {name}: python -m {' '.join(command)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", *command], check=True)
        minutes[name] = (time.perf_counter() - start) / 60
    print("\n".join(f"[bench] {name}: {m:.1f} min" for name, m in minutes.items()))
    print(f"[bench] total: {sum(minutes.values()):.1f} min in this run"
          + (" (the comparison's resumed steps are in reports/bench.md)" if minutes["comparison"] < 1 else ""))


if __name__ == "__main__":
    main()
