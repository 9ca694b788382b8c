"""`cxrfast demo`: a compact label-efficiency study on generated data, on a CPU in minutes.

Writes a labelled synthetic phantom archive as DICOM (every finding at the same prevalence, with
the nuisance variation of real films switched on) and prepares its cache, then runs a sweep on
it: SparK and SimCLR pretrained briefly on the archive's images, and random initialisation, each
fine-tuned at three label fractions and evaluated on the same test images. Prints the table with
its confidence intervals and p-values against random initialisation, and writes the HTML report
with the label-efficiency plot. With `ceiling`, it first measures what each finding allows: a
supervised model fine-tuned on every training label. Every stage resumes: run it again to continue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.synthetic import FINDINGS, Finding, Findings
from cxrfast.data.variation import Variation
from cxrfast.errors import ConfigError
from cxrfast.eval.report import interval, number, p_value, write_report
from cxrfast.train.sweep import SWEEP_JSON, SweepConfig, run_sweep


@dataclass(frozen=True)
class DemoSettings:
    """The study's size. The defaults fit in about ten minutes on two CPU cores."""

    images: int = 800
    size: int = 64  # training pixels; the DICOM files are twice that
    epochs: int = 8  # of each pretraining
    methods: tuple[str, ...] = ("spark", "simclr")  # the pretrained arms, each against random initialisation
    fractions: tuple[float, ...] = (0.2, 0.5, 1.0)
    seeds: tuple[int, ...] = (0,)
    replicates: int = 1000
    workers: int = 2
    jobs: int = 1  # cells fine-tuned at once (cxrfast sweep --jobs)
    seed: int = 0
    prevalence: float = 0.2  # of each finding, drawn independently
    variation: float = 0.5  # strength of the nuisances of real films (cxrfast.data.variation); see BENCHMARKS.md
    ceiling: bool = False  # first fine-tune a supervised model on every training label: each finding's bound


def _fine_tuning(s: DemoSettings, **changes) -> dict:
    """What every fine-tuning of the demo shares: ResNet-18, all five findings, the same split."""
    return {"backbone": "resnet18", "image_size": s.size, "batch_size": 32, "lr": 1e-2, "patience": None,
            "findings": list(FINDINGS), "split_fractions": {"train": 0.6, "validate": 0.1, "test": 0.3}, **changes}


def write_demo_data(out: Path, s: DemoSettings, console: Console) -> Path:
    """The archive and its prepared cache (`out/phantoms`, `out/cache`); the cache's folder."""
    console.rule("1. a synthetic archive (DICOM, labelled findings, the variation of real films)")
    labels = write_phantom_archive(out / "phantoms", s.images, rows=2 * s.size, seed=s.seed,
                                   findings=Findings(dict.fromkeys(FINDINGS, Finding(s.prevalence))),
                                   variation=Variation.realistic(s.variation))
    console.rule("2. the prepared cache")
    report = prepare_cache(labels, out / "cache", size=s.size, workers=s.workers)
    console.print(f"{report.images} images in {report.root}")
    return out / "cache"


def ceiling_sweep(out: Path, cache: Path, s: DemoSettings) -> SweepConfig:
    """What each finding allows at the demo's size: a ResNet-18 fine-tuned in full from random
    initialisation on every training label, tested on the demo's test images."""
    return SweepConfig(
        data=str(cache), out=str(out), label_fractions=[1.0], seeds=[0], replicates=s.replicates,
        arms={"supervised": {"init": "random"}},
        finetune=_fine_tuning(s, mode="full", epochs=15, workers=s.workers))


def demo_sweep(out: Path, cache: Path, s: DemoSettings) -> SweepConfig:
    """The demo's sweep: random initialisation and each method's arm, ResNet-18, linear fine-tuning."""
    shared = {"data": str(cache), "backbone": "resnet18", "image_size": s.size, "epochs": s.epochs,
              "workers": s.workers, "seed": s.seed, "warmup_epochs": 1, "checkpoint_every": 50}
    # SimCLR at the engine's default LAMB rate (2e-4 per 256: 5e-5 at batch 64) barely moves in
    # the demo's 96 steps (loss 5.57 -> 5.35); at 2e-2 it trains (-> 4.72). See BENCHMARKS.md.
    pretraining = {"spark": {"batch_size": 32, "lr": 2e-3, "method_options": {"decoder_width": 64}},
                   "simclr": {"batch_size": 64, "lr": 2e-2}}
    unknown = [m for m in s.methods if m not in pretraining]
    if unknown:
        raise ConfigError(f"the demo pretrains {' and '.join(pretraining)}, not {', '.join(unknown)}")
    return SweepConfig(
        data=str(cache), out=str(out), label_fractions=list(s.fractions), seeds=list(s.seeds), baseline="random",
        replicates=s.replicates,
        arms={"random": {"init": "random"},
              **{m: {"pretrain": {**shared, "method": m, **pretraining[m]}} for m in s.methods}},
        finetune=_fine_tuning(s, mode="linear", epochs=30, workers=0))


def run_demo(out: str | Path, settings: DemoSettings = DemoSettings(), console: Console | None = None) -> dict:
    """Run (or resume) the demo in `out`; its sweep.json."""
    out, console, s = Path(out), console or Console(), settings
    cache = write_demo_data(out, s, console)
    if s.ceiling:
        console.rule("each finding's ceiling: supervised, every training label, full fine-tuning")
        run_sweep(ceiling_sweep(out / "ceiling", cache, s), jobs=s.jobs, console=console)
        console.print(_ceiling_table(json.loads((out / "ceiling" / SWEEP_JSON).read_text(encoding="utf-8"))))
    console.rule("3. pretraining, then random / SparK / SimCLR × label fractions, fine-tuned and evaluated")
    sweep = run_sweep(demo_sweep(out / "sweep", cache, s), jobs=s.jobs, console=console)
    if sweep.failed:
        console.print(f"[red]{len(sweep.failed)} cells failed[/red]; their errors are in their cell.json")
    console.rule("4. results")
    results = json.loads((out / "sweep" / SWEEP_JSON).read_text(encoding="utf-8"))
    console.print(_table(results))
    page = write_report(out / "sweep")
    console.print(f"report with the label-efficiency plot: {page}; tables: {out / 'sweep'}/*.csv")
    return results


def _table(results: dict) -> Table:
    """Mean test AUROC per arm and fraction with its bootstrap CI, and each arm's difference from
    random initialisation with the paired bootstrap p (Holm-corrected across the sweep)."""
    compared = {(c["arm"], c["label_fraction"]): c for c in results["comparisons"]}
    table = Table(title=f"test mean AUROC, its {results['level']:.0%} bootstrap CI ({results['replicates']} replicates), "
                        f"and the difference from {results['baseline']} with its paired p")
    for column in ("arm", "fraction", "AUROC", "CI", "Δ", "p", "p Holm"):
        table.add_column(column, justify="left" if column == "arm" else "right")
    for row in results["summary"]:
        c = compared.get((row["arm"], row["label_fraction"]))
        table.add_row(row["arm"], f"{row['label_fraction']:g}", number(row["mean_auroc"]),
                      interval([row["ci_lower"], row["ci_upper"]]),
                      *((number(c["mean_auroc_difference"]), p_value(c["mean_auroc_bootstrap_p"]),
                         p_value(c["mean_auroc_bootstrap_p_holm"])) if c else ("", "", "")))
    return table


def _ceiling_table(results: dict) -> Table:
    table = Table(title=f"each finding's test AUROC and its {results['level']:.0%} bootstrap CI, "
                        "supervised on every training label")
    for column in ("finding", "AUROC", "CI"):
        table.add_column(column, justify="left" if column == "finding" else "right")
    for row in results["finding_summary"]:
        table.add_row(row["finding"], number(row["mean_auroc"]), interval([row["ci_lower"], row["ci_upper"]]))
    return table
