"""What each genre looks like, as a report section: reports/explain/<dataset>.md and its figures.

For each genre: the test posters the network is surest of, its worst false positives and its worst
misses, each with the Grad-CAM heatmap of that genre; and how the genre's posters differ in colour
from the others. Then, for a few test posters, their nearest training posters in the embedding
space of the feature file, which is what ML-kNN votes with.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.colors import rgb_to_hsv

from postergenre.core.files import write_text_atomic
from postergenre.core.markup import md_text, slug
from postergenre.core.progress import progress
from postergenre.evaluation.charts import plt, save_figure  # the report's charts' settings: data as plain text
from postergenre.explain.gradcam import grad_cam, overlay
from postergenre.extract.features import Features
from postergenre.posters.data import Poster
from postergenre.posters.decode import load_image
from postergenre.posters.split import label_matrix
from postergenre.predict.models import Predictor

HUE_NAMES = ["red", "orange", "yellow", "green", "cyan", "blue", "purple", "pink", "red"]
HUE_EDGES = [0, 20, 45, 70, 160, 200, 255, 290, 335, 361]


def colour_statistics(posters: list[Poster]) -> np.ndarray:
    """(posters, 4): mean hue as a unit vector (cos, sin), mean saturation and mean brightness, in [0, 1]."""
    rows = []
    for poster in progress(posters, desc="colours", unit="poster"):
        hsv = rgb_to_hsv(np.asarray(load_image(poster.image).resize((64, 64)), dtype=np.float32) / 255)
        angle = hsv[..., 0] * 2 * np.pi
        weight = hsv[..., 1]  # grey pixels have no meaningful hue
        rows.append([(np.cos(angle) * weight).mean(), (np.sin(angle) * weight).mean(),
                     hsv[..., 1].mean(), hsv[..., 2].mean()])
    return np.array(rows)


def _hue_name(cos: float, sin: float) -> tuple[str, float]:
    degrees = float(np.degrees(np.arctan2(sin, cos)) % 360)
    return HUE_NAMES[int(np.searchsorted(HUE_EDGES, degrees, side="right")) - 1], degrees


def colour_summary(genre: str, has: np.ndarray, stats: np.ndarray) -> str:
    """One sentence: how posters of the genre differ from the rest in brightness, saturation and hue."""
    if not has.any() or has.all():  # a model's genre that this data set has on no poster, or on every one
        return f"**{md_text(genre)}** ({has.sum()} posters): no posters to compare its colours with."
    mine, rest = stats[has].mean(axis=0), stats[~has].mean(axis=0)
    notes = []
    for index, more, less, name in ((3, "brighter", "darker", "brightness"),
                                    (2, "more saturated", "less saturated", "saturation")):
        diff = mine[index] - rest[index]
        if abs(diff) >= 0.02:
            notes.append(f"{more if diff > 0 else less} ({name} {mine[index]:.2f} vs {rest[index]:.2f})")
    (hue, degrees), (rest_hue, rest_degrees) = _hue_name(*mine[:2]), _hue_name(*rest[:2])
    if hue != rest_hue:
        notes.append(f"hue leans {hue} (mean {degrees:.0f}° vs {rest_degrees:.0f}°)")
    return f"**{md_text(genre)}** ({has.sum()} posters): " + (", ".join(notes) or "close to the others in colour") + "."


def _tiles(predictor: Predictor, posters: list[Poster], labels: np.ndarray, scores: np.ndarray, g: int, path: Path,
           per_kind: int = 3) -> None:
    """One row of posters for genre g: surest right, worst false positives, worst misses; each with its heatmap.

    `labels` and `scores`: the posters' 0/1 genre labels and probabilities for genre g.
    """
    order = np.argsort(-scores)
    kinds = [("sure", [i for i in order if labels[i]][:per_kind]),
             ("false +", [i for i in order if not labels[i]][:per_kind]),
             ("missed", [i for i in order[::-1] if labels[i]][:per_kind])]
    chosen = [(kind, i) for kind, rows in kinds for i in rows]
    fig, axes = plt.subplots(1, len(chosen), figsize=(1.6 * len(chosen), 2.6), squeeze=False)
    for ax, (kind, i) in zip(axes[0], chosen):
        image = load_image(posters[i].image)
        cam, probability = grad_cam(predictor.network, predictor.transform(image), g)
        ax.imshow(overlay(image, cam))
        ax.set_title(f"{kind}\n{posters[i].id}: {probability:.2f}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def _neighbours(features: Features, posters_by_id: dict[str, Poster], path: Path, queries: int = 4,
                k: int = 5) -> None:
    """Each of `queries` test posters beside its k nearest training posters (cosine similarity)."""
    X = features.X / np.linalg.norm(features.X, axis=1, keepdims=True)
    train, test = np.flatnonzero(features.parts == "train"), np.flatnonzero(features.parts == "test")
    picks = test[np.linspace(0, len(test) - 1, queries).astype(int)]
    fig, axes = plt.subplots(queries, k + 1, figsize=(1.5 * (k + 1), 2.5 * queries), squeeze=False)
    for row, q in zip(axes, picks):
        similarity = X[train] @ X[q]
        nearest = train[np.argsort(-similarity)[:k]]
        for ax, i, sim in zip(row, [q, *nearest], [None, *np.sort(similarity)[::-1][:k]]):
            poster = posters_by_id[features.ids[i]]
            ax.imshow(load_image(poster.image))
            caption = "\n".join(poster.genres[:3])
            ax.set_title(("test poster\n" if sim is None else f"cos {sim:.2f}\n") + caption, fontsize=6)
            ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)


def write_genre_section(predictor: Predictor, dataset: str, posters: dict[str, list[Poster]], test_scores: np.ndarray,
                        features: Features | None, out_dir: Path | str, command: str) -> Path:
    """Write reports/explain/<dataset>.md (+ figures); `posters` maps each split part to its posters."""
    out_dir = Path(out_dir)
    figures = out_dir / "explain" / dataset
    figures.mkdir(parents=True, exist_ok=True)
    everyone = [p for part in posters.values() for p in part]
    stats = colour_statistics(everyone)
    all_labels = label_matrix([p.genres for p in everyone], predictor.genres).astype(bool)
    test_labels = label_matrix([p.genres for p in posters["test"]], predictor.genres).astype(bool)
    lines = [f"### What each genre looks like ({predictor.name})", "",
             f"For each genre: the 3 test posters {predictor.name} is surest of, its 3 most confident false "
             "positives and its 3 worst misses, each with the genre's Grad-CAM heatmap (red: the regions that "
             "raised the genre's score most) and the genre's probability. Colours are averaged over all "
             f"{len(everyone)} posters of the data set, each genre against the posters without it. "
             f"Reproduce: `{command}`.", ""]
    for g, genre in enumerate(progress(predictor.genres, desc="heatmaps", unit="genre")):
        path = figures / f"{g:02d}-{slug(genre)}.png"
        _tiles(predictor, posters["test"], test_labels[:, g], test_scores[:, g], g, path)
        lines += [colour_summary(genre, all_labels[:, g], stats), "",
                  f"![{md_text(genre)}]({path.relative_to(out_dir)})", ""]
    if features is not None:
        path = figures / "nearest-neighbours.png"
        _neighbours(features, {p.id: p for p in everyone}, path)
        lines += ["### Nearest neighbours in the embedding space", "",
                  f"![nearest neighbours]({path.relative_to(out_dir)})", "",
                  f"*Test posters (left) and their 5 most similar training posters by cosine similarity of "
                  f"`{features.attrs['backbone']}` embeddings: the neighbours whose genres ML-kNN counts. "
                  f"Reproduce: `{command}`.*", ""]
    path = out_dir / "explain" / f"{dataset}.md"
    write_text_atomic(path, "\n".join(lines))
    return path
