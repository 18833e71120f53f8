"""python -m postergenre.ensemble.final --features FILE.h5: the data set's evaluated ensemble (`make ensemble`),
refit as its final model, every member learning from every labelled poster (`make final-ensemble`).

A head member is refit here, as `make final` refits a head (heads.final.refit); a network member is the one its own
training command refit with --final. The members are averaged with the evaluated ensemble's weights and scales.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from postergenre.core import cli, workspace
from postergenre.core.errors import DataError
from postergenre.core.files import atomic_write
from postergenre.core.runspec import ENSEMBLE
from postergenre.evaluation.card import write_refit_card
from postergenre.evaluation.results import overall, read_results
from postergenre.extract.features import Features, load_features
from postergenre.heads.final import refit
from postergenre.heads.train import save_head
from postergenre.heads.union import Union
from postergenre.modelfiles import (ENSEMBLE_SUFFIX, HEAD_SUFFIX, NETWORK_SUFFIX, final_model_path, members_dir,
                                    save_ensemble)
from postergenre.modelfiles.networks import read_network
from postergenre.posters.union import describe_added


def fit_final_ensemble(features_path: Path | str, results_dir: Path | str, models_dir: Path | str) -> Path:
    """The data set's evaluated ensemble, every member refit on all labelled posters, averaged with the same
    weights and scales: models/<dataset>-final.json, its members in models/<dataset>-final-members/.

    Head members are refit here, from the feature files beside `features_path` (`<dataset>-<backbone>.h5`,
    and the other set's for a union head). A network member is the one its own training command refit with
    --final (models/<dataset>-final.safetensors, kept in the members folder by keep_refit_network, so that
    several network members can be refit one after the other).
    """
    features_path = Path(features_path)
    features = load_features(features_path)
    dataset = features.attrs["dataset"]
    results = {r["model"]: r for r in read_results(results_dir).get(dataset, [])}
    evaluated = results.get(ENSEMBLE)
    if not evaluated or "combination" not in evaluated:
        raise DataError(f"{results_dir}/{dataset}: no ensemble result of this version; run `make ensemble` first")
    path = final_model_path(models_dir, dataset, ENSEMBLE_SUFFIX)
    folder = members_dir(path)
    folder.mkdir(parents=True, exist_ok=True)
    keep_refit_network(models_dir, dataset)
    files, how = _refit_members(features_path, features, results, evaluated["members"], folder)
    members = {name: {"file": files[name], "weight": weight} for name, weight in evaluated["members"].items()}
    save_ensemble(path, {"kind": "ensemble", "genres": features.genres, "thresholds": evaluated["thresholds"]["values"],
                         "batch_size": int(features.attrs["batch_size"]), "members": members,
                         "combination": evaluated["combination"], "final": {"source": "ensemble",
                                                                           "posters": len(features.Y)}})
    write_refit_card(path, [
        f"# {dataset}: final model", "",
        f"`{path.name}`: the ensemble that validation mAP picked among this data set's models "
        f"({overall(evaluated, 'val'):.3f}), each member refit on all {len(features.Y)} labelled "
        f"posters of `{features.attrs['data']}` (the files in `{folder.name}/`), averaged with the evaluated "
        f"ensemble's weights and per-genre scales. Reproduce: `make final-ensemble DATA={features.attrs['data']}` "
        f"after `make ensemble` (and, for each network member, its training command with `TRAIN_ARGS=--final`).",
        "", "| member | weight | refit |", "|---|---|---|",
        *(f"| {name} | {weight} | {how[name]} |" for name, weight in evaluated["members"].items()), "",
        "The scales that put the members on one footing are the evaluated members', taken on validation; members "
        "fitted on more posters may be a little more confident than those scales assume."],
        "Those the evaluated ensemble chose on its validation part, which none of its members was fitted on",
        evaluated, features.Y, int((features.parts == "train").sum()), features.genres)
    print(f"{path}: the ensemble of {', '.join(evaluated['members'])}, refit on all {len(features.Y)} labelled "
          f"posters; model card {path.with_suffix('.md')}")
    return path


def _refit_members(features_path: Path, features: Features, results: dict[str, dict], members: dict[str, int],
                   folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Each member's file in `folder` and how it was refit: heads here, from the feature files beside
    `features_path`; networks as their training command with --final left them (one line naming those missing)."""
    dataset = features.attrs["dataset"]
    loaded = {features_path: features}  # members on the same backbone share its feature file

    def features_of(backbone: str) -> Features:
        path = workspace.features_path(features_path.parent, dataset, backbone)
        if path not in loaded:
            loaded[path] = load_features(path)
        return loaded[path]

    files, how, missing = {}, {}, []
    for name in members:
        source = results[name]
        if source["kind"] == "head":
            member_features = features_of(source["backbone"])
            union = (Union.with_file(member_features, workspace.features_path(
                features_path.parent, source["union"]["dataset"], source["backbone"])) if "union" in source else None)
            model, Y, report = refit(source, member_features, union)
            files[name] = f"{name}{HEAD_SUFFIX}"
            save_head(folder / files[name], model, member_features, source["params"], source["thresholds"]["values"],
                      final={"source": name, "posters": len(Y), **({"union": report} if report else {})})
            how[name] = f"refit here on {len(Y)} posters" + (f" ({describe_added(report, len(Y))})" if report else "")
            continue
        kept = folder / f"{name}{NETWORK_SUFFIX}"
        if not kept.is_file():
            missing.append(name)
            continue
        files[name] = kept.name
        how[name] = f"refit by its training command with --final, for {read_network(kept)[1]['final']['epochs']} epochs"
    if missing:
        raise DataError(f"the ensemble's networks {', '.join(missing)} are not refit yet: run each one's training "
                        f"command again with --final (make finetune or make cnn ... TRAIN_ARGS=--final), then this")
    return files, how


def keep_refit_network(models_dir: Path | str, dataset: str) -> Path | None:
    """Copy the network that its training command last refit with --final (models/<dataset>-final.safetensors)
    into the final ensemble's members folder, named after the run it refit, where it stays when another
    network is refit; returns the copy."""
    refit_network = final_model_path(models_dir, dataset, NETWORK_SUFFIX)
    if not refit_network.is_file():
        return None
    source = read_network(refit_network)[1].get("final", {}).get("source")
    if not source:  # refit before refits recorded their run
        return None
    kept = members_dir(final_model_path(models_dir, dataset, ENSEMBLE_SUFFIX)) / f"{source}{NETWORK_SUFFIX}"
    kept.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(kept) as tmp:
        shutil.copyfile(refit_network, tmp)
    return kept


def main(argv: list[str] | None = None) -> None:
    parser = cli.parser("python -m postergenre.ensemble.final", __doc__)
    parser.add_argument("--features", required=True,
                        help="the feature file `make heads` used; the members' other feature files are beside it")
    parser.add_argument("--results-dir", default="results", help="where `make ensemble` wrote its result")
    parser.add_argument("--models-dir", default="models", help="the final model, its members and its card go here")
    args = parser.parse_args(argv)
    cli.run(lambda: fit_final_ensemble(args.features, args.results_dir, args.models_dir))


if __name__ == "__main__":
    main()
