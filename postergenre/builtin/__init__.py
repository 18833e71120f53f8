"""The built-in anime genre model, shipped with the package, so that a poster gets genres with no data set and no
training: `postergenre predict poster.jpg`, `postergenre.load()`, `postergenre serve`.

`anime.skops` (with `anime.arrays.safetensors` beside it, which the light path runs) is the final head of
`make builtin`: chosen, calibrated and given its thresholds as `make heads final` does, on Lite0 multi-scale
features of every labelled anime poster and AniList cover in SHARED_DATA. `anime.md` is its card.
`python -m postergenre.builtin --model models/anime-posters-final.skops` copies such a final head here.
"""
from __future__ import annotations

from pathlib import Path

BUILTIN = Path(__file__).with_name("anime.skops")
NAMES = ("anime",)  # what postergenre.load() and --model accept for it
