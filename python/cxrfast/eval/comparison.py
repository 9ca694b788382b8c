"""Models compared on the same test images, as a paper's comparison table reports them: each
model's AUROC per finding and mean, with DeLong and bootstrap CIs; for every pair, the
difference per finding with DeLong's CI and p and the paired bootstrap's CI and p, both p-values
corrected across the findings (Holm; Benjamini–Hochberg), and the difference of the mean AUROC
with its bootstrap CI and p.

The models' predictions are matched by image id on the split compared: the same images and the
same targets, or an error naming the file and what differs. One set of bootstrap replicates,
drawn from the seed over the first model's targets and patients, serves every model and is saved
beside `statistics.json` and `comparison.csv`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_json
from cxrfast.errors import DataError
from cxrfast.eval.bootstrap import paired_comparison, percentile_interval, replicate
from cxrfast.eval.delong import delong_interval, delong_test
from cxrfast.eval.evaluation import REPLICATES_FILE, EvaluationSettings, predictions_file, split_of, write_table
from cxrfast.eval.multiple_comparisons import benjamini_hochberg, holm
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.resamples import draw_resamples
from cxrfast.eval.segmentation_evaluation import compare_segmentation, is_segmentation

STATISTICS_JSON, COMPARISON_CSV = "statistics.json", "comparison.csv"
_SHOWN = 3  # ids named in an error


def _some(ids: Sequence[str]) -> str:
    return ", ".join(ids[:_SHOWN]) + (", ..." if len(ids) > _SHOWN else "")


def matched(predictions: Sequence[Predictions], sources: Sequence[str | os.PathLike]) -> list[Predictions]:
    """Each model's rows in the first's image order, once the image sets, findings and targets agree."""
    first = predictions[0]
    position = {image: k for k, image in enumerate(first.images)}
    aligned = [first]
    for other, source in zip(predictions[1:], sources[1:]):
        missing = sorted(set(first.images) - set(other.images))
        extra = sorted(set(other.images) - set(first.images))
        if missing or extra:
            raise DataError(f"{source}: not the same images as {sources[0]}: it lacks {len(missing)} "
                            f"({_some(missing)}) and has {len(extra)} more ({_some(extra)})")
        if other.findings != first.findings:
            raise DataError(f"{source}: findings {', '.join(other.findings)}, not {', '.join(first.findings)} as "
                            f"{sources[0]}")
        order = np.argsort([position[image] for image in other.images])
        scores, targets = other.scores[order], other.targets[order]
        differ = np.flatnonzero(~((targets == first.targets) | (np.isnan(targets) & np.isnan(first.targets))).all(1))
        if len(differ):
            raise DataError(f"{source}: {len(differ)} images' targets differ from {sources[0]}'s "
                            f"({_some([first.images[k] for k in differ])}); compare on the same labels")
        aligned.append(Predictions(first.images, first.patients, first.splits, first.findings, scores, first.targets))
    return aligned


def check_names(names: Sequence[str], models: int) -> None:
    if models < 2 or len(names) != models or len(set(names)) != len(names):
        raise DataError(f"compare needs two or more models with distinct names, not {list(names)}")


def compare(predictions: Sequence[Predictions], names: Sequence[str],
            settings: EvaluationSettings = EvaluationSettings(), sources: Sequence[str | os.PathLike] | None = None):
    """(statistics, their bootstrap replicates) of the models on `settings.split`."""
    sources = list(sources) if sources is not None else list(names)
    check_names(names, len(predictions))
    models = matched([split_of(p, settings.split, s) for p, s in zip(predictions, sources)], sources)
    first = models[0]
    findings, level = first.findings, settings.level
    resamples = draw_resamples(first.targets, patients=first.patients, replicates=settings.replicates,
                               seed=settings.seed, findings=findings)
    replicated = replicate([m.scores for m in models], first.targets, resamples)
    per_model = {}
    for name, model, rep in zip(names, models, replicated):
        delong = delong_interval(model.scores, model.targets, level=level)
        boot = percentile_interval(rep, level)
        per_model[name] = {
            "findings": {f: {"auroc": float(delong.auc[k]),
                             "delong_ci": [float(delong.lower[k]), float(delong.upper[k])],
                             "bootstrap_ci": [float(boot.lower[k]), float(boot.upper[k])]}
                         for k, f in enumerate(findings)},
            "mean_auroc": {"value": boot.mean, "bootstrap_ci": [boot.mean_lower, boot.mean_upper]}}
    pairs = []
    for i, j in combinations(range(len(models)), 2):
        delong = delong_test(models[i].scores, models[j].scores, first.targets, level=level)
        boot = paired_comparison(replicated[i], replicated[j], level=level)
        corrected = {"delong_p_holm": holm(delong.p), "delong_p_bh": benjamini_hochberg(delong.p),
                     "bootstrap_p_holm": holm(boot.p), "bootstrap_p_bh": benjamini_hochberg(boot.p)}
        pairs.append({
            "a": names[i], "b": names[j],
            "findings": {f: {"difference": float(delong.difference[k]),
                             "delong_ci": [float(delong.lower[k]), float(delong.upper[k])],
                             "delong_z": float(delong.z[k]), "delong_p": float(delong.p[k]),
                             "bootstrap_ci": [float(boot.lower[k]), float(boot.upper[k])],
                             "bootstrap_p": float(boot.p[k]), "bootstrap_p_vitmed": float(boot.p_vitmed[k]),
                             **{key: float(values[k]) for key, values in corrected.items()}}
                         for k, f in enumerate(findings)},
            "mean_auroc": {"difference": boot.mean_difference, "bootstrap_ci": [boot.mean_lower, boot.mean_upper],
                           "bootstrap_p": boot.mean_p}})
    statistics = {
        "split": settings.split, "images": len(first.images), "patients": len(set(first.patients)),
        "level": level, "alternative": "two-sided", "findings": list(findings), "models": per_model,
        "comparisons": pairs,
        "bootstrap": {"replicates": settings.replicates, "seed": settings.seed, "clustered": resamples.clustered,
                      "redrawn": resamples.redrawn, "stratified": "by each finding's class", "ci": "percentile",
                      "p": "(1 + #{replicates against}) / (B + 1), two-sided doubled", "file": REPLICATES_FILE},
        "corrections": "Holm and Benjamini-Hochberg across the findings of each pair",
    }
    return statistics, resamples


def compare_predictions(paths: Sequence[str | os.PathLike], names: Sequence[str] | None, out: str | os.PathLike,
                        settings: EvaluationSettings = EvaluationSettings()) -> Path:
    """Compare the models of `paths` (predictions.csv files or run folders) into the folder `out`;
    returns statistics.json's path. Names default to each file's folder (its run), or its name where
    folders repeat."""
    paths = [predictions_file(p) for p in paths]
    names = list(names) if names else _default_names(paths)
    kinds = {is_segmentation(p) for p in paths if p.is_file()}
    if kinds == {True}:
        check_names(names, len(paths))
        return compare_segmentation(paths, names, out, settings)
    if len(kinds) > 1:
        raise DataError("compare segmentation runs with segmentation runs, classifiers with classifiers")
    statistics, resamples = compare([Predictions.read(p) for p in paths], names, settings, paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resamples.save(out / REPLICATES_FILE)
    write_table(out / COMPARISON_CSV, *comparison_rows(statistics))
    return write_json(out / STATISTICS_JSON, {"predictions": dict(zip(names, map(str, paths))), **statistics})


def _default_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    for name in (lambda p: p.parent.name, lambda p: p.stem, str):
        names = [name(Path(p).resolve()) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


COMPARISON_COLUMNS = ("difference", "delong_lower", "delong_upper", "delong_z", "delong_p", "bootstrap_lower",
                      "bootstrap_upper", "bootstrap_p", "delong_p_holm", "delong_p_bh", "bootstrap_p_holm",
                      "bootstrap_p_bh")


def comparison_rows(statistics: dict) -> tuple[list[str], list[list]]:
    """statistics.json's comparisons as a table: one row per pair and finding, and per pair's mean."""
    header = ["a", "b", "finding", "auroc_a", "auroc_b", *COMPARISON_COLUMNS]
    rows = []
    for pair in statistics["comparisons"]:
        a, b = statistics["models"][pair["a"]], statistics["models"][pair["b"]]
        for finding, d in pair["findings"].items():
            rows.append([pair["a"], pair["b"], finding, a["findings"][finding]["auroc"],
                         b["findings"][finding]["auroc"], d["difference"], *d["delong_ci"], d["delong_z"], d["delong_p"], *d["bootstrap_ci"],
                         d["bootstrap_p"], d["delong_p_holm"], d["delong_p_bh"], d["bootstrap_p_holm"],
                         d["bootstrap_p_bh"]])
        mean = pair["mean_auroc"]
        rows.append([pair["a"], pair["b"], "mean", a["mean_auroc"]["value"], b["mean_auroc"]["value"],
                     mean["difference"], "", "", "", "", *mean["bootstrap_ci"], mean["bootstrap_p"], "", "", "", ""])
    return header, rows

