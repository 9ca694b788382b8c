"""`cxrfast report DIR`: what `cxrfast evaluate` or `cxrfast compare` wrote into DIR as one
self-contained HTML page (figures embedded as PNG) and a Markdown table a paper can paste.

From `metrics.json` (with `predictions.csv` and `replicates.npz` beside it): the per-finding
table (cases, controls, AUROC with its DeLong and bootstrap CIs, average precision, the Youden
operating point chosen on validation) and each finding's ROC curve with a bootstrap band, the
2.5th–97.5th percentiles (at the report's level) of the sensitivity at each 1 − specificity over
at most `BAND_REPLICATES` of the saved replicates (each a reweighting of the images). From
`statistics.json`: each model's AUROCs, every pair's differences with DeLong's and the
bootstrap's CIs and p-values (Holm-corrected beside them), and a forest plot of the differences.
Numbers are shown to 3 decimals, p-values to 3 significant digits; the JSON keeps them whole.
Figures are drawn with matplotlib's object API (no pyplot), so no global backend is touched.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from cxrfast.atomic import write_text_atomically
from cxrfast.errors import DataError
from cxrfast.eval.comparison import STATISTICS_JSON
from cxrfast.eval.evaluation import METRICS_JSON, PREDICTIONS_USED, REPLICATES_FILE
from cxrfast.eval.predictions import Predictions
from cxrfast.eval.resamples import Resamples

REPORT_HTML, REPORT_MD, SWEEP_JSON = "report.html", "report.md", "sweep.json"
BAND_REPLICATES = 200
_GRID = np.linspace(0, 1, 101)  # 1 − specificity at which the band is read


def number(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def p_value(value) -> str:
    return "–" if value is None else f"{value:.3g}"


def interval(bounds) -> str:
    if bounds is None or None in bounds or any(math.isnan(b) for b in bounds):
        return "–"
    return f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def _png(figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _roc(scores, positive, weights=None):
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(positive, scores, sample_weight=weights, drop_intermediate=False)
    return fpr, tpr


def _roc_figures(folder: Path, metrics: dict) -> dict[str, str]:
    """Each finding with an AUROC: its ROC curve and bootstrap band, as base64 PNG."""
    from matplotlib.figure import Figure

    predictions = Predictions.read(folder / PREDICTIONS_USED)
    resamples = Resamples.load(folder / REPLICATES_FILE)
    figures = {}
    for f, name in enumerate(predictions.findings):
        m = metrics["findings"].get(name, {})
        if m.get("auroc") is None:
            continue
        known = (predictions.targets[:, f] == 0) | (predictions.targets[:, f] == 1)
        scores, positive, units = predictions.scores[known, f], predictions.targets[known, f] == 1, resamples.units[known]
        band = []
        for draw in resamples.draws(resamples.finding_pools(f), slice(0, BAND_REPLICATES)):
            weights = np.bincount(draw, minlength=resamples.unit_count)[units]
            fpr, tpr = _roc(scores, positive, weights)
            band.append(np.interp(_GRID, fpr, tpr))
        level = metrics["level"]
        lower, upper = np.quantile(np.array(band), [(1 - level) / 2, (1 + level) / 2], axis=0)
        fpr, tpr = _roc(scores, positive)
        figure = Figure(figsize=(3.4, 3.4))
        axes = figure.add_subplot()
        axes.fill_between(_GRID, lower, upper, color="tab:blue", alpha=0.2, linewidth=0,
                          label=f"{level:.0%} bootstrap band")
        axes.plot(fpr, tpr, color="tab:blue", label=f"AUROC {m['auroc']:.3f}")
        axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8, linestyle=":")
        axes.set(xlabel="1 − specificity", ylabel="sensitivity", title=name, xlim=(0, 1), ylim=(0, 1.01))
        axes.legend(loc="lower right", fontsize=7)
        figures[name] = _png(figure)
    return figures


def _forest(statistics: dict) -> str:
    """Every pair's AUROC difference per finding with its bootstrap CI."""
    from matplotlib.figure import Figure

    rows = [(f"{pair['a']} − {pair['b']}: {finding}", d["difference"], d["bootstrap_ci"])
            for pair in statistics["comparisons"] for finding, d in pair["findings"].items()
            if d["difference"] is not None and None not in d["bootstrap_ci"]]
    figure = Figure(figsize=(6, 0.35 * len(rows) + 1))
    axes = figure.add_subplot()
    for y, (_, difference, (low, high)) in enumerate(rows):
        axes.plot([low, high], [y, y], color="tab:blue")
        axes.plot(difference, y, "o", color="tab:blue")
    axes.axvline(0, color="grey", linewidth=0.8, linestyle=":")
    axes.set_yticks(range(len(rows)), [label for label, *_ in rows], fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(f"AUROC difference, {statistics['level']:.0%} bootstrap CI")
    return _png(figure)


def _label_efficiency(sweep: dict) -> str:
    """Mean AUROC against label fraction (log axis), one line per arm, its band the mean over
    seeds of the cells' bootstrap CI bounds."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 3.8))
    axes = figure.add_subplot()
    arms = list(dict.fromkeys(row["arm"] for row in sweep["summary"]))
    for arm in arms:
        points = sorted((r["label_fraction"], r["mean_auroc"], r["ci_lower"], r["ci_upper"]) for r in sweep["summary"]
                        if r["arm"] == arm and r["mean_auroc"] is not None)
        if not points:
            continue
        fraction, mean, lower, upper = (np.array(v, float) for v in zip(*points))
        line, = axes.plot(fraction, mean, "o-", label=arm)
        axes.fill_between(fraction, lower, upper, color=line.get_color(), alpha=0.15, linewidth=0)
    axes.set_xscale("log")
    axes.set(xlabel="label fraction", ylabel="test mean AUROC",
             title=f"label efficiency ({sweep['level']:.0%} bootstrap bands)")
    axes.legend(fontsize=8)
    return _png(figure)


def sweep_tables(sweep: dict) -> list[tuple[list[str], list[list[str]]]]:
    summary = (["arm", "label fraction", "seeds", "mean AUROC", "sd over seeds", "mean bootstrap CI"],
               [[r["arm"], f"{r['label_fraction']:g}", str(r["seeds_done"]), number(r["mean_auroc"]),
                 number(r["sd_over_seeds"]), interval([r["ci_lower"], r["ci_upper"]])] for r in sweep["summary"]])
    comparisons = (["arm", "baseline", "label fraction", "seed", "Δ mean AUROC", "bootstrap CI", "bootstrap p",
                    "p (Holm)", "p (BH)"],
                   [[c["arm"], c["baseline"], f"{c['label_fraction']:g}", str(c["seed"]),
                     number(c["mean_auroc_difference"]), interval(c["mean_auroc_bootstrap_ci"]),
                     p_value(c["mean_auroc_bootstrap_p"]), p_value(c["mean_auroc_bootstrap_p_holm"]),
                     p_value(c["mean_auroc_bootstrap_p_bh"])] for c in sweep["comparisons"]])
    return [summary, comparisons]


def sweep_finding_tables(sweep: dict) -> list[tuple[list[str], list[list[str]]]]:
    """Per finding: the mean AUROC over seeds (± sd) by arm and fraction, one column a finding;
    and each arm's difference from the baseline with DeLong's CI and p, corrected across the sweep."""
    by_cell = {(r["arm"], r["label_fraction"], r["finding"]): r for r in sweep["finding_summary"]}

    def over_seeds(row: dict) -> str:
        sd = row["sd_over_seeds"]
        return number(row["mean_auroc"]) + ("" if sd is None else f" ± {number(sd)}")

    summary = (["arm", "label fraction", *sweep["findings"]],
               [[r["arm"], f"{r['label_fraction']:g}",
                 *[over_seeds(by_cell[r["arm"], r["label_fraction"], f]) for f in sweep["findings"]]]
                for r in sweep["summary"]])
    comparisons = (["arm", "baseline", "label fraction", "seed", "finding", "Δ AUROC", "DeLong CI", "DeLong p",
                    "p (Holm)", "p (BH)"],
                   [[c["arm"], c["baseline"], f"{c['label_fraction']:g}", str(c["seed"]), c["finding"],
                     number(c["auroc_difference"]), interval([c["delong_lower"], c["delong_upper"]]),
                     p_value(c["delong_p"]), p_value(c["delong_p_holm"]), p_value(c["delong_p_bh"])]
                    for c in sweep["finding_comparisons"]])
    return [summary, comparisons]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def metrics_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    rates = ("accuracy", "f1", "sensitivity", "specificity", "ppv", "npv")
    header = ["finding", "cases", "controls", "AUROC", "DeLong CI", "bootstrap CI", "AP [CI]", "Youden threshold",
              "accuracy [CI]", "F1 [CI]", "sensitivity", "specificity", "PPV", "NPV"]
    rows = []
    for name, m in metrics["findings"].items():
        youden = m["operating_points"]["youden"]
        with_ci = [f"{number(youden[r])} {interval(youden.get('ci', {}).get(r))}" for r in rates[:2]]
        rows.append([name, str(m["cases"]), str(m["controls"]), number(m["auroc"]), interval(m["delong_ci"]),
                     interval(m["bootstrap_ci"]), f"{number(m['average_precision'])} "
                     f"{interval(m.get('average_precision_ci'))}", number(youden["threshold"]), *with_ci,
                     *(number(youden[r]) for r in rates[2:])])
    mean = metrics["mean_auroc"]
    rows.append(["mean", "", "", number(mean["value"]), "", interval(mean["bootstrap_ci"]), *[""] * 8])
    return header, rows


def comparison_table(statistics: dict) -> tuple[list[str], list[list[str]]]:
    header = ["a", "b", "finding", "AUROC a", "AUROC b", "difference", "DeLong CI", "DeLong p", "DeLong p (Holm)",
              "bootstrap CI", "bootstrap p", "bootstrap p (Holm)"]
    rows = []
    for pair in statistics["comparisons"]:
        a, b = (statistics["models"][pair[side]] for side in ("a", "b"))
        for finding, d in pair["findings"].items():
            rows.append([pair["a"], pair["b"], finding, number(a["findings"][finding]["auroc"]),
                         number(b["findings"][finding]["auroc"]), number(d["difference"]), interval(d["delong_ci"]),
                         p_value(d["delong_p"]), p_value(d["delong_p_holm"]), interval(d["bootstrap_ci"]),
                         p_value(d["bootstrap_p"]), p_value(d["bootstrap_p_holm"])])
        mean = pair["mean_auroc"]
        rows.append([pair["a"], pair["b"], "mean", number(a["mean_auroc"]["value"]), number(b["mean_auroc"]["value"]),
                     number(mean["difference"]), "", "", "", interval(mean["bootstrap_ci"]),
                     p_value(mean["bootstrap_p"]), ""])
    return header, rows


def segmentation_tables(data: dict) -> tuple[list[str], list[list[str]]]:
    """metrics.json or statistics.json of segmentation runs as one table."""
    if "dice" in data:
        d = data["dice"]
        return (["split", "images", "with a Dice", "empty ground truth", "mean Dice", "bootstrap CI"],
                [[data["split"], str(data["images"]), str(d["scored"]), str(d["empty_ground_truth"]),
                  number(d["mean"]), interval(d["bootstrap_ci"])]])
    rows = [[name, number(m["mean"]), interval(m["bootstrap_ci"]), "", "", ""] for name, m in data["models"].items()]
    rows += [[f"{p['a']} − {p['b']}", "", "", number(p["difference"]), interval(p["bootstrap_ci"]),
              p_value(p["bootstrap_p"])] for p in data["comparisons"]]
    return ["model", "mean Dice", "bootstrap CI", "difference", "bootstrap CI of the difference", "bootstrap p"], rows


_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;font-size:13px;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.figures{display:flex;flex-wrap:wrap;gap:8px}
.note{color:#555;font-size:13px}"""


def _settings_note(data: dict) -> str:
    boot = data["bootstrap"]
    clustered = "patients" if boot["clustered"] else "images"
    delong = "" if data.get("task") == "segmentation" else "DeLong's (Wald, clipped to [0, 1]) and "
    return (f"Split <b>{html.escape(data['split'])}</b>: {data['images']} images of {data['patients']} patients. "
            f"CIs at {data['level']:.0%}: {delong}the bootstrap's ({boot['replicates']} replicates of {clustered}, "
            f"seed {boot['seed']}, stratification: {html.escape(boot['stratified'])}, {boot['ci']}).")


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def write_report(folder: str | os.PathLike) -> Path:
    """report.html and report.md of an evaluate, compare or sweep output folder; returns its path."""
    folder = Path(folder)
    metrics, statistics = _read(folder / METRICS_JSON), _read(folder / STATISTICS_JSON)
    sweep = _read(folder / SWEEP_JSON)
    if metrics is None and statistics is None and sweep is None:
        raise DataError(f"{folder}: no {METRICS_JSON}, {STATISTICS_JSON} or {SWEEP_JSON}; run cxrfast evaluate, "
                        "compare or sweep into it")
    sections, markdown = [], []
    if sweep is not None:
        (summary_header, summary_rows), (comparison_header, comparison_rows) = sweep_tables(sweep)
        sections.append(f"<h2>Label efficiency</h2><p class='note'>Each cell evaluated on its test split with "
                        f"{sweep['replicates']} bootstrap replicates; the differences are each arm's against "
                        f"{html.escape(sweep['baseline'])} on the same images (paired bootstrap of the mean AUROC), "
                        "corrected across the sweep's comparisons.</p>"
                        f"<img alt='label-efficiency plot' src='data:image/png;base64,{_label_efficiency(sweep)}'>"
                        f"{_table(summary_header, summary_rows)}{_table(comparison_header, comparison_rows)}")
        markdown += [_markdown(summary_header, summary_rows), _markdown(comparison_header, comparison_rows)]
        (finding_header, finding_rows), (delong_header, delong_rows) = sweep_finding_tables(sweep)
        sections.append(f"<h2>Label efficiency per finding</h2><p class='note'>Test AUROC, mean ± sd over seeds; "
                        "each arm's difference from the baseline with DeLong's test, corrected across the sweep's "
                        f"per-finding tests.</p>{_table(finding_header, finding_rows)}"
                        f"{_table(delong_header, delong_rows)}")
        markdown += [_markdown(finding_header, finding_rows), _markdown(delong_header, delong_rows)]
    for data in (metrics, statistics):
        if data is not None and data.get("task") == "segmentation":
            header, rows = segmentation_tables(data)
            sections.append(f"<h2>Lung segmentation</h2><p class='note'>{_settings_note(data)} An image whose ground "
                            f"truth is empty has no Dice and is left out of every mean.</p>{_table(header, rows)}")
            markdown.append(_markdown(header, rows))
    if metrics is not None and "findings" in metrics:
        header, rows = metrics_table(metrics)
        figures = _roc_figures(folder, metrics)
        images = "".join(f'<img alt="ROC curve of {html.escape(name)}" src="data:image/png;base64,{png}">'
                         for name, png in figures.items())
        left_out = metrics["mean_auroc"]["left_out"]
        sections.append(f"<h2>Per finding</h2><p class='note'>{_settings_note(metrics)} Operating points: Youden's J "
                        f"on {html.escape(str(metrics['thresholds']['chosen_on']))}, threshold "
                        f"{html.escape(metrics['thresholds']['kind'])}."
                        + (f" Left out of the mean (one class): {html.escape(', '.join(left_out))}." if left_out else "")
                        + f"</p>{_table(header, rows)}<h2>ROC curves</h2><div class='figures'>{images}</div>")
        markdown.append(_markdown(header, rows))
    if statistics is not None and "findings" in statistics:
        header, rows = comparison_table(statistics)
        sections.append(f"<h2>Comparison</h2><p class='note'>{_settings_note(statistics)} Paired bootstrap p: "
                        f"{html.escape(statistics['bootstrap']['p'])}; {html.escape(statistics['corrections'])}.</p>"
                        f"{_table(header, rows)}<img alt='forest plot of the AUROC differences' "
                        f"src='data:image/png;base64,{_forest(statistics)}'>")
        markdown.append(_markdown(header, rows))
    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>cxrfast report: "
            f"{html.escape(folder.name)}</title><style>{_STYLE}</style></head><body><h1>cxrfast report: "
            f"{html.escape(folder.name)}</h1>{''.join(sections)}</body></html>\n")
    write_text_atomically(folder / REPORT_MD, "\n".join(markdown))
    return write_text_atomically(folder / REPORT_HTML, page)
