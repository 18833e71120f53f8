"""Which models a data set's test part can tell apart: the validation-picked model against every other.

The comparison is paired: both models are scored on the same resampled test posters
(evaluation.intervals), so posters that every model finds hard cancel out of the difference.
The report and the bench open each data set with `headline`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from postergenre.core.markup import md_text
from postergenre.core.runspec import PRIOR_BASELINE
from postergenre.evaluation.intervals import DESCRIPTION, paired_difference, paired_set_differences
from postergenre.evaluation.metrics import most_frequent_sets
from postergenre.evaluation.results import align_scores, overall, read_scores_of
from postergenre.evaluation.sets import predict_sets


# choosing_score in words, for the pages that rank models by it
CHOOSING_RULE = ("mAP on the validation posters of predictions made without them: a cross-validated head's "
                 "out-of-fold scores (`make heads CV=...`), an ensemble's selections made without each fold; else "
                 "validation mAP")


def choosing_score(r: dict) -> tuple[float, str]:
    """What a model is chosen by, on the same validation posters for every model: a cross-validated head's mAP
    of its out-of-fold scores of them (`make heads CV=...`); an ensemble's, of selections made without each
    fold (ensemble.combine.out_of_fold_map); else validation mAP (networks, heads without CV). One validation
    part of ~200 posters flatters whichever model was tuned or selected on it; scores from other posters (a
    head's mean over all its folds) would rank models on different posters, and one part can be easier than
    the rest (docs/evaluation.md, "Choosing a model")."""
    if "val_mAP_macro" in r.get("cv", {}):
        return r["cv"]["val_mAP_macro"], "out-of-fold validation mAP"
    if "selection" in r:
        return r["selection"]["mAP_macro"], "out-of-fold validation mAP"
    return overall(r, "val"), "validation mAP"


def optimism(r: dict) -> float:
    """How much better a model looked when chosen than on the test part: its choosing score minus test mAP."""
    return choosing_score(r)[0] - overall(r, "test")


def picked(results: list[dict]) -> dict | None:
    """The model the evaluation picks by choosing_score (baselines are not candidates)."""
    models = [r for r in results if r["kind"] != "baseline"]
    return max(models, key=lambda r: choosing_score(r)[0]) if models else None


def compare(results_dir: Path | str, dataset: str, results: list[dict], choice: dict | None = None) -> dict | None:
    """{"picked", "posters", "vs": {model: other minus picked, in test mAP}} over the models that left scores;
    `choice`: the picked model, where the caller has it."""
    choice = choice or picked(results)
    saved = read_scores_of(results_dir, dataset, [r["model"] for r in results])
    if choice is None or choice["model"] not in saved:
        return None
    _, labels, scores = align_scores(saved, "test")
    return {"picked": choice["model"], "posters": len(labels),
            "vs": {m: paired_difference(labels, s, scores[choice["model"]]) for m, s in scores.items()
                   if m != choice["model"]}}


def interval(r: dict, figure: str = "mAP_macro") -> str:
    """A test figure with its 95% interval where it has one, as `0.322 (0.281–0.360)`; – where a result from an
    earlier version lacks the figure."""
    value, bounds = r["test"]["overall"].get(figure), r["test"].get("intervals", {}).get(figure)
    if value is None:
        return "–"
    return f"{value:.3f}" + (f" ({bounds[0]:.3f}–{bounds[1]:.3f})" if bounds else "")


def _difference(d: dict) -> str:
    return f"{d['difference']:+.3f} ({d['interval'][0]:+.3f} to {d['interval'][1]:+.3f})"


def headline(results: list[dict], comparison: dict | None, trivial: dict | None = None,
             choice: dict | None = None) -> list[str]:
    """A data set's opening lines: the picked model (`choice`, where the caller has it), its test mAP with
    interval, its margin over the prior baseline, and the models it is or is not distinguishable from at 95%, with
    a table of the differences; and a sentence where its genre sets are no better than the best trivial baseline's
    (`trivial`: against_trivial)."""
    choice = choice or picked(results)
    if choice is None:
        return []
    n = overall(choice, "test", "posters")
    score, rule = choosing_score(choice)
    text = (f"**Headline.** The {rule} picks **{md_text(choice['model'])}** ({score:.3f}; optimism, that minus test "
            f"mAP, {optimism(choice):+.3f}): test mAP {interval(choice)} on {n:.0f} test posters ({DESCRIPTION})")
    if comparison is None:
        return [text + "; its scores file is missing, so no paired comparison.", ""]
    vs, by_name = comparison["vs"], {r["model"]: r for r in results}
    prior = vs.get(PRIOR_BASELINE)
    if prior:
        margin = {"worse": "above", "better": "below"}.get(prior["verdict"], "not distinguishable from")
        text += (f", {-prior['difference']:.3f} ({-prior['interval'][1]:.3f} to {-prior['interval'][0]:.3f}) "
                 f"{margin} the prior baseline")
    others = {m: d for m, d in vs.items() if by_name[m]["kind"] != "baseline"}
    apart = [m for m, d in others.items() if d["verdict"] != "not distinguishable"]
    close = [m for m, d in others.items() if d["verdict"] == "not distinguishable"]
    text += (". At 95%, it is distinguishable from "
             + (", ".join(f"{md_text(m)} ({others[m]['verdict']})" for m in apart) or "no other model")
             + "; not from " + (", ".join(md_text(m) for m in close) or "any other model") + ".")
    sentence = weak_model_sentence(trivial)
    lines = [text, "", *([sentence, ""] if sentence else []),
             "| model | test mAP (95% CI) | minus the picked model (95% CI) | verdict |", "|---|---|---|---|"]
    lines.append(f"| {md_text(choice['model'])} (picked) | {interval(choice)} | | |")
    for model, d in sorted(vs.items(), key=lambda item: -item[1]["difference"]):
        lines.append(f"| {md_text(model)} | {interval(by_name[model])} | {_difference(d)} | {d['verdict']} |")
    return lines + [""]


def against_trivial(results: list[dict], results_dir: Path | str, dataset: str,
                    choice: dict | None = None) -> dict | None:
    """The picked model (or `choice`) against the best trivial baseline, in test micro-F1 and top-1: {figure:
    {"baseline", "model", "difference", "interval", "verdict"}}, paired on the same test posters; None where the
    scores to compare are not there. Top-1 is the same for every trivial baseline (the most frequent genre)."""
    choice = choice or picked(results)
    baselines = [r for r in results if r["kind"] == "baseline"]
    saved = read_scores_of(results_dir, dataset, [choice["model"], PRIOR_BASELINE] if choice else [])
    if choice is None or len(saved) < 2 or not baselines:
        return None
    _, y, scores = align_scores(saved, "test")
    ours, prior = scores[choice["model"]], scores[PRIOR_BASELINE]
    best = max(baselines, key=lambda r: overall(r, "test", "f1_micro"))
    thresholds = best["thresholds"]
    if thresholds["values"] is None:  # the k most frequent genres: the prior's frequencies rank them
        theirs = most_frequent_sets(prior[:1], len(y), thresholds["k"])
    else:
        theirs = predict_sets(prior, np.asarray(thresholds["values"]))
    differences = paired_set_differences(y, predict_sets(ours, np.asarray(choice["thresholds"]["values"])),
                                         ours.argmax(axis=1), theirs, prior.argmax(axis=1))
    return {figure: {"baseline": best["model"] if figure == "f1_micro" else PRIOR_BASELINE, **d}
            for figure, d in differences.items()}


def weak_model_sentence(comparison: dict | None, subject: str = "this model") -> str | None:
    """One sentence where `subject`'s micro-F1 or top-1 cannot be told apart from the best trivial baseline's at
    95% (against_trivial), else None."""
    if comparison is None:
        return None
    weak = {figure: d for figure, d in comparison.items() if d["verdict"] != "better"}
    if not weak:
        return None
    names = {"f1_micro": "micro-F1", "top1_accuracy": "top-1"}
    return (f"**Near the prior.** At 95%, {subject}'s " + " and ".join(
        f"{names[figure]} cannot be told apart from {md_text(d['baseline'])}'s ({d['difference']:+.3f}, "
        f"{d['interval'][0]:+.3f} to {d['interval'][1]:+.3f})" if d["verdict"] == "not distinguishable" else
        f"{names[figure]} is below {md_text(d['baseline'])}'s ({d['difference']:+.3f}, {d['interval'][0]:+.3f} "
        f"to {d['interval'][1]:+.3f})" for figure, d in weak.items())
        + ": its genre sets are no better than a constant answer; more labelled posters, or a stronger backbone, "
          "are what it needs.")
