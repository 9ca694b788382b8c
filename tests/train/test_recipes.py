"""The shipped study recipes: listed and printed by `cxrfast recipes`; each sweep recipe, with its
paths filled in, gives cells whose fine-tuning and pretraining configs are valid and carry the
paper's settings; paths left empty or missing are refused before any cell; the fine-tuning preset
reaches a run's optimiser; and the `adam` optimiser, `betas` and the constant schedule are torch's."""

from __future__ import annotations

import tomllib

import pytest
import torch
import yaml

from cxrfast.cli import main
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.synthetic import Finding, Findings
from cxrfast.errors import ConfigError
from cxrfast.train.config import FinetuneConfig, PretrainConfig, load_config
from cxrfast.train.recipes import recipes
from cxrfast.train.sweep import cell_config, cells, load_sweep


def test_the_recipes_are_listed_and_printed(capsys):
    assert {name: r.kind for name, r in recipes().items()} == {
        "byol": "pretrain", "caption": "pretrain", "dino": "pretrain", "gmml": "pretrain", "swav": "pretrain",
        "tayebi-arasteh": "finetune", "tayebi-arasteh-sweep": "sweep", "verma-tapaswi": "sweep", "radtex": "sweep",
        "wolf": "sweep", "wolf-ct": "sweep", "wolf-downstream": "finetune"}
    assert main(["recipes"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in recipes()) and "Verma & Tapaswi" in listed
    assert main(["recipes", "wolf"]) == 0
    assert capsys.readouterr().out == recipes()["wolf"].path.read_text()
    assert main(["recipes", "nothing"]) == 2


def test_a_pretraining_preset_under_flags_and_overrides(tmp_path, phantoms, capsys):
    """`cxrfast pretrain --preset gmml`: the recipe's keys, then the flags and --set over them."""
    small = ["backbone=vit_tiny_patch16_224", "image_size=32", "epochs=1", "batch_size=4", "workers=0",
             "warmup_epochs=0", "method_options.blocks=[6, 12]"]
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "gmml", "--data", str(phantoms), "--out", str(out), "--quiet",
                 *[a for s in small for a in ("--set", s)]]) == 0
    saved = load_config(out / "config.yaml")
    assert (saved.method, saved.clip_grad, saved.clip_grad_mode, saved.weight_decay_end, saved.drop_path) == \
        ("gmml", 3.0, "per_parameter", 0.4, 0.1)
    assert (saved.backbone, saved.image_size, saved.method_options) == ("vit_tiny_patch16_224", 32, {"blocks": [6, 12]})
    assert (out / "encoder.safetensors").is_file()
    assert main(["pretrain", "--preset", "wolf", "--data", str(phantoms), "--out", str(tmp_path / "other")]) == 2
    assert "no pretrain recipe 'wolf'; there are: byol, caption, dino, gmml, swav" in capsys.readouterr().err


@pytest.fixture
def paths(tmp_path):
    (tmp_path / "labelled").mkdir()
    (tmp_path / "unlabelled").mkdir()
    (tmp_path / "imagenet.safetensors").write_bytes(b"")
    return tmp_path


def _sweep(name, paths, *more):
    return load_sweep(name, (f"data={paths / 'labelled'}", f"out={paths / 'out'}",
                             f"variables.unlabelled={paths / 'unlabelled'}", *more))


@pytest.mark.parametrize("name", ["verma-tapaswi", "wolf", "wolf-ct", "radtex"])
def test_each_sweep_recipe_gives_valid_cells(name, paths):
    extra = {"verma-tapaswi": (f"variables.imagenet={paths / 'imagenet.safetensors'}",),
             "radtex": (f"variables.imagenet={paths / 'imagenet.safetensors'}",
                        f"variables.in_domain={paths / 'imagenet.safetensors'}",
                        f"variables.reports={paths / 'unlabelled'}")}.get(name, ())
    config = _sweep(name, paths, *extra)  # checked as it loads
    for arm, settings in config.arms.items():
        cell = next(c for c in cells(config) if c.arm == arm)
        finetune = cell_config(config, cell, init=str(paths / "imagenet.safetensors"))
        finetune.check()
        assert isinstance(finetune, FinetuneConfig) and finetune.data == str(paths / "labelled")
        if "pretrain" in settings:
            pretraining = load_config(None, (), kind=PretrainConfig, **settings["pretrain"], out=str(paths / "p"))
            pretraining.check()
            assert pretraining.data == str(paths / "unlabelled")
    if name.startswith("wolf"):  # Wolf et al.'s downstream settings
        assert (finetune.optimizer, finetune.lr * finetune.batch_size / 256, finetune.batch_size, finetune.epochs,
                finetune.mode, finetune.frozen_epochs, finetune.schedule) == (
                    "adam", pytest.approx(1e-4), 64, 70, "frozen_then_full", 10, "constant")
        assert config.label_fractions[0] == 1.0 and config.arms["spark"]["pretrain"]["method_options"] == {
            "mask_ratio": 0.6}
        assert sorted(config.arms) == ["byol", "moco", "random", "spark", "swav"]
        if name == "wolf-ct":
            assert config.arms["swav"]["pretrain"]["method_options"]["prototypes"] == 500
    elif name == "radtex":  # under 1,000 labels of a 10,000-image split; captioning's VirTex head
        assert sorted(config.arms) == ["caption", "imagenet", "in_domain", "random"] and config.baseline == "imagenet"
        assert max(config.label_fractions) * 10_000 <= 1000
        assert config.arms["caption"]["pretrain"]["method_options"]["width"] == 1024
    else:
        assert config.baseline == "imagenet" and config.arms["imagenet_moco"]["pretrain"]["init_checkpoint"] == str(
            paths / "imagenet.safetensors")


def test_recipe_paths_left_out_or_missing_are_refused_before_any_cell(paths):
    with pytest.raises(ConfigError, match=r"--set variables.imagenet="):
        _sweep("verma-tapaswi", paths)
    with pytest.raises(ConfigError, match=r"arms.imagenet.init: .*nowhere.pth does not exist"):
        _sweep("verma-tapaswi", paths, f"variables.imagenet={paths / 'nowhere.pth'}")
    with pytest.raises(ConfigError, match="no sweep recipe 'tayebi-arasteh'"):
        load_sweep("tayebi-arasteh")
    with pytest.raises(ConfigError, match="no finetune recipe 'wolf'"):
        _sweep("wolf", paths, "finetune_preset=wolf")


def test_a_sweep_takes_the_preset_under_its_own_finetune_keys(paths):
    config = _sweep("wolf", paths, "finetune_preset=tayebi-arasteh", "finetune.optimizer=adam", "finetune.batch_size=64")
    preset = tomllib.loads(recipes()["tayebi-arasteh"].path.read_text())
    finetune = cell_config(config, cells(config)[0])
    assert finetune.pos_weight and finetune.uncertainty == "zeros" and finetune.augment == preset["augment"]
    assert (finetune.optimizer, finetune.batch_size) == ("adam", 64)  # the sweep's own keys win


def test_the_preset_reaches_the_runs_optimiser(tmp_path):
    labels = write_phantom_archive(tmp_path / "data", 24, rows=64, progress=False,
                                   findings=Findings({"Cardiomegaly": Finding(0.5)}))
    out = tmp_path / "run"
    assert main(["finetune", "--preset", "tayebi-arasteh", "--data", str(labels), "--out", str(out),
                 "--backbone", "resnet18", "--image-size", "32", "--epochs", "2", "--batch-size", "4", "--workers", "0",
                 "--set", "findings=['Cardiomegaly']", "--set", "patience=3", "--quiet"]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["betas"], saved["pos_weight"], saved["augment"]["hflip"], saved["patience"]) == ([0.9, 0.999],
                                                                                                  True, 0.5, 3)
    saved = sorted(out.glob("checkpoint-*.pt"))
    assert len(saved) == 2  # one per epoch
    for checkpoint in saved:  # constant: no warm-up, no decay
        groups = torch.load(checkpoint, weights_only=False)["optimizer"]["param_groups"]
        assert {tuple(g["betas"]) for g in groups} == {(0.9, 0.999)} and {g["weight_decay"] for g in groups} == {0.0}
        assert [g["lr"] for g in groups] == pytest.approx([8.5333e-5 * 4 / 256] * len(groups))


def test_adam_and_its_betas_are_torchs():
    from cxrfast.train.optim import create_optimizer

    model = torch.nn.Linear(3, 2)
    for name, betas, expected in (("adam", None, (0.9, 0.999)), ("adamw", None, (0.9, 0.95)),
                                  ("adamw", [0.8, 0.99], (0.8, 0.99))):
        optimiser = create_optimizer(name, [{"params": model.parameters()}], 1e-3, 0.1, betas)
        assert type(optimiser) is {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[name]
        assert {g["betas"] for g in optimiser.param_groups} == {expected}
    with pytest.raises(ConfigError, match="betas: LARS has none"):
        load_config(None, (), optimizer="lars", betas=[0.9, 0.99], data=".").check()


def test_study_cs_sweep_runs_on_small_random_checkpoints(tmp_path):
    """The three initialisations from files in their layouts: a DINOv2-style ViT/14 as transformers
    writes it (ViT-S/14, from 518² to 28²), and two timm ViT-Ti/16s at 32²."""
    from helpers.vit_layouts import huggingface_layout
    from safetensors.torch import save_file

    from cxrfast.models import import_timm
    from cxrfast.train.sweep import SWEEP_JSON, run_sweep

    timm = import_timm()
    torch.manual_seed(0)
    dinov2 = timm.create_model("vit_small_patch14_dinov2", pretrained=False, in_chans=3, num_classes=0, img_size=518)
    save_file(huggingface_layout(dinov2, registers=False), tmp_path / "model.safetensors")
    for name in ("imagenet21k", "mimic"):
        vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, in_chans=3, num_classes=21843)
        torch.save(vit.state_dict(), tmp_path / f"{name}.pth")
    labels = write_phantom_archive(tmp_path / "data", 30, rows=64, progress=False,
                                   findings=Findings({"Cardiomegaly": Finding(0.5)}))
    small = ["arms.dinov2.backbone=vit_small_patch14_dinov2", "arms.imagenet21k.backbone=vit_tiny_patch16_224",
             "arms.mimic.backbone=vit_tiny_patch16_224", "arms.dinov2.image_size=28", "finetune.image_size=32",
             "finetune.epochs=1",
             "finetune.batch_size=4", "finetune.workers=0", "finetune.findings=['Cardiomegaly']", "replicates=200"]
    config = load_sweep("tayebi-arasteh-sweep", (
        f"data={labels}", f"out={tmp_path / 'study-c'}", f"variables.dinov2={tmp_path / 'model.safetensors'}",
        f"variables.imagenet21k={tmp_path / 'imagenet21k.pth'}", f"variables.mimic={tmp_path / 'mimic.pth'}", *small))
    finetune = cell_config(config, cells(config)[0])
    assert (finetune.pool, finetune.pos_weight, finetune.batch_size, finetune.image_size, config.baseline) == (
        "token", True, 4, 28, "imagenet21k")
    report = run_sweep(config, console=None)
    assert not report.failed and len(report.done) == 3
    results = yaml.safe_load((tmp_path / "study-c" / SWEEP_JSON).read_text())
    compared = {c["arm"] for c in results["comparisons"]}
    assert compared == {"dinov2", "mimic"} and results["replicates"] == 200
    inits = {row["arm"]: row for row in results["cells"]}
    assert set(inits) == {"dinov2", "imagenet21k", "mimic"}


def test_study_ds_ct_sweep_runs_on_synthetic_ct(tmp_path):
    """wolf-ct end to end at a tiny size: synthetic CT series prepared with --ct min_max (the
    unlabelled slices and, with each slice's nodule label, the labelled ones), all four methods
    pretrained briefly, fine-tuned with the downstream preset at two fractions, compared with random."""
    from cxrfast.data.ct_display import CTDisplay
    from cxrfast.data.ct_slices import CTSlices
    from cxrfast.data.prepare import prepare_cache
    from cxrfast.data.synthetic_ct import synthetic_ct, write_ct_series
    from cxrfast.train.sweep import SWEEP_JSON, run_sweep

    rows = ["path,patient_id,Nodule,split"]
    for k, split in enumerate(["train"] * 4 + ["validate", "test"]):  # each part with slices of both kinds
        volume = synthetic_ct(8, 32, seed=k, nodules=1)
        paths = write_ct_series(tmp_path / "ct" / f"p{k}", volume, shuffle=True, seed=k, patient_id=f"P{k}")
        rows += [f"p{k}/{p.name},P{k},{int(n)},{split}" for p, n in zip(paths, volume.nodule_slices())]
    (tmp_path / "ct" / "labels.csv").write_text("\n".join(rows) + "\n")
    cache = prepare_cache(tmp_path / "ct" / "labels.csv", tmp_path / "cache", size=32, workers=0, progress=False,
                          ct=CTSlices(CTDisplay.parse("min_max"))).root
    tiny = {"spark": ["method_options.decoder_width=32"],
            "swav": ["method_options.prototypes=16", "method_options.hidden_dim=32", "method_options.feature_dim=8",
                     "method_options.local_crops=2", "method_options.local_size=16"],
            "moco": ["method_options.queue_size=16", "method_options.hidden_dim=32", "method_options.projection_dim=8"],
            "byol": ["method_options.hidden_dim=32", "method_options.projection_dim=8"]}
    small = [f"arms.{arm}.pretrain.{s}" for arm, settings in tiny.items()
             for s in ["backbone=resnet18", "image_size=32", "epochs=1", "batch_size=8", "workers=0", *settings]]
    small += ["finetune.backbone=resnet18", "finetune.image_size=32", "finetune.epochs=2", "finetune.frozen_epochs=1",
              "finetune.batch_size=8", "finetune.workers=0", "finetune.findings=['Nodule']", "label_fractions=[1.0, 0.5]",
              "seeds=[0]", "replicates=200"]
    config = load_sweep("wolf-ct", (f"data={cache}", f"out={tmp_path / 'study-d'}", f"variables.unlabelled={cache}",
                                    *small))
    finetune = cell_config(config, cells(config)[0])
    assert (finetune.mode, finetune.optimizer, finetune.frozen_epochs) == ("frozen_then_full", "adam", 1)
    report = run_sweep(config, console=None)
    assert not report.failed and len(report.done) == 10  # 5 arms × 2 fractions
    results = yaml.safe_load((tmp_path / "study-d" / SWEEP_JSON).read_text())
    assert {c["arm"] for c in results["comparisons"]} == {"spark", "swav", "moco", "byol"}
