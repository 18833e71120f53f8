"""python -m postergenre.evaluation.report: every model with results, side by side, in reports/report.md and
report.html."""
from __future__ import annotations

import base64
import html
import json
import re
import sys
from pathlib import Path

import numpy as np

from postergenre.core import cli
from postergenre.core.errors import DataError, first_line
from postergenre.core.files import atomic_write, open_regular, write_text_atomic
from postergenre.core.markup import markdown_to_html, md_code, md_text, slug
from postergenre.core.runspec import PRIOR_BASELINE, RunSpec, make_command
from postergenre.core.workspace import split_path
from postergenre.evaluation import charts
from postergenre.evaluation.card import thresholds_text
from postergenre.evaluation.compare import (CHOOSING_RULE, against_trivial, choosing_score, compare, headline, interval,
                                            optimism, picked)
from postergenre.evaluation.franchise import seen_and_new, seen_and_new_text, seen_franchise
from postergenre.evaluation.intervals import DESCRIPTION, MEANING, paired_difference
from postergenre.evaluation.recall import realised_recall, recall_sets, recall_thresholds
from postergenre.evaluation.results import align_scores, overall, read_results, read_scores_of
from postergenre.evaluation.sets import genre_names, predict_sets
from postergenre.modelfiles import find_final_model
from postergenre.posters.data import read_genre_table, read_posters
from postergenre.posters.franchises import poster_groups
from postergenre.posters.sample import SYNTHETIC_MARK
from postergenre.posters.split import PARTS, Split

CSS = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
       "table{border-collapse:collapse;font-size:.85em;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .5em}"
       "img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}")
MAX_FIGURE_BYTES = 2**25  # a training run's batch picture, copied into the report
COLUMNS = [("mAP_macro", "mAP"), ("mAP_micro", "mAP µ"), ("f1_micro", "F1 µ"), ("f1_macro", "F1 M"),
           ("f1_samples", "F1 s"), ("precision_micro", "P µ"), ("recall_micro", "R µ"),
           ("top1_accuracy", "top-1"), ("top3_accuracy", "top-3"), ("at_least_one_right", "≥1 right"),
           ("subset_accuracy", "all right"), ("hamming_loss", "hamming"), ("ece", "ECE")]


def _command(r: dict) -> str:
    """The make command that produced a result row."""
    if r["kind"] == "ensemble":
        return make_command("ensemble", DATA=r["data"])
    if r["kind"] in ("finetune", "cnn"):
        return RunSpec.of(r).command(r["data"], r["config"]["epochs"], r["config"]["augment"])
    return make_command("features heads report", DATA=r["data"], BACKBONE=r["backbone"],
                        TTA=1 if r["tta"] != "none" else None)


def describe_members(members: dict[str, int]) -> str:
    """An ensemble's members as the report shows them: "2x model-a, 1x model-b"."""
    return ", ".join(f"{weight}x {model}" for model, weight in members.items())


def _setting(r: dict) -> str:
    if "history" in r:
        c = r["config"]
        return (f"best epoch {r['best_epoch']} of {len(r['history'])} (max {c['epochs']}), {c['augment']} "
                f"augmentation, {c['loss']} loss, lr {c['lr']}" + (f", body lr {c['body_lr']}, frozen up to "
                f"{r['freeze']}" if r["kind"] == "finetune" else "")
                + f", {r['train_posters_per_s']:.1f} posters/s training")
    if r["kind"] == "ensemble":
        return f"mean of {describe_members(r['members'])}"
    return json.dumps(r["params"])


def _comparison(models: list[dict], baselines: list[dict]) -> list[str]:
    """Each model family's validation-selected member, against the prior baseline, in test mAP."""
    families = {"head": "best frozen-feature head", "finetune": "best fine-tuned backbone",
                "cnn": "custom CNN from scratch", "ensemble": "ensemble of the models above"}
    prior = next((b for b in baselines if b["model"] == PRIOR_BASELINE), None)
    chosen = {}
    for kind in families:
        members = [r for r in models if r["kind"] == kind]
        if members:
            chosen[kind] = picked(members)
    if len(chosen) < 2 or prior is None:
        return []
    prior_map = overall(prior, "test")
    lines = [f"Each family's model picked by {CHOOSING_RULE}, and its **test** mAP:", ""]
    for kind, r in chosen.items():
        test_map = overall(r, "test")
        lines.append(f"- {families[kind]}: {md_text(r['model'])}, {test_map:.3f} ({test_map - prior_map:+.3f} over the "
                     f"prior baseline's {prior_map:.3f})")
    return lines + [""]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def cross_validation_table(models: list[dict]) -> list[str]:
    """Heads scored by repeated cross-validation over the training and validation parts, beside their
    single-split figures."""
    rows = [r for r in models if "cv" in r]
    if not rows:
        return []
    cv = rows[0]["cv"]
    repeats = f"{cv['repeats']} repeat" + "s" * (cv["repeats"] > 1)
    lines = [f"### Heads, cross-validated ({cv['folds']} folds x {repeats})", "",
             f"Every poster of the training and validation parts is scored once per repeat, by a head fitted without "
             f"it: iterative stratification "
             f"into {cv['folds']} folds, and inside each training fold a stratified {cv['inner']} split chooses the "
             "parameters and the threshold. Mean ± standard deviation over the folds.", "",
             "| head | CV mAP | CV F1 µ | CV top-1 | single-split test mAP (95% CI) |", "|---|---|---|---|---|"]
    for r in rows:
        figures = [f"{r['cv'][k]['mean']:.3f} ± {r['cv'][k]['std']:.3f}" for k in ("mAP_macro", "f1_micro",
                                                                                     "top1_accuracy")]
        lines.append(f"| {md_text(r['model'])} | " + " | ".join(figures) + f" | {interval(r)} |")
    command = f"{_command(rows[0])} CV={cv['folds']}x{cv['repeats']}"
    return lines + ["", f"*Reproduce: {md_code(command)}.*", ""]


def seeds_table(trained: list[dict]) -> list[str]:
    """Trained networks run with several seeds: mean ± std per setting, and each seed's interval."""
    groups: dict[str, list[dict]] = {}
    for r in trained:
        setting = {k: v for k, v in r["config"].items() if k != "seed"}
        groups.setdefault(json.dumps([r["kind"], r.get("backbone"), r.get("freeze"), setting], sort_keys=True),
                          []).append(r)
    groups = {k: sorted(v, key=lambda r: r["config"]["seed"]) for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    lines = ["### Trained networks across seeds", "",
             "| setting | seeds | val mAP | test mAP | each seed's test mAP (95% CI) |", "|---|---|---|---|---|"]
    for runs in groups.values():
        val = np.array([overall(r, "val") for r in runs])
        test = np.array([overall(r, "test") for r in runs])
        lines.append(f"| {md_code(_command(runs[0]))} | {', '.join(str(r['config']['seed']) for r in runs)} | "
                     f"{val.mean():.3f} ± {val.std(ddof=1):.3f} | {test.mean():.3f} ± {test.std(ddof=1):.3f} | "
                     + "; ".join(interval(r) for r in runs) + " |")
    return lines + ["", "*Mean ± standard deviation over the seeds (`SEEDS=\"0 1 2\"`).*", ""]


def _split_lines(dataset: str, split: Split, figures: Path, out_dir: Path, command: str) -> list[str]:
    sizes = ", ".join(f"{p} {len(split.parts[p])}" for p in PARTS)
    left = md_text(", ".join(f"{k}: {v}" for k, v in split.left_out.items()) or "none")
    dropped = md_text(split.dropped_text())
    totals: dict[str, int] = {}
    for part in PARTS:
        for genre, n in split.genre_counts.get(part, {}).items():
            totals[genre] = totals.get(genre, 0) + n
    chart = figures / f"{slug(dataset)}-classes.png"
    charts.bar_chart(totals, f"{dataset}: posters per genre (all parts)", chart)
    how = (f"each of {len(set(split.groups.values()))} franchise groups in one part (posters/franchises.py), so no "
           f"test poster's franchise is in training" if split.grouping == "franchise" else
           "poster by poster, not grouped by franchise: a test poster may be a sequel or season of a training one "
           "(below: what that does to the figures)")
    return [f"- **Split:** iterative stratification, seed {split.seed}, fractions {list(split.fractions)}, "
            f"{how}; {sizes}.",
            f"- **Vocabulary:** {len(split.genres)} genres with at least {split.min_count} training "
            f"posters. Dropped (training posters): {dropped}.",
            f"- **Left out:** {left}.", "",
            f"![class distribution]({chart.relative_to(out_dir)})", "",
            f"*Posters per genre over the whole split. Reproduce: {md_code(command)}.*", ""]


def _results_table(results: list[dict], command: str) -> list[str]:
    models = sorted((r for r in results if r["kind"] != "baseline"), key=lambda r: -choosing_score(r)[0])
    lines = ["### Test results", "",
             "Thresholds are chosen on the validation part; every poster gets at least its top genre. "
             "Heads are tuned on validation mAP. µ = micro, M = macro, s = samples. ECE: expected calibration "
             "error, how far the probabilities are from how often they come true (0 is perfect; "
             f"evaluation/calibration.py). In brackets: {DESCRIPTION}. "
             + MEANING + f" Models are ranked by what chooses between them: {CHOOSING_RULE}; *optimism* is that "
             "score minus test mAP.", "",
             "| model | val mAP | chosen by | optimism | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---|" * (len(COLUMNS) + 3)]
    for r in [r for r in results if r["kind"] == "baseline"]:
        lines.append(f"| {md_text(r['model'])} | {_fmt(overall(r, 'val'))} | | | "
                     + " | ".join(interval(r, k) for k, _ in COLUMNS) + " |")
    for r in models:
        score, rule = choosing_score(r)
        lines.append(f"| {md_text(r['model'])} | {_fmt(overall(r, 'val'))} | {rule} {score:.3f} | "
                     f"{optimism(r):+.3f} | " + " | ".join(interval(r, k) for k, _ in COLUMNS) + " |")
    return lines + ["", f"*Reproduce: {md_code(command)}; each row's settings are below.*", ""]


def _franchise_lines(split: Split | None, best: dict, saved: dict) -> list[str]:
    """For a split not grouped by franchise, the picked model's test mAP on the posters of a franchise seen in
    training and on those of a new one (where the data folder is here to read the titles)."""
    if split is None or split.grouping == "franchise" or not Path(best.get("data") or "").is_dir():
        return []
    groups = poster_groups(read_posters(best["data"]).posters)
    ids, y, scores = saved["test"]
    found = seen_and_new(y, scores, np.asarray(best["thresholds"]["values"]),
                         seen_franchise(ids, np.array(split.parts["train"]), groups))
    return [f"**This split is not grouped by franchise, and that flatters.** Test mAP of "
            f"{md_text(best['model'])}: {seen_and_new_text(found)}. A user asking about a new anime gets the "
            f"new franchises' figure. `make split GROUPS=franchise` (then fit again) makes a split whose test part "
            f"is all new franchises.", ""]


def _picked_lines(dataset: str, best: dict, results_dir: Path, figures: Path, out_dir: Path,
                  split: Split | None) -> list[str]:
    """The picked model up close: per-genre figures, precision-recall curves, co-occurrence, example posters,
    and what an ungrouped split flatters."""
    genres = [g["genre"] for g in best["test"]["per_genre"]]
    lines = [f"### Per genre: {md_text(best['model'])} (picked by {choosing_score(best)[1]})", "",
             "| genre | test support | precision | recall | F1 | AP |", "|---|---|---|---|---|---|"]
    for g in best["test"]["per_genre"]:
        lines.append(f"| {md_text(g['genre'])} | {g['support']} | {_fmt(g['precision'])} | {_fmt(g['recall'])} | "
                     f"{_fmt(g['f1'])} | {_fmt(g['ap'])} |")
    lines.append("")
    saved = read_scores_of(results_dir, dataset, [best["model"]]).get(best["model"])
    if saved is None:
        return lines
    lines += _franchise_lines(split, best, saved)
    ids, y, scores = saved["test"]
    curves, pairs = figures / f"{slug(dataset)}-pr-curves.png", figures / f"{slug(dataset)}-cooccurrence.png"
    charts.pr_curves(y, scores, genres, curves, f"{dataset}: test precision-recall per genre, {best['model']}")
    reliability = figures / f"{slug(dataset)}-reliability.png"
    charts.reliability_chart(y, scores, reliability, f"{dataset}: test reliability, {best['model']}")
    charts.cooccurrence_chart(np.concatenate([saved["val"][1], y]), genres, pairs,
                              f"{dataset}: genres sharing a poster (validation and test parts)")
    lines += [f"![precision-recall curves]({curves.relative_to(out_dir)})", "",
              "*Each genre's test precision against recall as the threshold falls; the dotted line is a random "
              "ranking. Reproduce: `make report` after the model's run.*", "",
              f"![reliability diagram]({reliability.relative_to(out_dir)})", "",
              f"*Each bin of test probabilities (every poster and genre) against how often its genres were "
              f"true; on the diagonal, a probability means what it says. ECE "
              f"{best['test']['overall'].get('ece', float('nan')):.3f}.*", "",
              *recall_lines(saved, np.asarray(best["thresholds"]["values"])),
              f"![genre co-occurrence]({pairs.relative_to(out_dir)})", "",
              "*Row genre's posters that also have the column genre.*", ""]
    images = _poster_images(best.get("data"), ids[:8])
    if images:
        grid = figures / f"{slug(dataset)}-examples.png"
        predicted = predict_sets(scores[:len(images)], np.asarray(best["thresholds"]["values"]))
        charts.example_grid(images, genre_names(y[:len(images)], genres), genre_names(predicted, genres), grid,
                            f"{dataset}: the first test posters, {best['model']}")
        lines += [f"![example posters]({grid.relative_to(out_dir)})", "",
                  "*True genres above each poster; the genres predicted, right and wrong, below.*", ""]
    return lines


def recall_lines(saved: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], f1_thresholds: np.ndarray) -> list[str]:
    """A model's test recall and set size for each recall level (evaluation/recall.py), its thresholds chosen on
    its validation scores, beside its F1 thresholds' sets, from its scores file (read_scores)."""
    (_, val_y, val_scores), (_, y, scores) = saved["val"], saved["test"]
    rows = [("F1 thresholds, and the top genre", thresholds_text(f1_thresholds),
             realised_recall(y, predict_sets(scores, f1_thresholds)))]
    rows += [(f"recall {level}", f"{t:.4f}", realised_recall(y, recall_sets(scores, t)))
             for level, t in recall_thresholds(val_y, val_scores).items()]
    return ["| genre sets | threshold | test recall (95% interval) | genres a poster |", "|---|---|---|---|",
            *(f"| {rule} | {threshold} | {r['recall']:.3f} ({r['low']:.3f}-{r['high']:.3f}) | {r['set_size']:.2f} |"
              for rule, threshold, r in rows), "",
            "*Recall: the mean share of a test poster's true genres in its set. Each level's threshold is chosen by "
            "conformal risk control on the validation part's scores, so that the expected recall of a poster like "
            "them is at least the level (evaluation/recall.py); `postergenre predict --recall LEVEL` uses a final "
            "head's, chosen on its out-of-fold predictions. Reproduce: `make report` after the model's run.*", ""]


def _titles_lines(dataset: str, titles: list[dict], poster_model: dict | None, results_dir: Path) -> list[str]:
    """The title head alone and fused with the picked poster-only model (heads/titles.py), each against that
    model on the same test posters."""
    if not titles or poster_model is None:
        return []
    reference = poster_model["model"]
    saved = read_scores_of(results_dir, dataset, [reference] + [r["model"] for r in titles])
    if reference not in saved:
        return []
    _, labels, scores = align_scores(saved, "test")
    lines = ["### Poster + title", "",
             "The title head (heads/titles.py: TF-IDF of the titles' character and word n-grams, logistic "
             "regression), alone and fused with the picked poster-only model by a weight on the two "
             "probabilities chosen on validation mAP. Each is compared with that model on the same test posters "
             f"({len(labels)}). The poster-only comparison above does not include them: its question is which "
             "image model is best.", "",
             "| model | poster weight | val mAP | test mAP (95% CI) | minus the poster model (95% CI) | verdict |",
             "|---|---|---|---|---|---|",
             f"| {md_text(reference)} (poster only, picked) | 1.0 | {_fmt(overall(poster_model, 'val'))} | "
             f"{interval(poster_model)} | | |"]
    for r in titles:
        if r["model"] not in scores:
            continue
        d = paired_difference(labels, scores[r["model"]], scores[reference])
        lines.append(f"| {md_text(r['model'])} | {r['poster_weight']:.1f} | {_fmt(overall(r, 'val'))} | "
                     f"{interval(r)} | {d['difference']:+.3f} ({d['interval'][0]:+.3f} to {d['interval'][1]:+.3f}) | "
                     f"{d['verdict']} |")
    table = next((r["titles_table"]["table"] for r in titles if r.get("titles_table")), None)
    command = make_command("titles", DATA=titles[0]["data"], TITLES=table)
    return lines + ["", f"*Reproduce: {md_code(command)} after the poster models' runs.*", ""]


def _poster_images(data: str | None, ids: np.ndarray) -> list[Path]:
    """The image files of these posters, or [] when the data folder is not here."""
    try:
        by_id = {p.id: p.image for p in read_posters(data).posters} if data else {}
    except DataError:
        return []
    return [by_id[i] for i in ids if i in by_id]


def _settings_table(models: list[dict]) -> list[str]:
    lines = ["### Settings", "", "| model | backbone | weights sha256 | TTA | chosen settings | threshold | command |",
             "|---|---|---|---|---|---|---|"]
    for r in models:
        thresholds = r["thresholds"]
        threshold = "per genre" if thresholds["per_genre"] else f"{thresholds['values'][0]:.2f}"
        lines.append(f"| {md_text(r['model'])} | {md_text(r.get('backbone', '–'))} | "
                     f"{md_code(str(r.get('weights_sha256', '–'))[:12])} | {md_text(r.get('tta', '–'))} | "
                     f"{md_text(_setting(r))} | {threshold} | {md_code(_command(r))} |")
    return lines + [""]


def _training_lines(dataset: str, trained: list[dict], figures: Path, out_dir: Path) -> list[str]:
    chart = figures / f"{slug(dataset)}-training-curves.png"
    charts.curves_chart(trained, chart)
    lines = ["### Training", "", f"![training curves]({chart.relative_to(out_dir)})", "",
             "*Loss and validation mAP per epoch; the epoch with the best validation mAP is kept. "
             f"Reproduce: {md_code('; '.join(sorted({_command(r) for r in trained})))}.*", ""]
    shown = set()
    for r in trained:
        batch = Path(r["run_dir"]) / "augmented-batch.png"
        preset = r["config"]["augment"]
        if preset in shown or not batch.is_file():
            continue
        with open_regular(batch) as f:  # a result names its run folder: only a PNG found there is shown
            png = f.read(MAX_FIGURE_BYTES + 1)
        if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) > MAX_FIGURE_BYTES:
            continue
        shown.add(preset)
        copy = figures / f"{slug(dataset + '-' + r['model'], 120)}-batch.png"
        with atomic_write(copy) as tmp:
            tmp.write_bytes(png)
        lines += [f"![augmented batch]({copy.relative_to(out_dir)})", "",
                  f"*The first training posters as {md_text(r['model'])} sees them ({md_code(preset)} augmentation). "
                  f"Reproduce: {md_code(_command(r))}.*", ""]
    return lines


def _final_lines(dataset: str, models_dir: Path) -> list[str]:
    final = find_final_model(models_dir, dataset)
    if final is None:
        return []
    return [f"**Final model.** {md_code(final)} is the chosen model refit on every labelled poster (`make final`, "
            f"or `--final` for a network); "
            f"its model card {md_code(final.with_suffix('.md'))} says what was chosen and how. It has seen this test "
            "part, "
            "so it is not scored here: the figures below are of models fitted without the test and validation "
            "posters. Fitted on more posters, the final model is expected to do at least as well.", ""]


def _dataset_section(dataset: str, results: list[dict], split: Split | None, figures: Path,
                     out_dir: Path, results_dir: Path, models_dir: Path, titles: list[dict]) -> list[str]:
    models = [r for r in results if r["kind"] != "baseline"]
    baselines = [r for r in results if r["kind"] == "baseline"]
    command = "; ".join(sorted({_command(r) for r in models or baselines}))
    choice = picked(results)  # decided once: every section speaks of this model
    lines = [f"## {md_text(dataset)}", "",
             *headline(results, compare(results_dir, dataset, results, choice),
                       against_trivial(results, results_dir, dataset, choice), choice),
             *_final_lines(dataset, models_dir)]
    data = next((r["data"] for r in results if r.get("data")), None)
    if data and (Path(data) / SYNTHETIC_MARK).exists():
        lines += [f"**{md_text(dataset)} is the built-in synthetic sample**: drawn posters whose genres set their "
                  "colour, "
                  "motif and title position. Its figures only show that the pipeline runs; real figures need "
                  "real posters (docs/usage.md, \"Running on real data\").", ""]
    if split is not None:
        lines += _split_lines(dataset, split, figures, out_dir, command)
    lines += _results_table(results, command)
    lines += _comparison(models, baselines)
    lines += cross_validation_table(models)
    lines += seeds_table([r for r in models if "history" in r])
    if models:
        chart = figures / f"{slug(dataset)}-per-genre.png"
        charts.per_genre_chart(baselines[:1] + models, chart, f"{dataset}: test AP and F1 per genre")
        lines += [f"![per-genre AP and F1]({chart.relative_to(out_dir)})", "",
                  f"*Test AP and F1 per genre for every model. Reproduce: {md_code(command)}.*", ""]
        lines += _picked_lines(dataset, choice, results_dir, figures, out_dir, split)
        lines += _titles_lines(dataset, titles, choice, results_dir)
        lines += _settings_table(models)
    trained = [r for r in models if "history" in r]
    return lines + (_training_lines(dataset, trained, figures, out_dir) if trained else [])


def _genre_table_lines(genre_table: Path | str, figures: Path, out_dir: Path) -> list[str]:
    counts, unknown, rows = read_genre_table(genre_table)
    chart = figures / "kaggle-anime-2023-classes.png"
    charts.bar_chart(dict(counts), f"Kaggle anime 2023: {rows} anime per genre ({unknown} UNKNOWN)", chart,
                     unit="anime")
    return ["## Appendix: the full Kaggle anime 2023 genre table", "",
            f"![class distribution]({chart.relative_to(out_dir)})", "",
            f"*Anime per genre in {md_code(genre_table)} ({rows} rows, {unknown} with no genres), for comparison "
            f"with the data sets above. Reproduce: {md_code(make_command('report', GENRE_TABLE=genre_table))}.*", ""]


def write_report(results_dir: Path | str, features_dir: Path | str, out_dir: Path | str,
                 genre_table: Path | str | None = None, models_dir: Path | str = "models",
                 datasets: list[str] | None = None) -> Path:
    """reports/report.md, and report.html beside it: the same, self-contained, for a browser. `datasets`: only
    these data sets' results (default: every data set with results)."""
    out_dir, features_dir = Path(out_dir), Path(features_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# postergenre report", "",
             "Every model with results, scored by `evaluation.metrics` on its data set's held-out test part. "
             "Generated by `make report`.", ""]
    titles = read_results(results_dir, ("titles",))
    for dataset, results in read_results(results_dir).items():
        if datasets is not None and dataset not in datasets:
            continue
        split_file = split_path(features_dir, dataset)
        try:
            split = Split.load(split_file) if split_file.exists() else None
            lines += _dataset_section(dataset, results, split, figures, out_dir, Path(results_dir), Path(models_dir),
                                      titles.get(dataset, []))
        except (DataError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            # results that fit the schema yet lack what a section reads: this data set says so, the others report
            reason = f"{type(e).__name__}: {first_line(e)}"
            print(f"{dataset}: not reported ({reason})", file=sys.stderr)
            lines += [f"## {md_text(dataset)}", "",
                      f"*Not reported: its results could not be read ({md_text(reason)}); "
                      f"run its steps again.*", ""]
        explained = out_dir / "explain" / f"{dataset}.md"  # from make explain
        if explained.exists():
            lines += [explained.read_text(), ""]
    if genre_table and Path(genre_table).exists():
        lines += _genre_table_lines(genre_table, figures, out_dir)
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    write_html(path)
    return path


def write_html(markdown_path: Path) -> Path:
    """The Markdown report as one HTML file, its images embedded, so it can be mailed or opened anywhere.

    Only the report's own figures are embedded: PNG files under its folder, named by a relative path. Any other
    image (another file on this machine, a remote address) is left out, so opening the report fetches nothing."""
    body = markdown_to_html(markdown_path.read_text(encoding="utf-8"))
    folder = markdown_path.parent.resolve()

    def embedded(match: re.Match) -> str:
        attributes = dict(re.findall(r'\b(alt|src)="([^"]*)"', match[0]))
        alt, source = attributes.get("alt", ""), html.unescape(attributes.get("src", ""))
        image = (folder / source).resolve()
        if not source or Path(source).is_absolute() or not image.is_relative_to(folder) or image.suffix != ".png" \
                or not image.is_file():
            return f"<em>(image left out: {html.escape(source)})</em>"
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(image.read_bytes()).decode()}" />'
    body = re.sub(r"<img\b[^>]*>", embedded, body)  # every image, whatever its attributes (a title too)
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>postergenre report</title><style>{CSS}"
            f"</style></head><body>{body}</body></html>")
    path = markdown_path.with_suffix(".html")
    write_text_atomic(path, page)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.evaluation.report", __doc__)
    parser.add_argument("--results-dir", default="results", help="results and scores files")
    parser.add_argument("--features-dir", default="features", help="split files")
    parser.add_argument("--out-dir", default="reports", help="report.md, report.html and figures/ go here")
    parser.add_argument("--genre-table", default=None, help="Kaggle anime genre table with no images (an appendix)")
    parser.add_argument("--models-dir", default="models", help="where final models (make final) are looked for")
    parser.add_argument("--datasets", nargs="+", default=None, help="only these data sets (default: all with results)")
    args = parser.parse_args(argv)
    cli.run(lambda: print(write_report(args.results_dir, args.features_dir, args.out_dir, args.genre_table,
                                       args.models_dir, args.datasets)))


if __name__ == "__main__":
    main()
