"""`cxrfast sweep CONFIG`: a label-efficiency grid as one resumable command. Arms (initialisations:
random, a checkpoint, a pretraining run, or a pretraining the sweep runs itself, once, into
`pretrain/<arm>`, resumed after a kill and reused by the arm's cells) × label fractions × seeds,
each cell fine-tuned on the same labelled data and evaluated on its test split, then gathered
into one table.

Each cell is its own run folder, `cells/<arm>/fraction-<f>/seed-<s>`, done once: `cell.json` says
"done" when its fine-tuning and evaluation finished, and a rerun after a kill skips it, resumes a
cell that had reached a checkpoint and starts again one that had not. A cell that fails records
its error in `cell.json` and the sweep goes on; the next run tries it again. A finished cell keeps
what the results need (its config, split, logs, classifier, predictions, thresholds and
evaluation) and drops its optimiser checkpoints, so a sweep of a hundred small cells fits on a
laptop. `jobs` runs that many cells at once in their own processes, each with its share of the
CPU's threads and, where there are GPUs, one of them in turn. `shard=(k, n)` runs the cells
whose index in the grid is k − 1 modulo n, so machines sharing the folder (a Slurm array) split
a sweep with no scheduler of ours; `results.csv` is rewritten from every done cell by each of
them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import traceback
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
from rich.console import Console

from cxrfast.atomic import write_json
from cxrfast.errors import ConfigError, CxrfastError
from cxrfast.eval.evaluation import METRICS_JSON, EvaluationSettings, evaluate_predictions, write_table
from cxrfast.train.checkpoint import BEST, checkpoints
from cxrfast.train.config import FinetuneConfig, PretrainConfig, load_config
from cxrfast.train.initial_weights import ENCODER_FILE
from cxrfast.train.recipes import config_file, recipe

CELL_FILE, EVALUATION = "cell.json", "evaluation"
RESULTS_CSV, SUMMARY_CSV, FINDINGS_CSV, SWEEP_JSON = "results.csv", "summary.csv", "findings.csv", "sweep.json"
COMPARISONS_CSV, FINDING_COMPARISONS_CSV = "comparisons.csv", "finding_comparisons.csv"
KEPT = ("config.yaml", "split.csv", "metrics.csv", "validation.csv", "run.json", "classifier.safetensors",
        "predictions.csv", "thresholds.json", CELL_FILE, EVALUATION)


@dataclass
class SweepConfig:
    """What a sweep is: `arms` maps each arm's name to its fine-tuning keys (at least `init`:
    "random", a checkpoint file or a cxrfast pretraining run; any other FinetuneConfig key, e.g.
    `mode`, overrides `finetune` for that arm); `finetune` holds the keys every cell shares."""

    data: str = ""
    out: str = ""
    arms: dict = field(default_factory=dict)
    label_fractions: list[float] = field(default_factory=lambda: [1.0])
    seeds: list[int] = field(default_factory=lambda: [0])
    baseline: str | None = None  # the arm the others are compared with; default: the first
    finetune: dict = field(default_factory=dict)
    finetune_preset: str | None = None  # a shipped fine-tuning preset under `finetune` (cxrfast recipes)
    variables: dict = field(default_factory=dict)  # name -> value, written "${name}" in arms and finetune
    replicates: int = 2000  # the evaluation's bootstrap
    level: float = 0.95

    @property
    def baseline_arm(self) -> str:
        return self.baseline or next(iter(self.arms))

    def __post_init__(self) -> None:
        self.arms = _substituted(self.arms, self.variables, "arms")
        self.finetune = _substituted(self.finetune, self.variables, "finetune")

    def check(self) -> None:
        if not self.data or not self.out:
            raise ConfigError("a sweep needs data (the labelled set) and out (its folder)")
        if not self.arms:
            raise ConfigError("arms: name at least one arm, e.g. arms.random = {init = 'random'}")
        for name, arm in self.arms.items():
            if not isinstance(arm, dict) or ("init" in arm) == ("pretrain" in arm):
                raise ConfigError(f"arms.{name}: a table with init (random, a checkpoint or a run) or pretrain "
                                  "(a pretraining config), one of the two")
            if "pretrain" in arm and not isinstance(arm["pretrain"], dict):
                raise ConfigError(f"arms.{name}.pretrain: a table of pretraining keys (method, data, backbone, ...)")
            if "/" in name or name in (".", ".."):
                raise ConfigError(f"arms.{name}: an arm's name is a folder name; no '/'")
        for key in ("data", "out", "label_fraction", "seed", "init"):
            if key in self.finetune or any(key in arm and key != "init" for arm in self.arms.values()):
                raise ConfigError(f"finetune.{key}: set by the sweep for each cell")
        for name, arm in self.arms.items():
            if "out" in arm.get("pretrain", {}):
                raise ConfigError(f"arms.{name}.pretrain.out: set by the sweep (pretrain/{name})")
        if self.baseline is not None and self.baseline not in self.arms:
            raise ConfigError(f"baseline {self.baseline!r} is not one of the arms {', '.join(self.arms)}")
        if not self.label_fractions or any(not 0 < f <= 1 for f in self.label_fractions):
            raise ConfigError(f"label_fractions must be in (0, 1], not {self.label_fractions}")
        if not self.seeds:
            raise ConfigError("seeds: give at least one")
        if self.finetune_preset is not None:
            recipe(self.finetune_preset, "finetune")
        for name, arm in self.arms.items():  # what does not exist now is refused before any cell runs
            given = {"init": arm.get("init", "random"), **{f"pretrain.{key}": arm.get("pretrain", {}).get(key)
                                                           for key in ("data", "init_checkpoint")}}
            for key, path in given.items():
                if path not in (None, "random") and not Path(path).exists():
                    raise ConfigError(f"arms.{name}.{key}: {path} does not exist")
        if not Path(self.data).exists():
            raise ConfigError(f"data: {self.data} does not exist")


def _substituted(value, variables: dict, where: str):
    """`value` with each "${name}" in its strings replaced by variables[name]; a name not given, or
    given empty, is a ConfigError saying how to set it."""
    if isinstance(value, dict):
        return {k: _substituted(v, variables, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_substituted(v, variables, where) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    for name in re.findall(r"\$\{(\w+)\}", value):
        if not variables.get(name):
            raise ConfigError(f"{where} uses ${{{name}}}: set it with --set variables.{name}=VALUE")
        value = value.replace(f"${{{name}}}", str(variables[name]))
    return value


@dataclass(frozen=True)
class Cell:
    arm: str
    fraction: float
    seed: int
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.arm}/fraction-{self.fraction:g}/seed-{self.seed}"

    def state(self) -> dict:
        path = self.folder / CELL_FILE
        return json.loads(path.read_text()) if path.is_file() else {"status": "not started"}


def load_sweep(path: str | os.PathLike, overrides: tuple[str, ...] = ()) -> SweepConfig:
    """A sweep from its file, or from the shipped recipe of that name, with `key=value` overrides."""
    config = load_config(config_file(path, "sweep"), overrides, kind=SweepConfig)
    config.check()
    return config


def cells(config: SweepConfig) -> list[Cell]:
    """Every cell of the grid, in a fixed order (arms as given, then fractions, then seeds)."""
    root = Path(config.out) / "cells"
    return [Cell(arm, fraction, seed, root / arm / f"fraction-{fraction:g}" / f"seed-{seed}")
            for arm in config.arms for fraction in config.label_fractions for seed in config.seeds]


def shard_of(grid: list[Cell], shard: tuple[int, int]) -> list[Cell]:
    k, n = shard
    if not 1 <= k <= n:
        raise ConfigError(f"shard {k}/{n}: K must be in 1..N")
    return [cell for index, cell in enumerate(grid) if index % n == k - 1]


def pretrained_init(config: SweepConfig, arm: str, progress: bool = False) -> str:
    """The arm's init: as given, or its pretraining run (`pretrain/<arm>`), run, resumed or reused."""
    from cxrfast.train.pretrain import pretrain

    settings = config.arms[arm]
    if "pretrain" not in settings:
        return settings["init"]
    folder = Path(config.out) / "pretrain" / arm
    if not (folder / ENCODER_FILE).is_file():  # written last: its presence means the run finished
        resume = folder.is_dir() and bool(checkpoints(folder))
        pretrain(load_config(None, (), kind=PretrainConfig, **{**settings["pretrain"], "out": str(folder)}),
                 resume=resume, progress=progress)
        for path in [*checkpoints(folder), folder / BEST]:  # the cells need its encoder only
            path.unlink(missing_ok=True)
    return str(folder)


def cell_config(config: SweepConfig, cell: Cell, init: str | None = None) -> FinetuneConfig:
    """The cell's fine-tuning config; a pretraining arm's backbone is its pretraining's unless set."""
    arm = {k: v for k, v in config.arms[cell.arm].items() if k != "pretrain"}
    pretraining = config.arms[cell.arm].get("pretrain", {})
    preset = recipe(config.finetune_preset, "finetune").values() if config.finetune_preset else {}
    backbone = {"backbone": pretraining["backbone"]} if "backbone" in pretraining else {}
    values = {**preset, **config.finetune, **backbone, **arm,
              "init": init if init is not None else arm.get("init", "random"), "data": config.data,
              "out": str(cell.folder), "label_fraction": cell.fraction, "seed": cell.seed}
    known = {f.name for f in fields(FinetuneConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"arms.{cell.arm} / finetune: unknown fine-tuning keys {unknown}")
    return load_config(None, (), kind=FinetuneConfig, **values)


def _prune(folder: Path) -> None:
    """Drop what the results do not need: optimiser checkpoints, best.pt, TensorBoard logs."""
    for path in folder.iterdir():
        if path.name not in KEPT:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def run_cell(config: SweepConfig, cell: Cell) -> dict:
    """Fine-tune (or resume) and evaluate one cell; its `cell.json`."""
    from cxrfast.train.finetune import finetune

    settings = EvaluationSettings(replicates=config.replicates, seed=cell.seed, level=config.level)
    try:
        finetune_config = cell_config(config, cell, pretrained_init(config, cell.arm))
        resume = cell.folder.is_dir() and bool(checkpoints(cell.folder))
        if cell.folder.is_dir() and not resume:
            shutil.rmtree(cell.folder)  # killed before its first checkpoint: nothing to keep
        finetune(finetune_config, resume=resume, progress=False)
        evaluate_predictions(cell.folder, cell.folder / EVALUATION, settings)
        _prune(cell.folder)
    except (CxrfastError, OSError, ValueError, RuntimeError) as e:  # the cell's failure, reported; others go on
        return failed_cell(cell, f"{type(e).__name__}: {e}", traceback=traceback.format_exc())
    state = {"status": "done", "cell": cell.name}
    write_json(cell.folder / CELL_FILE, state)
    return state


def failed_cell(cell: Cell, error: str, **details) -> dict:
    """Record in the cell's `cell.json` that it failed, and why; the next run tries it again."""
    cell.folder.mkdir(parents=True, exist_ok=True)
    state = {"status": "failed", "cell": cell.name, "error": error, **details}
    write_json(cell.folder / CELL_FILE, state)
    return state


@dataclass(frozen=True)
class SweepReport:
    done: list[str]
    failed: dict[str, str]  # cell -> error
    skipped: list[str]  # done before this run
    results: Path | None


def _worker(slots, jobs: int, gpus: list[str]) -> None:
    """A `--jobs` process: its share of the CPU's threads, and one of the GPUs in turn."""
    slot = slots.get()
    if gpus:  # before CUDA starts in this process: it reads the variable once
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    return given.split(",") if given else [str(k) for k in range(torch.cuda.device_count())]


def _pretrain_arms(config: SweepConfig, todo: list[Cell], console: Console) -> dict[str, str]:
    """The pretraining arms' runs, made or resumed before any of their cells, with their progress
    shown (and so that parallel cells never race to make one); an arm whose pretraining failed ->
    its error, which each of its cells reports."""
    failed = {}
    for arm in dict.fromkeys(cell.arm for cell in todo):
        if "pretrain" not in config.arms[arm]:
            continue
        if not (Path(config.out) / "pretrain" / arm / ENCODER_FILE).is_file():
            console.print(f"pretraining arm {arm} into {Path(config.out) / 'pretrain' / arm}")
        try:
            pretrained_init(config, arm, progress=True)
        except (CxrfastError, OSError, ValueError, RuntimeError) as e:
            failed[arm] = f"pretraining failed: {type(e).__name__}: {e}"
    return failed


def _run_cells(config: SweepConfig, todo: list[Cell], jobs: int):
    """Each cell with its `cell.json` state as it finishes: in this process one after another, or
    in `jobs` processes."""
    if jobs == 1:
        for cell in todo:
            yield cell, run_cell(config, cell)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = multiprocessing.get_context("spawn")  # a forked child would inherit torch's threads
    slots = context.Queue()
    for slot in range(jobs):
        slots.put(slot)
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker,
                             initargs=(slots, jobs, _visible_gpus())) as pool:
        running = {pool.submit(run_cell, config, cell): cell for cell in todo}
        for future in as_completed(running):
            cell = running[future]
            try:
                yield cell, future.result()
            except Exception as e:  # the process itself died (out of memory, a signal): the cell is not done
                yield cell, failed_cell(cell, f"{type(e).__name__}: {e}")


def run_sweep(config: SweepConfig, *, shard: tuple[int, int] = (1, 1), jobs: int = 1, dry_run: bool = False,
              console: Console | None = None) -> SweepReport:
    """Run this shard's cells not yet done, `jobs` at a time, then rewrite the results from every
    done cell."""
    config.check()
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, not {jobs}")
    console = console or Console()
    mine = shard_of(cells(config), shard)
    done_before = [cell.name for cell in mine if cell.state()["status"] == "done"]
    if dry_run:
        for cell in mine:
            console.print(f"{cell.name}: {cell.state()['status']}")
        return SweepReport([], {}, done_before, None)
    Path(config.out).mkdir(parents=True, exist_ok=True)
    done, failed = [], {}
    todo = [cell for cell in mine if cell.name not in done_before]
    pretraining_failed = _pretrain_arms(config, todo, console)
    for cell in [cell for cell in todo if cell.arm in pretraining_failed]:
        failed[cell.name] = failed_cell(cell, pretraining_failed[cell.arm])["error"]
        console.print(f"[red]failed[/red] {cell.name}: {failed[cell.name]}")
    todo = [cell for cell in todo if cell.arm not in pretraining_failed]
    running = f"{min(jobs, len(todo))} at a time" if jobs > 1 else "one at a time"
    with console.status(f"{len(todo)} cells to run, {running}") as status:
        for finished, (cell, state) in enumerate(_run_cells(config, todo, jobs), start=1):
            if state["status"] == "done":
                done.append(cell.name)
                console.print(f"[green]done[/green] {cell.name}")
            else:
                failed[cell.name] = state["error"]
                console.print(f"[red]failed[/red] {cell.name}: {state['error']}")
            status.update(f"{finished}/{len(todo)} cells finished, {running}")
    return SweepReport(done, failed, done_before, write_results(config))


def _done_metrics(config: SweepConfig) -> dict[tuple[str, float, int], dict]:
    found = {}
    for cell in cells(config):
        path = cell.folder / EVALUATION / METRICS_JSON
        if cell.state()["status"] == "done" and path.is_file():
            found[(cell.arm, cell.fraction, cell.seed)] = json.loads(path.read_text())
    return found


def _comparisons(config: SweepConfig, done: dict) -> list[dict]:
    """Each arm against the baseline on the same test images, per fraction and seed: the paired
    bootstrap of the mean AUROC (and DeLong per finding), on the cell's replicates seed."""
    from cxrfast.eval.comparison import compare
    from cxrfast.eval.predictions import Predictions

    baseline = config.baseline_arm
    grid = {(cell.arm, cell.fraction, cell.seed): cell for cell in cells(config)}
    rows = []
    for key, cell in grid.items():
        base = (baseline, cell.fraction, cell.seed)
        if cell.arm == baseline or key not in done or base not in done:
            continue
        base_folder = grid[base].folder
        statistics, _ = compare([Predictions.read(cell.folder / "predictions.csv"),
                                 Predictions.read(base_folder / "predictions.csv")], [cell.arm, baseline],
                                EvaluationSettings(replicates=config.replicates, seed=cell.seed, level=config.level),
                                [cell.folder, base_folder])
        (pair,) = statistics["comparisons"]
        rows.append({"arm": cell.arm, "baseline": baseline, "label_fraction": cell.fraction, "seed": cell.seed,
                     **{f"mean_auroc_{k}": v for k, v in pair["mean_auroc"].items()},
                     "findings": pair["findings"]})
    return rows


def _over_seeds(estimates: list[dict]) -> dict:
    """The mean and standard deviation over seeds of the cells' AUROCs (`value`), and the mean of
    their bootstrap CI bounds; a cell without a defined AUROC is left out."""
    values = [e["value"] for e in estimates if e["value"] is not None]
    bounds = np.array([e["bootstrap_ci"] for e in estimates if None not in e["bootstrap_ci"]], float)
    return {"seeds_done": len(values), "mean_auroc": float(np.mean(values)) if values else math.nan,
            "sd_over_seeds": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
            "ci_lower": float(bounds[:, 0].mean()) if len(bounds) else math.nan,
            "ci_upper": float(bounds[:, 1].mean()) if len(bounds) else math.nan}


def _corrected(rows: list[dict], key: str) -> None:
    """Holm's and Benjamini–Hochberg's corrections of `key` across all of the sweep's rows."""
    from cxrfast.eval.multiple_comparisons import benjamini_hochberg, holm

    p = np.array([row[key] for row in rows], float)
    for row, p_holm, p_bh in zip(rows, holm(p), benjamini_hochberg(p)):
        row[f"{key}_holm"], row[f"{key}_bh"] = float(p_holm), float(p_bh)


def write_results(config: SweepConfig) -> Path:
    """From every done cell:
    - results.csv: per cell, the test mean AUROC with its bootstrap CI, and each finding's AUROC;
    - summary.csv: per arm and fraction, the mean and standard deviation over seeds of the mean
      AUROC, and the mean of the cells' CI bounds; findings.csv: the same per finding;
    - comparisons.csv: each arm against the baseline per fraction and seed, on the same test
      images: the difference of mean AUROC with its paired bootstrap CI and p;
      finding_comparisons.csv: per finding, the difference with DeLong's CI and p. Each p is
      Holm- and BH-corrected across all of the sweep's comparisons of its kind;
    - sweep.json, all of it, which `cxrfast report` draws."""
    done = _done_metrics(config)
    findings = list(next(iter(done.values()))["findings"]) if done else []
    rows = [[arm, fraction, seed, m["mean_auroc"]["value"], *m["mean_auroc"]["bootstrap_ci"],
             *[m["findings"][f]["auroc"] for f in findings]] for (arm, fraction, seed), m in done.items()]
    out = Path(config.out)
    write_table(out / RESULTS_CSV, ["arm", "label_fraction", "seed", "mean_auroc", "ci_lower", "ci_upper",
                                    *[f"{f} auroc" for f in findings]], rows)
    summary, finding_summary = [], []
    for arm in config.arms:
        for fraction in config.label_fractions:
            metrics = [m for (a, f, _), m in done.items() if a == arm and f == fraction]
            summary.append({"arm": arm, "label_fraction": fraction,
                            **_over_seeds([m["mean_auroc"] for m in metrics])})
            finding_summary += [{"arm": arm, "label_fraction": fraction, "finding": finding,
                                 **_over_seeds([{"value": m["findings"][finding]["auroc"],
                                                 "bootstrap_ci": m["findings"][finding]["bootstrap_ci"]}
                                                for m in metrics])} for finding in findings]
    write_table(out / SUMMARY_CSV, list(summary[0]), [list(s.values()) for s in summary])
    write_table(out / FINDINGS_CSV, ["arm", "label_fraction", "finding", *list(summary[0])[2:]],
                [list(s.values()) for s in finding_summary])
    comparisons = _comparisons(config, done)
    _corrected(comparisons, "mean_auroc_bootstrap_p")
    write_table(out / COMPARISONS_CSV,
                ["arm", "baseline", "label_fraction", "seed", "mean_auroc_difference", "ci_lower", "ci_upper",
                 "bootstrap_p", "bootstrap_p_holm", "bootstrap_p_bh"],
                [[c["arm"], c["baseline"], c["label_fraction"], c["seed"], c["mean_auroc_difference"],
                  *c["mean_auroc_bootstrap_ci"], c["mean_auroc_bootstrap_p"], c["mean_auroc_bootstrap_p_holm"],
                  c["mean_auroc_bootstrap_p_bh"]] for c in comparisons])
    finding_comparisons = [{"arm": c["arm"], "baseline": c["baseline"], "label_fraction": c["label_fraction"],
                            "seed": c["seed"], "finding": finding, "auroc_difference": d["difference"],
                            "delong_lower": d["delong_ci"][0], "delong_upper": d["delong_ci"][1],
                            "delong_p": d["delong_p"]}
                           for c in comparisons for finding, d in c.pop("findings").items()]
    _corrected(finding_comparisons, "delong_p")
    write_table(out / FINDING_COMPARISONS_CSV,
                ["arm", "baseline", "label_fraction", "seed", "finding", "auroc_difference", "delong_lower",
                 "delong_upper", "delong_p", "delong_p_holm", "delong_p_bh"],
                [list(c.values()) for c in finding_comparisons])
    write_json(out / SWEEP_JSON, {"findings": findings, "level": config.level, "replicates": config.replicates,
                                  "baseline": config.baseline_arm,
                                  "cells": [{"arm": a, "label_fraction": f, "seed": s, "mean_auroc": m["mean_auroc"]}
                                            for (a, f, s), m in done.items()],
                                  "summary": summary, "finding_summary": finding_summary,
                                  "comparisons": comparisons, "finding_comparisons": finding_comparisons})
    return out / RESULTS_CSV
