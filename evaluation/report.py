"""python -m evaluation.report: every model with results, side by side, in reports/report.md."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from evaluation.compare import compare, headline, interval  # noqa: E402
from evaluation.ensemble import describe  # noqa: E402
from evaluation.results import read_results  # noqa: E402
from posters.data import read_genre_table  # noqa: E402
from posters.files import write_text_atomic  # noqa: E402
from posters.split import PARTS, Split  # noqa: E402

COLUMNS = [("mAP_macro", "mAP"), ("mAP_micro", "mAP µ"), ("f1_micro", "F1 µ"), ("f1_macro", "F1 M"),
           ("f1_samples", "F1 s"), ("precision_micro", "P µ"), ("recall_micro", "R µ"),
           ("top1_accuracy", "top-1"), ("top3_accuracy", "top-3"), ("at_least_one_right", "≥1 right"),
           ("subset_accuracy", "all right"), ("hamming_loss", "hamming")]


def _bar_chart(counts: dict[str, int], title: str, path: Path, unit: str = "posters") -> None:
    names = sorted(counts, key=counts.get)
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(names) + 1.2))
    ax.barh(names, [counts[n] for n in names], color="tab:blue")
    ax.set_xlabel(unit)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _per_genre_f1_chart(results: list[dict], path: Path) -> None:
    genres = [g["genre"] for g in results[0]["test"]["per_genre"]]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(genres) * max(1, len(results) / 3) + 1.5))
    height = 0.8 / len(results)
    for i, result in enumerate(results):
        f1 = [g["f1"] for g in result["test"]["per_genre"]]
        ax.barh([y + i * height for y in range(len(genres))], f1, height=height, label=result["model"])
    ax.set_yticks([y + 0.4 - height / 2 for y in range(len(genres))], genres)
    ax.invert_yaxis()
    ax.set_xlabel("test F1")
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _command(r: dict) -> str:
    """The make command that produced a result row."""
    if r["kind"] == "ensemble":
        return f"make ensemble DATA={r['data']}"
    if r["kind"] in ("finetune", "cnn"):
        c = r["config"]
        target = (f"make finetune DATA={r['data']} BACKBONE={r['backbone']} FREEZE={r['freeze']}"
                  if r["kind"] == "finetune" else f"make cnn DATA={r['data']}")
        flags = ([f"--image-size {r['image_size']}"] if f"-{r.get('image_size')}px" in r["model"] else []) + \
                ([f"--loss {c['loss']}"] if c["loss"] != "bce" else []) + \
                ([f"--mixup {c['mixup']:g}"] if c.get("mixup") else [])
        extra = f' TRAIN_ARGS="{" ".join(flags)}"' if flags else ""
        return f"{target} EPOCHS={c['epochs']} AUGMENT={c['augment']}{extra}"
    return (f"make features heads report DATA={r['data']} BACKBONE={r['backbone']}"
            + (" TTA=1" if r["tta"] != "none" else ""))


def _setting(r: dict) -> str:
    if "history" in r:
        c = r["config"]
        return (f"best epoch {r['best_epoch']} of {len(r['history'])} (max {c['epochs']}), {c['augment']} "
                f"augmentation, {c['loss']} loss, lr {c['lr']}" + (f", body lr {c['body_lr']}, frozen up to "
                f"{r['freeze']}" if r["kind"] == "finetune" else "")
                + f", {r['train_posters_per_s']:.1f} posters/s training")
    if r["kind"] == "ensemble":
        return f"mean of {describe(r['members'])}"
    return json.dumps(r["params"])


def _curves_chart(trained: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, len(trained), figsize=(4 * len(trained), 3.2), squeeze=False)
    for ax, r in zip(axes[0], trained):
        epochs = [h["epoch"] for h in r["history"]]
        ax.plot(epochs, [h["train_loss"] for h in r["history"]], label="train loss")
        ax.plot(epochs, [h["val_loss"] for h in r["history"]], label="val loss")
        ax.set_xlabel("epoch")
        ax.set_title(r["model"], fontsize=8)
        right = ax.twinx()
        right.plot(epochs, [h["val_mAP"] for h in r["history"]], color="tab:green", label="val mAP")
        right.set_ylabel("val mAP")
        ax.legend(fontsize=7, loc="upper left")
        right.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _comparison(models: list[dict], baselines: list[dict]) -> list[str]:
    """Each model family's validation-selected member, against the prior baseline, in test mAP."""
    families = {"head": "best frozen-feature head", "finetune": "best fine-tuned backbone",
                "cnn": "custom CNN from scratch", "ensemble": "ensemble of the models above"}
    prior = next((b for b in baselines if b["model"] == "baseline-prior"), None)
    chosen = {}
    for kind in families:
        members = [r for r in models if r["kind"] == kind]
        if members:
            chosen[kind] = max(members, key=lambda r: r["val"]["overall"]["mAP_macro"])
    if len(chosen) < 2 or prior is None:
        return []
    prior_map = prior["test"]["overall"]["mAP_macro"]
    lines = ["Each family's model with the best **validation** mAP, and its **test** mAP:", ""]
    for kind, r in chosen.items():
        test_map = r["test"]["overall"]["mAP_macro"]
        lines.append(f"- {families[kind]}: {r['model']}, {test_map:.3f} ({test_map - prior_map:+.3f} over the "
                     f"prior baseline's {prior_map:.3f})")
    return lines + [""]


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def cross_validation_table(models: list[dict]) -> list[str]:
    """Heads scored by repeated cross-validation over all labelled posters, beside their single-split figures."""
    rows = [r for r in models if "cv" in r]
    if not rows:
        return []
    cv = rows[0]["cv"]
    lines = [f"### Heads, cross-validated ({cv['folds']} folds x {cv['repeats']} repeats)", "",
             f"Every labelled poster is scored once per repeat, by a head fitted without it: iterative stratification "
             f"into {cv['folds']} folds, and inside each training fold a stratified {cv['inner']} split chooses the "
             "parameters and the threshold. Mean ± standard deviation over the folds.", "",
             "| head | CV mAP | CV F1 µ | CV top-1 | single-split test mAP (95% CI) |", "|---|---|---|---|---|"]
    for r in rows:
        figures = [f"{r['cv'][k]['mean']:.3f} ± {r['cv'][k]['std']:.3f}" for k in ("mAP_macro", "f1_micro",
                                                                                     "top1_accuracy")]
        lines.append(f"| {r['model']} | " + " | ".join(figures) + f" | {interval(r)} |")
    return lines + ["", f"*Reproduce: `{_command(rows[0])} CV={cv['folds']}x{cv['repeats']}`.*", ""]


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
        val = np.array([r["val"]["overall"]["mAP_macro"] for r in runs])
        test = np.array([r["test"]["overall"]["mAP_macro"] for r in runs])
        lines.append(f"| `{_command(runs[0])}` | {', '.join(str(r['config']['seed']) for r in runs)} | "
                     f"{val.mean():.3f} ± {val.std(ddof=1):.3f} | {test.mean():.3f} ± {test.std(ddof=1):.3f} | "
                     + "; ".join(interval(r) for r in runs) + " |")
    return lines + ["", "*Mean ± standard deviation over the seeds (`SEEDS=\"0 1 2\"`).*", ""]


def _dataset_section(dataset: str, results: list[dict], split: Split | None, figures: Path,
                     out_dir: Path, results_dir: Path) -> list[str]:
    heads = [r for r in results if r["kind"] != "baseline"]
    baselines = [r for r in results if r["kind"] == "baseline"]
    command = "; ".join(sorted({_command(r) for r in heads or baselines}))
    lines = [f"## {dataset}", "", *headline(results, compare(results_dir, dataset, results))]

    if split is not None:
        sizes = ", ".join(f"{p} {len(split.parts[p])}" for p in PARTS)
        left = ", ".join(f"{k}: {v}" for k, v in split.left_out.items()) or "none"
        dropped = ", ".join(f"{g} ({n})" for g, n in split.dropped_genres.items()) or "none"
        lines += [f"- **Split:** iterative stratification, seed {split.seed}, fractions {list(split.fractions)}, "
                  f"one poster per id; {sizes}.",
                  f"- **Vocabulary:** {len(split.genres)} genres with at least {split.min_count} training "
                  f"posters. Dropped (training posters): {dropped}.",
                  f"- **Left out:** {left}.", ""]
        totals: dict[str, int] = {}
        for part in PARTS:
            for genre, n in split.genre_counts.get(part, {}).items():
                totals[genre] = totals.get(genre, 0) + n
        chart = figures / f"{dataset}-classes.png"
        _bar_chart(totals, f"{dataset}: posters per genre (all parts)", chart)
        lines += [f"![class distribution]({chart.relative_to(out_dir)})", "",
                  f"*Posters per genre over the whole split. Reproduce: `{command}`.*", ""]

    lines += ["### Test results", "",
              "Thresholds are chosen on the validation part; every poster gets at least its top genre. "
              "Heads are tuned on validation mAP. µ = micro, M = macro, s = samples. In brackets: 95% BCa "
              "intervals from 2,000 resampled test parts.", "",
              "| model | val mAP | " + " | ".join(c[1] for c in COLUMNS) + " |",
              "|---|" + "---|" * (len(COLUMNS) + 1)]
    for r in baselines + sorted(heads, key=lambda r: -r["val"]["overall"]["mAP_macro"]):
        lines.append(f"| {r['model']} | {_fmt(r['val']['overall']['mAP_macro'])} | "
                     + " | ".join(interval(r, k) for k, _ in COLUMNS) + " |")
    lines += ["", f"*Reproduce: `{command}`; each row's settings are below.*", ""]
    lines += _comparison(heads, baselines)
    lines += cross_validation_table(heads)
    lines += seeds_table([r for r in heads if "history" in r])

    if heads:
        chart = figures / f"{dataset}-per-genre-f1.png"
        _per_genre_f1_chart(baselines[:1] + heads, chart)
        best = max(heads, key=lambda r: r["val"]["overall"]["mAP_macro"])
        lines += [f"![per-genre F1]({chart.relative_to(out_dir)})", "",
                  f"*Test F1 per genre. Reproduce: `{command}`.*", "",
                  f"### Per genre: {best['model']} (best validation mAP)", "",
                  "| genre | test support | precision | recall | F1 | AP |", "|---|---|---|---|---|---|"]
        for g in best["test"]["per_genre"]:
            lines.append(f"| {g['genre']} | {g['support']} | {_fmt(g['precision'])} | {_fmt(g['recall'])} | "
                         f"{_fmt(g['f1'])} | {_fmt(g['ap'])} |")
        lines += ["", "### Settings", "", "| model | backbone | weights sha256 | TTA | chosen settings | "
                  "threshold | command |", "|---|---|---|---|---|---|---|"]
        for r in heads:
            thresholds = r["thresholds"]
            threshold = "per genre" if thresholds["per_genre"] else f"{thresholds['values'][0]:.2f}"
            lines.append(f"| {r['model']} | {r.get('backbone', '–')} | `{r.get('weights_sha256', '–')[:12]}` | "
                         f"{r.get('tta', '–')} | "
                         f"{_setting(r)} | {threshold} | `{_command(r)}` |")
        lines.append("")

    trained = [r for r in heads if "history" in r]
    if trained:
        chart = figures / f"{dataset}-training-curves.png"
        _curves_chart(trained, chart)
        lines += ["### Training", "", f"![training curves]({chart.relative_to(out_dir)})", "",
                  "*Loss and validation mAP per epoch; the epoch with the best validation mAP is kept. "
                  f"Reproduce: `{'; '.join(sorted({_command(r) for r in trained}))}`.*", ""]
        shown = set()
        for r in trained:
            batch = Path(r["run_dir"]) / "augmented-batch.png"
            preset = r["config"]["augment"]
            if preset in shown or not batch.exists():
                continue
            shown.add(preset)
            copy = figures / f"{dataset}-{r['model']}-batch.png"
            shutil.copyfile(batch, copy)
            lines += [f"![augmented batch]({copy.relative_to(out_dir)})", "",
                      f"*The first training posters as {r['model']} sees them (`{preset}` augmentation). "
                      f"Reproduce: `{_command(r)}`.*", ""]
    return lines


def write_report(results_dir: Path | str, features_dir: Path | str, out_dir: Path | str,
                 genre_table: Path | str | None = None) -> Path:
    out_dir, features_dir = Path(out_dir), Path(features_dir)
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    lines = ["# postergenre report", "",
             "Every model with results, scored by `evaluation.metrics` on its data set's held-out test part. "
             "Generated by `make report`.", ""]
    if genre_table and Path(genre_table).exists():
        counts, unknown, rows = read_genre_table(genre_table)
        chart = figures / "kaggle-anime-2023-classes.png"
        _bar_chart(dict(counts), f"Kaggle anime 2023: {rows} anime per genre ({unknown} UNKNOWN)", chart,
                   unit="anime")
        lines += ["## Kaggle anime 2023: the full genre table", "",
                  f"![class distribution]({chart.relative_to(out_dir)})", "",
                  f"*Anime per genre in `{genre_table}` ({rows} rows, {unknown} with no genres). "
                  f"Reproduce: `make report GENRE_TABLE={genre_table}`.*", ""]
    for dataset, results in read_results(results_dir).items():
        split_path = features_dir / f"{dataset}-split.json"
        split = Split.load(split_path) if split_path.exists() else None
        lines += _dataset_section(dataset, results, split, figures, out_dir, Path(results_dir))
        explained = out_dir / "explain" / f"{dataset}.md"  # from make explain
        if explained.exists():
            lines += [explained.read_text(), ""]
    path = out_dir / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__)
    parser.add_argument("--results-dir", default="results")
    parser.add_argument("--features-dir", default="features")
    parser.add_argument("--out-dir", default="reports")
    parser.add_argument("--genre-table", default=None, help="Kaggle anime genre table with no images")
    args = parser.parse_args()
    print(write_report(args.results_dir, args.features_dir, args.out_dir, args.genre_table))


if __name__ == "__main__":
    main()
