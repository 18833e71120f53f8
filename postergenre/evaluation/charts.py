"""The report's charts, each a PNG: genre counts, per-genre AP and F1, training curves, precision-recall
curves, genre co-occurrence, and example posters with their true and predicted genres."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams["figure.constrained_layout.use"] = True  # labels, titles and legends never overlap the plots
# Genres, titles, model and data set names are data: a "$" in one is a dollar sign, never mathtext to parse
plt.rcParams["text.parse_math"] = False
from sklearn.metrics import precision_recall_curve  # noqa: E402

from postergenre.core.files import atomic_write  # noqa: E402
from postergenre.evaluation.calibration import reliability  # noqa: E402
from postergenre.posters.decode import load_image  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 110) -> None:
    """Write a chart as PNG, atomically (a full disk leaves the previous figure, never half of one), and free it."""
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def reliability_chart(y: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    """Mean probability against the share that came true, per bin of every (poster, genre) probability."""
    mean_p, frequency, counts = reliability(y, scores)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], ":", color="grey", label="calibrated")
    ax.plot(mean_p, frequency, "o-", color="tab:blue", label="model")
    for x, f, n in zip(mean_p, frequency, counts):
        ax.annotate(str(n), (x, f), textcoords="offset points", xytext=(4, -10), fontsize=7, color="grey")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean probability in the bin", ylabel="share that came true")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    save_figure(fig, path)


def bar_chart(counts: dict[str, int], title: str, path: Path, unit: str = "posters") -> None:
    names = sorted(counts, key=counts.get)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(names) + 1.2))
    ax.barh(names, [counts[n] for n in names], color="tab:blue")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def per_genre_chart(results: list[dict], path: Path, title: str) -> None:
    """Test AP (left) and F1 (right) per genre for each model; a genre with no test poster is marked, not zero."""
    per_genre = results[0]["test"]["per_genre"]
    genres = [g["genre"] + ("  (no test poster)" if g["support"] == 0 else "") for g in per_genre]
    fig, axes = plt.subplots(1, 2, sharey=True, figsize=(11, 0.32 * len(genres) * max(1, len(results) / 3) + 1.8))
    height = 0.8 / len(results)
    for ax, figure, label in zip(axes, ("ap", "f1"), ("test AP", "test F1")):
        for i, result in enumerate(results):
            values = [g[figure] if g[figure] is not None else 0.0 for g in result["test"]["per_genre"]]
            ax.barh([y + i * height for y in range(len(genres))], values, height=height, label=result["model"])
        ax.set_xlabel(label)
        ax.set_xlim(0, 1)
    axes[0].set_yticks([y + 0.4 - height / 2 for y in range(len(genres))], genres)
    axes[0].invert_yaxis()
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="outside lower center", ncol=3)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def curves_chart(trained: list[dict], path: Path) -> None:
    """Loss and validation mAP per epoch; markers, so that a 1-epoch run shows its point."""
    fig, axes = plt.subplots(1, len(trained), figsize=(4 * len(trained), 3.2), squeeze=False)
    for ax, r in zip(axes[0], trained):
        epochs = [h["epoch"] for h in r["history"]]
        ax.plot(epochs, [h["train_loss"] for h in r["history"]], marker="o", label="train loss")
        ax.plot(epochs, [h["val_loss"] for h in r["history"]], marker="o", label="val loss")
        ax.set_xlabel("epoch")
        ax.set_title(r["model"], fontsize=8)
        right = ax.twinx()
        right.plot(epochs, [h["val_mAP"] for h in r["history"]], marker="s", color="tab:green", label="val mAP")
        right.set_ylabel("val mAP")
        ax.legend(fontsize=7, loc="upper left")
        right.legend(fontsize=7, loc="upper right")
    save_figure(fig, path, dpi=100)


def pr_curves(y: np.ndarray, scores: np.ndarray, genres: list[str], path: Path, title: str) -> None:
    """One precision-recall curve per genre with test positives, AP in its legend."""
    shown = [g for g in range(len(genres)) if y[:, g].any()]
    columns = 4
    rows = -(-len(shown) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 2.4 * rows), squeeze=False, sharex=True,
                             sharey=True)
    for ax, g in zip(axes.flat, shown):
        precision, recall, _ = precision_recall_curve(y[:, g], scores[:, g])
        ax.step(recall, precision, where="post")
        ax.axhline(y[:, g].mean(), color="grey", linestyle=":", linewidth=1)  # a random ranking's precision
        ax.set_title(f"{genres[g]} ({int(y[:, g].sum())} posters)", fontsize=8)
    for ax in list(axes.flat)[len(shown):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("recall")
    for ax in axes[:, 0]:
        ax.set_ylabel("precision")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=90)


def cooccurrence_chart(y: np.ndarray, genres: list[str], path: Path, title: str) -> None:
    """How often two genres share a poster: P(column genre | row genre)."""
    counts = y.T.astype(float) @ y
    conditional = counts / np.maximum(np.diag(counts)[:, None], 1)
    fig, ax = plt.subplots(figsize=(0.38 * len(genres) + 3, 0.38 * len(genres) + 2))
    image = ax.imshow(conditional, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(genres)), genres, rotation=90, fontsize=7)
    ax.set_yticks(range(len(genres)), genres, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row genre's posters")
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def example_grid(images: list[Path], true: list[list[str]], predicted: list[list[str]], path: Path,
                 title: str) -> None:
    """Posters with their true genres above, and the model's predicted ones below: right, then wrong."""
    below = [[("predicted right", [g for g in guess if g in truth]),
              ("predicted wrong", [g for g in guess if g not in truth])] for truth, guess in zip(true, predicted)]
    poster_grid(images, [[("true", truth)] for truth in true], below, path, title)


def poster_grid(images: list[Path], above: list[list[tuple[str, list[str]]]], below: list[list[tuple[str, list[str]]]],
                path: Path, title: str) -> None:
    """Posters four to a row, each with lines of `label: genre, genre` above and below it."""
    def text(lines: list[tuple[str, list[str]]]) -> str:
        return "\n".join(row for label, genres in lines
                         for row in textwrap.wrap(f"{label}: {', '.join(genres) or 'none'}", 40))

    columns = 4
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 6 * rows), squeeze=False)
    for ax, image, top, bottom in zip(axes.flat, images, above, below):
        ax.imshow(load_image(image))
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(text(top), fontsize=7)
        ax.set_xlabel(text(bottom), fontsize=7)
    for ax in list(axes.flat)[len(images):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path, dpi=90)
