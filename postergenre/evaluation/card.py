"""What every final model's card (models/<dataset>-final.md) says, whether the model is a head or a network:
the evaluated model's figures with their intervals, and the genres with their limits."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from postergenre.core.files import write_text_atomic
from postergenre.core.markup import md_text
from postergenre.evaluation.compare import interval, weak_model_sentence
from postergenre.evaluation.intervals import DESCRIPTION

RARE = 20  # genres with fewer labelled posters than this are named in the card's limits


def figures_lines(source: dict, posters: int, train_posters: int) -> list[str]:
    """`source`: the evaluated model's result, fitted on `train_posters` of the final model's `posters`."""
    test = source["test"]["overall"]
    lines = ["## Figures", "",
             "The final model has seen every labelled poster, test part included, so it has no test figures of its "
             f"own. The same model fitted on the training part alone scored, on {test['posters']:.0f} test posters "
             f"({DESCRIPTION}): mAP {interval(source)}, micro-F1 {interval(source, 'f1_micro')}, "
             f"top-1 {interval(source, 'top1_accuracy')}. Fitted on {posters / train_posters:.1f}x as many posters, "
             "the final model is expected to do at least as well.", ""]
    if "cv" in source:
        cv = source["cv"]
        lines += [f"Cross-validated ({cv['folds']} folds x {cv['repeats']}): mAP {cv['mAP_macro']['mean']:.3f} ± "
                  f"{cv['mAP_macro']['std']:.3f}, micro-F1 {cv['f1_micro']['mean']:.3f} ± "
                  f"{cv['f1_micro']['std']:.3f}.",
                  ""]
    return lines


def trivial_lines(source: dict, baselines: list[dict], trivial: dict | None) -> list[str]:
    """The card's comparison with the trivial baselines: their test figures beside the evaluated model's, the
    size of the validation part that chose it, and a sentence where it cannot be told apart from them."""
    val_posters = source["val"]["overall"].get("posters")
    lines = ["## Against trivial baselines", "",
             f"Chosen on {val_posters:.0f} validation posters" + (" (under 100: a choice between heads this close "
             "is loose; `make heads CV=5x2` chooses by cross-validation instead)" if val_posters and val_posters < 100
             and "cv" not in source else "") + ". Test figures, with their 95% intervals:", "",
             "| model | test mAP | micro-F1 | top-1 |", "|---|---|---|---|",
             *(f"| {md_text(r['model'])} | {interval(r)} | {interval(r, 'f1_micro')} | "
               f"{interval(r, 'top1_accuracy')} |" for r in [source, *baselines]), ""]
    sentence = weak_model_sentence(trivial)
    return lines + ([sentence, ""] if sentence else [])


def thresholds_text(thresholds: np.ndarray | list[float]) -> str:
    """One global threshold as `0.22`; per-genre ones as their range."""
    thresholds = np.asarray(thresholds)
    if np.ptp(thresholds) == 0:
        return f"{thresholds[0]:.2f}"
    return f"per genre, {thresholds.min():.2f} to {thresholds.max():.2f}"


def genres_lines(genres: list[str], counts: np.ndarray) -> list[str]:
    rare = [f"{md_text(g)} ({c})" for g, c in zip(genres, counts) if c < RARE]
    return ["## Genres and limits", "",
            f"{len(genres)} genres, with labelled posters: "
            + ", ".join(f"{md_text(g)} {c}" for g, c in zip(genres, counts)) + ".", "",
            (f"Genres with fewer than {RARE} posters, whose predictions are least reliable: {', '.join(rare)}."
             if rare else f"Every genre has at least {RARE} posters."), "",
            "Genres outside this list are never predicted. The model knows only what a poster looks like; "
            "posters unlike these (another style, era or source) may score worse than the figures above.", ""]


def write_refit_card(model: Path, intro: list[str], thresholds_note: str, evaluated: dict, labels: np.ndarray,
                     train_posters: int, genres: list[str]) -> Path:
    """The card of a model refit with the thresholds its evaluation chose (a network's --final, an ensemble's):
    `intro`, where its thresholds come from, the evaluated figures and the genres (`labels`: 1 for a genre,
    0 or -1 for none or unknown). Written beside `model`."""
    thresholds = thresholds_text(evaluated["thresholds"]["values"])
    lines = [*intro, "", "## Thresholds", "", f"{thresholds_note}: {thresholds}.", "",
             *figures_lines(evaluated, len(labels), train_posters), *genres_lines(genres, (labels == 1).sum(axis=0))]
    write_text_atomic(model.with_suffix(".md"), "\n".join(lines))
    return model.with_suffix(".md")
