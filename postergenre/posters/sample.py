"""A small synthetic poster set, generated deterministically, to show the pipeline with no real data.

Each genre has a colour, a motif and a title position; a poster mixes the cues of its genres with
noise and occasional motifs of other genres, so the task is learnable but not trivial. The set is
written in the simple `id,title,genres` layout with images/<id>.jpg.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = (200, 280)
SYNTHETIC_MARK = "SYNTHETIC"  # a file in the sample folder, so that the report can say so
# Titles: 400 made-up names, no two of one franchise (posters.franchises); from the 401st poster on they repeat,
# as sequels do.
TITLE_WORDS = ("Crimson Silent Iron Hidden Burning Frozen Golden Broken Endless Grey Scarlet Hollow Wild Paper Bright "
               "Velvet Savage Lunar Quiet Thunder".split(),
               "Harbor Meadow Blade Garden Signal Kingdom Lantern Orbit Circus Academy Forest Engine Melody Tide "
               "Station Castle Voyage Shrine Comet Festival".split())
# genre -> (colour, motif, title at top?, relative frequency)
GENRES = {
    "Action": ((215, 70, 30), "triangle", True, 5),
    "Comedy": ((245, 205, 50), "circle", False, 4),
    "Horror": ((45, 15, 25), "slash", True, 2),
    "Romance": ((240, 125, 175), "heart", False, 3),
    "Sci-Fi": ((35, 120, 225), "grid", True, 3),
    "Sports": ((45, 165, 75), "stripe", False, 2),
}


def _motif(draw: ImageDraw.ImageDraw, motif: str, rng: np.random.Generator, colour: tuple) -> None:
    w, h = SIZE
    x, y, r = int(rng.integers(0, w)), int(rng.integers(40, h - 40)), int(rng.integers(10, 35))
    if motif == "triangle":
        draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
    elif motif == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=4)
    elif motif == "slash":
        draw.line([(x - r, y - 2 * r), (x + r, y + 2 * r)], fill=colour, width=3)
    elif motif == "heart":
        draw.ellipse([x - r, y - r // 2, x, y + r // 2], fill=colour)
        draw.ellipse([x, y - r // 2, x + r, y + r // 2], fill=colour)
        draw.polygon([(x - r, y), (x + r, y), (x, y + r)], fill=colour)
    elif motif == "grid":
        for k in range(-2, 3):
            draw.line([(x + k * 8, y - r), (x + k * 8, y + r)], fill=colour, width=1)
            draw.line([(x - r, y + k * 8), (x + r, y + k * 8)], fill=colour, width=1)
    elif motif == "stripe":
        draw.rectangle([0, y, w, y + r // 3], fill=colour)


def _poster(genres: list[str], rng: np.random.Generator) -> Image.Image:
    colours = np.array([GENRES[g][0] for g in genres], dtype=float)
    base = colours.mean(axis=0) * rng.uniform(0.6, 1.1) + rng.normal(0, 25, 3)
    top, bottom = base, base * rng.uniform(0.3, 0.9)
    gradient = np.linspace(0, 1, SIZE[1])[:, None, None]
    pixels = top * (1 - gradient) + bottom * gradient + rng.normal(0, 12, (SIZE[1], SIZE[0], 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    others = [g for g in GENRES if g not in genres]
    for genre in genres + ([others[rng.integers(len(others))]] if rng.random() < 0.3 else []):
        colour, motif = GENRES[genre][:2]
        tint = tuple(int(c) for c in np.clip(255 - np.array(colour) + rng.normal(0, 30, 3), 0, 255))
        for _ in range(rng.integers(1, 5)):
            _motif(draw, motif, rng, tint)
    title_top = GENRES[genres[0]][2] if rng.random() < 0.8 else not GENRES[genres[0]][2]
    y = 10 if title_top else SIZE[1] - 40
    draw.rectangle([12, y, SIZE[0] - 12, y + 26], fill=(250, 250, 250) if rng.random() < 0.5 else (15, 15, 15))
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def write_sample(out: Path | str, n_posters: int = 360, seed: int = 0) -> None:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / SYNTHETIC_MARK).write_text("These posters are drawn by posters/sample.py: no figure from them says how "
                                      "well a model reads real posters.\n")
    rng = np.random.default_rng(seed)
    names = list(GENRES)
    weights = np.array([GENRES[g][3] for g in names], dtype=float)
    with open(out / "covers.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "title", "genres"])
        for i in range(n_posters):
            count = 1 + (rng.random() < 0.5) + (rng.random() < 0.2)
            genres = list(rng.choice(names, size=count, replace=False, p=weights / weights.sum()))
            poster_id = f"s{i:04d}"
            _poster(genres, rng).save(out / "images" / f"{poster_id}.jpg", format="JPEG", quality=90)
            writer.writerow([poster_id, _title(i), "|".join(genres)])


def _title(i: int) -> str:
    first, second = TITLE_WORDS
    return f"{first[i % len(first)]} {second[(i // len(first)) % len(second)]}"
