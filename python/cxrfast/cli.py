"""`cxrfast` command line. Subcommands grow with the library; each is a thin layer over the
Python API."""

from __future__ import annotations

import argparse
import functools
import sys
from dataclasses import fields

from rich.console import Console
from rich.table import Table

from cxrfast.errors import ConfigError, CxrfastError


def _header(args) -> int:
    from cxrfast.io import read_header

    console = Console()
    for path in args.files:
        info = read_header(path)
        table = Table(title=str(path), show_header=False)
        for f in fields(info):
            table.add_row(f.name, str(getattr(info, f.name)))
        console.print(table)
    return 0


def _phantoms(args) -> int:
    from cxrfast.data.phantom_archive import write_phantom_archive
    from cxrfast.data.variation import Variation

    labels = write_phantom_archive(args.out, args.count, rows=args.rows, columns=args.columns, seed=args.seed,
                                   transfer_syntax=args.transfer_syntax, bits_stored=args.bits_stored,
                                   variation=Variation.realistic(args.variation), lung_masks=args.lung_masks)
    Console().print(f"{args.count} phantoms and their labels: {labels}")
    return 0


def _part(text: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not K/N") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"{text}: K/N needs 1 ≤ K ≤ N")
    return k, n


def _prepare(args) -> int:
    from cxrfast.data.prepare import merge_parts, prepare_cache

    ct = None
    if args.ct is not None:
        from cxrfast.data.ct_display import CTDisplay
        from cxrfast.data.ct_slices import CTSlices

        ct = CTSlices(CTDisplay.parse(args.ct), args.slice_step, args.min_body_share)
    if args.merge is not None:
        report = merge_parts(args.src, args.out, args.merge, size=args.size, masks=args.masks, ct=ct)
    else:
        report = prepare_cache(args.src, args.out, size=args.size, workers=args.workers, masks=args.masks, ct=ct,
                               part=args.shard)
    console = Console()
    console.print(f"{report.images} images cached in {report.root} ({report.read} read this run)")
    if report.errors:
        console.print(f"[yellow]{report.errors} images could not be read: {report.root / 'errors.csv'}[/yellow]")
    if report.skipped:
        console.print(f"{report.skipped} CT slices left out by the sampling: {report.root / 'skipped.csv'}")
    return 0


def _manifest(args) -> int:
    if args.dataset == "jsrt":
        from cxrfast.data.jsrt import write_jsrt_manifest

        manifest = write_jsrt_manifest(args.images, args.scr, args.out, test_fold=args.test_fold)
    elif args.dataset == "montgomery":
        from cxrfast.data.montgomery import write_montgomery_manifest

        manifest = write_montgomery_manifest(args.root, args.out)
    elif args.dataset == "mimic-reports":
        from cxrfast.data.reports import attach_mimic_reports, left_out_path

        manifest, left_out = attach_mimic_reports(args.manifest, args.reports, args.out, sections=tuple(args.sections),
                                                  drop_priors=args.drop_priors)
        if left_out:
            Console().print(f"[yellow]{len(left_out)} images without a usable report, left out: "
                            f"{left_out_path(manifest)}[/yellow]")
    else:
        from cxrfast.data import ct_datasets

        if args.dataset == "covid-ct":
            manifest = ct_datasets.write_covid_ct_manifest(args.root, args.out)
        elif args.dataset == "split-folders":
            manifest = ct_datasets.write_split_folders_manifest(args.root, args.out)
        else:
            manifest = ct_datasets.write_medmnist_manifest(args.npz, args.out, args.classes)
    with open(manifest, encoding="utf-8") as f:
        rows = sum(1 for _ in f) - 1
    what = {"jsrt": "with their masks", "montgomery": "with their masks", "mimic-reports": "with their reports"}.get(
        args.dataset, "with their labels and splits")
    Console().print(f"{rows} images {what}: {manifest}")
    return 0


def _settings(args):
    from cxrfast.eval.evaluation import EvaluationSettings

    return EvaluationSettings(split=args.split, replicates=args.replicates, seed=args.seed, level=args.level)


def _evaluate(args) -> int:
    import dataclasses
    from pathlib import Path

    from cxrfast.eval.evaluation import evaluate_predictions, predictions_file

    settings, thresholds_from, source = _settings(args), None, Path(args.source)
    console = Console()
    if args.data is not None:
        from cxrfast.train.predict import predict_with_run

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with console.status(f"scoring {args.data} with {args.source}'s classifier"):
            source = predict_with_run(args.source, args.data, out / "scored.csv", split="external",
                                      device=args.device)
        settings, thresholds_from = dataclasses.replace(settings, split="external"), args.source
    elif not predictions_file(source).is_file():
        raise FileNotFoundError(f"{predictions_file(source)}: no predictions; give a finetune run or its CSV")
    with console.status(f"{settings.replicates} bootstrap replicates of {settings.split}"):
        metrics = evaluate_predictions(source, args.out, settings, thresholds_from)
    console.print(f"metrics of the {settings.split} split: {metrics} and {metrics.with_suffix('.csv')}")
    return 0


def _compare(args) -> int:
    from cxrfast.eval.comparison import compare_predictions

    console = Console()
    with console.status(f"comparing {len(args.predictions)} models on {args.replicates} shared bootstrap replicates"):
        statistics = compare_predictions(args.predictions, args.names, args.out, _settings(args))
    console.print(f"comparison of the {args.split} split: {statistics}")
    return 0


def _shard(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise argparse.ArgumentTypeError(f"{text!r}: a shard is K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def _sweep(args) -> int:
    from cxrfast.train.sweep import load_sweep, run_sweep

    console = Console()
    report = run_sweep(load_sweep(args.config, tuple(args.set)), shard=args.shard, jobs=args.jobs,
                       dry_run=args.dry_run, console=console)
    if not args.dry_run:
        console.print(f"{len(report.done)} cells done now, {len(report.skipped)} before, {len(report.failed)} "
                      f"failed; results: {report.results}")
    return 1 if report.failed else 0


def _recipes(args) -> int:
    from cxrfast.train.recipes import recipes

    console, known = Console(), recipes()
    if args.name is None:
        for recipe in known.values():
            console.print(f"[bold]{recipe.name}[/bold] ({recipe.kind}): {recipe.summary}")
        console.print("cxrfast recipes NAME prints one; cxrfast sweep NAME, cxrfast pretrain --preset NAME or "
                      "cxrfast finetune --preset NAME uses it")
        return 0
    if args.name not in known:
        raise ConfigError(f"no recipe {args.name!r}; there are: {', '.join(known)}")
    print(known[args.name].path.read_text(encoding="utf-8"), end="")  # plain, to redirect into a file and edit
    return 0


def _caption(args) -> int:
    from cxrfast.train.captions import captions_with_run

    console = Console()
    with console.status(f"writing a report for every image of {args.data}"):
        out = captions_with_run(args.source, args.data, args.out, beam=args.beam, batch_size=args.batch_size,
                                device=args.device)
    console.print(f"reports: {out}")
    return 0


def _report(args) -> int:
    from cxrfast.eval.report import write_report

    page = write_report(args.folder)
    Console().print(f"report: {page} (and {page.with_suffix('.md')}, the tables in Markdown)")
    return 0


def _statistics_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="the folder to write into")
    parser.add_argument("--split", default="test", help="the split of predictions.csv to evaluate")
    parser.add_argument("--replicates", type=int, default=2000, help="bootstrap replicates (pROC's default)")
    parser.add_argument("--seed", type=int, default=0, help="the bootstrap's seed")
    parser.add_argument("--level", type=float, default=0.95, help="confidence level of every interval")


# Flags for the keys set most often; any other key goes through --set key=value.
_PRETRAIN_FLAGS = ("method", "data", "display", "backbone", "out", "epochs", "batch_size", "image_size", "workers",
                   "device", "loader")
_FINETUNE_FLAGS = ("task", "data", "display", "init", "mode", "backbone", "out", "epochs", "batch_size", "image_size",
                   "label_fraction", "workers", "device")


def _train(args, kind, run) -> int:
    """Shared by pretrain and finetune: the config from file, flags and --set, then the run."""
    from pathlib import Path

    from cxrfast.train import load_config
    from cxrfast.train.recipes import recipe

    flags = {k: getattr(args, k) for k in args.flags if getattr(args, k) is not None}
    config_file = args.config
    if config_file is None and args.resume and args.out is not None:
        config_file = Path(args.out) / "config.yaml"  # a run resumes with the config it saved
    kind_name = "pretrain" if kind.__name__ == "PretrainConfig" else "finetune"
    preset = recipe(args.preset, kind_name).values() if getattr(args, "preset", None) else None
    return run(load_config(config_file, tuple(args.set), kind=kind, preset=preset, **flags), resume=args.resume,
               progress=not args.quiet)


def _pretrain(args) -> int:
    from cxrfast.train import PretrainConfig, pretrain

    result = _train(args, PretrainConfig, pretrain)
    Console().print(f"{result.steps} steps; encoder: {result.encoder}")
    return 0


def _finetune(args) -> int:
    from cxrfast.train import FinetuneConfig, finetune

    Console().print(_train(args, FinetuneConfig, finetune).summary())
    return 0


def _training_parser(commands, name: str, kind, flags: tuple[str, ...], help_text: str, description: str,
                     help_texts: dict[str, str], choices: dict[str, list[str]], run) -> argparse.ArgumentParser:
    defaults = kind()
    parser = commands.add_parser(name, help=help_text, description=f"{description} Flags override the config file; "
                                 f"--set overrides any key. Defaults are {kind.__name__}'s (cxrfast.train.config).")
    parser.add_argument("--config", help="a .toml or .yaml config; flags and --set override it")
    types = {f.name: f.type for f in fields(kind)}
    for key in flags:
        default = getattr(defaults, key)
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, type=_flag_type(types[key]), default=None,
                            choices=choices.get(key), help=f"{help_texts[key]} (default: {default!r})")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key, e.g. --set lr=1e-4 --set method_options.mask_ratio=0.75")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run, flags=flags)
    return parser


def _flag_type(annotation: str):
    return {"int": int, "float": float}.get(annotation, str)


_COMMON_HELP = {"data": "a prepared cache, a folder of images or a manifest CSV", "out": "the run directory",
                "epochs": "passes over the data", "batch_size": "per process", "image_size": "pixels",
                "workers": "loader worker processes", "device": "auto, cpu, cuda or cuda:N",
                "display": "a CT cache of Hounsfield units (prepare --ct hu): the windows the network sees, e.g. lung "
                           "or lung+mediastinum+bone (a channel each), or min_max"}


def _training_parsers(commands) -> None:
    from cxrfast.methods import METHODS
    from cxrfast.models import BACKBONES
    from cxrfast.train.config import LOADERS, MODES, TASKS, FinetuneConfig, PretrainConfig

    backbone = f"one of {', '.join(BACKBONES)} (or any timm model name)"
    pretrain = _training_parser(
        commands, "pretrain", PretrainConfig, _PRETRAIN_FLAGS,
        f"self-supervised pretraining ({', '.join(METHODS)}); resumable", "Self-supervised pretraining.",
        {**_COMMON_HELP, "method": f"one of {', '.join(METHODS)}", "backbone": backbone,
         "loader": f"one of {', '.join(LOADERS)}"},
        {"method": list(METHODS), "loader": list(LOADERS)}, _pretrain)
    pretrain.add_argument("--preset", metavar="NAME", help="a shipped pretraining recipe under the config file "
                          "(cxrfast recipes), e.g. gmml")
    finetune = _training_parser(
        commands, "finetune", FinetuneConfig, _FINETUNE_FLAGS,
        "fine-tune a classifier or a lung segmenter on labelled images, writing predictions; resumable",
        "Fine-tuning on labelled images (findings, or masks for --task segmentation): model selection on validation, "
        "predictions for validation and test.",
        {**_COMMON_HELP, "data": "a prepared cache or a labelled manifest CSV", "backbone": backbone,
         "task": f"one of {', '.join(TASKS)}", "mode": f"one of {', '.join(MODES)}",
         "init": "random, a pretraining run directory, its encoder.safetensors or any state-dict file",
         "label_fraction": "share of the training split's labelled images used (nested, by patient)"},
        {"task": list(TASKS), "mode": list(MODES)}, _finetune)
    finetune.add_argument("--preset", metavar="NAME", help="a shipped fine-tuning preset under the config file "
                          "(cxrfast recipes), e.g. tayebi-arasteh")


def _demo(args) -> int:
    from cxrfast.train.demo import DemoSettings, run_demo

    run_demo(args.out, DemoSettings(images=args.images, size=args.size, epochs=args.epochs, workers=args.workers,
                                    jobs=args.jobs, variation=args.variation, ceiling=args.ceiling))
    return 0


def _transfer_syntax(text: str) -> str:
    from cxrfast.io.dicom_writer import TRANSFER_SYNTAXES, resolve_transfer_syntax

    try:
        resolve_transfer_syntax(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(TRANSFER_SYNTAXES)} or their UIDs") from None
    return text


def _bench(args) -> int:
    from pathlib import Path

    from cxrfast.bench.runner import run_bench
    from cxrfast.bench.suites import SUITES

    suites = list(SUITES) if not args.suites or "all" in args.suites else list(dict.fromkeys(args.suites))
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    results = run_bench(suites, "quick" if args.quick else args.scale, device, Path(args.out))
    return 1 if any(r.error for r in results) else 0


def _bench_suite(text: str) -> str:
    from cxrfast.bench.suites import SUITES

    if text != "all" and text not in SUITES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(SUITES)} or all")
    return text


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrfast", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    command = functools.partial(commands.add_parser, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    header = command("header", help="print the DICOM header fields cxrfast reads")
    header.add_argument("files", nargs="+", help="DICOM files")
    header.set_defaults(run=_header)
    phantoms = command("phantoms", help="write a synthetic DICOM archive with labels (resumable)")
    phantoms.add_argument("out", help="the archive's folder")
    phantoms.add_argument("--count", type=int, default=100, help="radiographs")
    phantoms.add_argument("--rows", type=int, default=512, help="image height in pixels")
    phantoms.add_argument("--columns", type=int, default=None, help="image width in pixels; None: as --rows")
    phantoms.add_argument("--seed", type=int, default=0, help="the phantoms' seed")
    phantoms.add_argument("--transfer-syntax", default="explicit", type=_transfer_syntax,
                          help="a name (explicit, implicit, big_endian, deflated, rle, jpeg2000, jpeg_ls, ...) or a UID")
    phantoms.add_argument("--bits-stored", type=int, default=12, help="Bits Stored")
    phantoms.add_argument("--variation", type=_unit_interval, default=0.0,
                          help="strength in [0, 1] of what varies between real films and is not disease (patient "
                               "size, position and rotation, inspiration, exposure, devices, markers, collimation)")
    phantoms.add_argument("--lung-masks", action="store_true",
                          help="also write each lung mask as <patient>_lungs.png, named in labels.csv's lung_mask")
    phantoms.set_defaults(run=_phantoms)
    prepare = command("prepare", help="read a dataset once into a memory-mapped cache (resumable)")
    prepare.add_argument("src", help="a folder of DICOM/PNG/JPEG files or a manifest CSV with a 'path' column")
    prepare.add_argument("out", help="the cache's folder")
    prepare.add_argument("--size", type=int, default=512, help="shorter side of the cached images")
    prepare.add_argument("--workers", type=int, default=None, help="reading processes; None: one per core")
    prepare.add_argument("--masks", default=None, metavar="COLUMN",
                         help="cache the segmentation masks this manifest column names (e.g. lung_mask) with the images")
    prepare.add_argument("--ct", default=None, metavar="DISPLAY",
                         help="the files are CT slices: order them by series and cache them through this policy: a "
                              "window (lung, mediastinum, soft_tissue, bone, brain, liver), several joined by + as "
                              "channels (lung+mediastinum+bone), min_max (Wolf et al.'s) or hu (int16 Hounsfield "
                              "units, windowed by the training's --display)")
    prepare.add_argument("--slice-step", type=int, default=1, help="with --ct: keep every k-th slice of each series")
    prepare.add_argument("--min-body-share", type=float, default=0.0,
                         help="with --ct: skip slices whose body (above -500 HU) covers less of the image")
    parts = prepare.add_mutually_exclusive_group()
    parts.add_argument("--shard", type=_part, default=None, metavar="K/N",
                       help="prepare part K of N (1 ≤ K ≤ N) beside OUT, e.g. one per Slurm array task; "
                            "then --merge N")
    parts.add_argument("--merge", type=int, default=None, metavar="N",
                       help="make the N parts prepared with --shard one cache in OUT (same settings)")
    prepare.set_defaults(run=_prepare)
    manifest = command("manifest", help="write the manifest of a public lung-mask set or CT slice set")
    sets = manifest.add_subparsers(dest="dataset", required=True)
    jsrt = sets.add_parser("jsrt", help="JSRT's .IMG films with SCR's masks",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    jsrt.add_argument("images", help="JSRT's All247images folder")
    jsrt.add_argument("scr", help="SCR's folder holding fold1/ and fold2/")
    jsrt.add_argument("--test-fold", type=int, default=2, choices=(1, 2), help="the SCR fold tested on")
    jsrt.add_argument("--out", default=None, help="the manifest CSV; None: IMAGES/jsrt.csv")
    for name, what, root, out in (
            ("montgomery", "the Montgomery County set's PNGs with their ManualMask PNGs", "the MontgomerySet folder",
             "montgomery.csv"),
            ("covid-ct", "COVID-CT's CT_COVID/ and CT_NonCOVID/ slices with their split lists",
             "the folder holding the class folders and the Data-split lists", "covid_ct.csv"),
            ("split-folders", "ROOT/<train|val|test>/<class>/ images", "the folder holding train/, val/ and test/",
             "manifest.csv")):
        layout = sets.add_parser(name, help=what, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        layout.add_argument("root", help=root)
        layout.add_argument("--out", default=None, help=f"the manifest CSV; None: ROOT/{out}")
    medmnist = sets.add_parser("medmnist", help="a MedMNIST .npz, written out as PNGs",
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    medmnist.add_argument("npz", help="the .npz file (e.g. organsmnist.npz)")
    medmnist.add_argument("--out", required=True, help="the folder for the PNGs and the manifest")
    medmnist.add_argument("--classes", nargs="+", default=None, help="the class names; None: class_0, class_1, ...")
    reports = sets.add_parser("mimic-reports", help="a manifest of MIMIC-CXR images with each study's report",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    reports.add_argument("manifest", help="a manifest CSV whose path column names images under files/pXX/pN/sN/")
    reports.add_argument("--reports", required=True, help="the folder holding MIMIC-CXR's files/ of report .txt files")
    reports.add_argument("--out", required=True, help="the manifest CSV with a report column")
    reports.add_argument("--sections", nargs="+", default=["FINDINGS", "IMPRESSION"], help="the sections kept, in order")
    reports.add_argument("--drop-priors", action="store_true", help="leave out sentences comparing with prior studies")
    manifest.set_defaults(run=_manifest)
    evaluate = command("evaluate", help="per-finding AUROC with DeLong and bootstrap CIs, AP, operating points")
    evaluate.add_argument("source", metavar="RUN", help="a cxrfast finetune run folder, or a predictions.csv")
    evaluate.add_argument("--data", default=None,
                          help="score this labelled set (cache or manifest) with the run's classifier and evaluate "
                               "that, thresholds chosen on the run's validation split")
    evaluate.add_argument("--device", default="auto", help="where --data is scored: auto, cpu, cuda")
    _statistics_arguments(evaluate)
    evaluate.set_defaults(run=_evaluate)
    caption = command("caption", help="a captioning run's reports of images, for a qualitative look")
    caption.add_argument("source", metavar="RUN", help="a cxrfast pretrain run of method caption")
    caption.add_argument("data", metavar="DATA", help="images: a folder, a manifest CSV or a prepared cache")
    caption.add_argument("--out", required=True, help="the CSV to write: name, report, and the image's own report")
    caption.add_argument("--beam", type=int, default=1, help="beam width; 1: greedy decoding")
    caption.add_argument("--batch-size", type=int, default=32, help="images decoded at once")
    caption.add_argument("--device", default="auto", help="auto, cpu, cuda")
    caption.set_defaults(run=_caption)
    compare = command("compare", help="models on the same images: DeLong and paired bootstrap, corrected p")
    compare.add_argument("predictions", nargs="+", help="predictions.csv files or finetune run folders")
    compare.add_argument("--names", nargs="+", default=None, help="one per model; default: their run folders")
    _statistics_arguments(compare)
    compare.set_defaults(run=_compare)
    sweep = command("sweep", help="arms x label fractions x seeds, fine-tuned and evaluated (resumable)")
    sweep.add_argument("config", help="the sweep's .toml or .yaml, or a shipped recipe's name (cxrfast recipes)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a sweep key")
    sweep.add_argument("--dry-run", action="store_true", help="list this shard's cells and what is done")
    sweep.add_argument("--shard", type=_shard, default=(1, 1), metavar="K/N", help="run every N-th cell from the K-th")
    sweep.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="cells run at once, each in its own process (its share of the CPU threads, a GPU each)")
    sweep.set_defaults(run=_sweep)
    recipes = command("recipes", help="the studies' protocols shipped as configs: list them, or print one")
    recipes.add_argument("name", nargs="?", help="the recipe to print (as TOML, to copy and edit)")
    recipes.set_defaults(run=_recipes)
    report = command("report", help="one self-contained HTML page (and Markdown tables) of evaluate/compare output")
    report.add_argument("folder", help="a folder cxrfast evaluate or cxrfast compare wrote")
    report.set_defaults(run=_report)
    from cxrfast.bench.suites import SUITES

    bench = command("bench", help="cxrfast against its baselines, same run: a table of medians, ratios and memory",
                    description="Each benchmark runs with the baseline a user would otherwise run (pydicom, the naive "
                                "losses, SparK's dense-masked encoder, a torchvision-style loader, scikit-learn loops) "
                                "on generated phantoms, and writes the table as Markdown and JSON. Suites: "
                                + "; ".join(f"{name}: {what}" for name, (_, what) in SUITES.items()) + ".")
    bench.add_argument("suites", nargs="*", type=_bench_suite, metavar="SUITE",
                       help=f"{', '.join(SUITES)} or all (the default)")
    bench.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                       help="auto: cuda where a GPU is seen, where the Triton and CUDA paths join in")
    bench.add_argument("--scale", default="full", choices=("full", "quick", "tiny"),
                       help="full: BENCHMARKS.md's sizes; quick: a few minutes on a laptop; tiny: seconds, a smoke test")
    bench.add_argument("--quick", action="store_true", help="the same as --scale quick")
    bench.add_argument("--out", default="bench-report", help="the folder for bench.md and bench.json")
    bench.set_defaults(run=_bench)
    _training_parsers(commands)
    from cxrfast.train.demo import DemoSettings

    defaults = DemoSettings()
    demo = command("demo", help="phantoms -> cache -> SparK and SimCLR -> a label-efficiency sweep (resumable)")
    demo.add_argument("out", nargs="?", default="demo", help="the demo's folder")
    demo.add_argument("--images", type=int, default=defaults.images, help="phantom radiographs")
    demo.add_argument("--size", type=int, default=defaults.size, help="training image size in pixels")
    demo.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs of each pretraining")
    demo.add_argument("--workers", type=int, default=defaults.workers, help="loader and prepare worker processes")
    demo.add_argument("--jobs", type=int, default=defaults.jobs, help="cells fine-tuned at once, in processes")
    demo.add_argument("--variation", type=_unit_interval, default=defaults.variation,
                      help="strength in [0, 1] of the phantoms' variation of real films (0: none)")
    demo.add_argument("--ceiling", action="store_true",
                      help="first measure each finding's ceiling: supervised, full fine-tuning on every label")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CxrfastError, OSError) as e:  # the user's to fix; anything else is a bug and keeps its traceback
        Console(stderr=True).print(f"[red]error:[/red] {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
