"""`finetune()` end to end on phantoms: what each mode may and may not move, where the learning
rates go, which images each part gets, what the run writes, and the errors a user gets before
any training starts."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cxrfast.cli import main
from cxrfast.data.augment import resize_center
from cxrfast.data.datasets import ImageFiles
from cxrfast.data.labels import LabelTable
from cxrfast.data.phantom_archive import write_phantom_archive
from cxrfast.data.sources import Source
from cxrfast.data.synthetic import Finding, Findings
from cxrfast.errors import ConfigError, DataError
from cxrfast.eval import Predictions
from cxrfast.models import create_backbone, export_encoder, import_timm
from cxrfast.models.backbones import read_state_dict
from cxrfast.train import FinetuneConfig, Finetuning, finetune, load_config
from cxrfast.train.checkpoint import checkpoints

FINDINGS = ["Cardiomegaly", "Pleural Effusion"]


@pytest.fixture(scope="module")
def labelled(module_folder):
    """40 phantoms (one per patient) with common cardiomegaly and effusion: every part of a
    20/10/10 split has both classes of both; and their lung masks."""
    out = module_folder("labelled")
    return write_phantom_archive(out, 40, rows=64, progress=False, lung_masks=True,
                                 findings=Findings({"Cardiomegaly": Finding(0.5), "Pleural Effusion": Finding(0.4)}))


def _config(labels, out, **values) -> FinetuneConfig:
    options = dict(data=str(labels), out=str(out), backbone="resnet18", image_size=32, epochs=2, batch_size=5,
                   workers=0, findings=FINDINGS, split_fractions={"train": 0.5, "validate": 0.25, "test": 0.25})
    return load_config(None, (), kind=FinetuneConfig, **{**options, **values})


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def encoder(module_folder):
    """A known starting encoder: a seeded random ResNet-18 exported as a pretraining run would."""
    torch.manual_seed(123)
    return export_encoder(create_backbone("resnet18"), module_folder("encoder") / "encoder.safetensors")


def _backbone_part(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def test_linear_mode_leaves_the_backbone_bitwise_unchanged(labelled, encoder, tmp_path):
    result = finetune(_config(labelled, tmp_path / "run", mode="linear", init=str(encoder), epochs=3, lr=0.05),
                      progress=False)
    start, exported = read_state_dict(encoder), read_state_dict(result.classifier)
    assert _backbone_part(exported).keys() == start.keys()  # weights and batch-norm statistics alike
    for name, value in start.items():
        assert torch.equal(exported[name], value), name
    # The exported classifier is timm's: loaded by timm it gives the scores predictions.csv holds.
    model = import_timm().create_model("resnet18", in_chans=1, num_classes=2, checkpoint_path=str(result.classifier)).eval()
    predictions = Predictions.read(result.predictions)
    images = ImageFiles([Source(labelled.parent / name, name) for name in predictions.images])
    view = torch.stack([resize_center(images[k][None], 32)[0] for k in range(len(images))])
    with torch.no_grad():
        scores = torch.sigmoid(model(view)).double().numpy()
    np.testing.assert_allclose(scores, predictions.scores, rtol=1e-5, atol=1e-6)
    assert predictions.scores.std(0).min() > 0  # the classifier trained: scores differ between images
    assert sorted(set(predictions.splits)) == ["test", "validate"] and len(predictions.images) == 20


def test_frozen_then_full_moves_the_backbone_only_after_k_epochs(labelled, encoder, tmp_path):
    run = tmp_path / "run"
    finetune(_config(labelled, run, mode="frozen_then_full", frozen_epochs=1, init=str(encoder), epochs=2,
                     backbone_lr=1e-4, lr=4e-4, checkpoint_every=1000, keep_checkpoints=5, patience=None),
             progress=False)
    after_frozen, after_full = (torch.load(p, weights_only=False) for p in checkpoints(run))  # one per epoch
    start = read_state_dict(encoder)
    for name, value in start.items():
        assert torch.equal(after_frozen["model"][f"model.{name}"], value), name  # weights and statistics
    moved = [name for name, value in start.items() if not torch.equal(after_full["model"][f"model.{name}"], value)]
    assert "conv1.weight" in moved and "bn1.running_mean" in moved and "layer4.1.conv2.weight" in moved
    assert not torch.equal(after_frozen["model"]["model.fc.weight"], after_full["model"]["model.fc.weight"])
    # The backbone's own groups run at backbone_lr / lr of the classifier's rate, really in the optimiser.
    groups = after_full["optimizer"]["param_groups"]
    head = groups[0]["lr"]
    assert all(g["lr"] == pytest.approx(head * 0.25) for g in groups[2:]) and head > 0
    assert len(after_full["optimizer"]["state"]) == sum(len(g["params"]) for g in groups)  # every one has stepped


def test_layer_decay_sets_each_vit_layers_rate(labelled, tmp_path):
    run = tmp_path / "run"
    finetune(_config(labelled, run, backbone="vit_tiny_patch16_224", image_size=32, epochs=1, layer_decay=0.75,
                     backbone_lr=2e-4, lr=4e-4, select_on="loss"), progress=False)
    state = torch.load(checkpoints(run)[-1], weights_only=False)
    from cxrfast.train.classification import Classification
    from cxrfast.train.layer_decay import vit_layer

    model = create_backbone("vit_tiny_patch16_224", img_size=32)
    objective = Classification.for_backbone(model, FINDINGS, layer_decay=0.75, backbone_lr_factor=0.5)
    names = {id(p): n for n, p in objective.named_parameters()}
    groups = state["optimizer"]["param_groups"]
    head_lr = groups[0]["lr"]
    ordered = [p for group in objective.parameter_groups() for half in (True, False)
               for p in group["params"] if (p.ndim > 1) == half]
    flat = [i for g in groups for i in g["params"]]
    assert len(flat) == len(ordered)
    lr_of = {i: g["lr"] for g in groups for i in g["params"]}
    for index, parameter in zip(flat, ordered, strict=True):
        name = names[id(parameter)].removeprefix("model.")
        # MAE: L = depth + 1 = 13; embeddings layer 0, block i layer i + 1, the rest layer L.
        expected = 1.0 if name.startswith("head.") else 0.5 * 0.75 ** (13 - vit_layer(name, 12))
        assert lr_of[index] == pytest.approx(head_lr * expected), name
    assert {vit_layer("patch_embed.proj.weight", 12), vit_layer("blocks.11.mlp.fc1.weight", 12),
            vit_layer("norm.weight", 12)} == {0, 12, 13}


def test_label_fractions_are_nested_and_patient_disjoint_from_validation_and_test(labelled, tmp_path):
    def parts(fraction):
        Finetuning(_config(labelled, tmp_path / str(fraction), label_fraction=fraction), progress=False)
        rows = _rows(tmp_path / str(fraction) / "split.csv")
        return {name: {r["patient_id"] for r in rows if r["split"] == name}
                for name in ("train", "unused", "validate", "test")}

    small, half, whole = parts(0.3), parts(0.6), parts(1.0)
    assert small["train"] < half["train"] < whole["train"]
    for p in (small, half, whole):
        assert not p["train"] & (p["validate"] | p["test"]) and not p["validate"] & p["test"]
        assert p["validate"] == whole["validate"] and p["test"] == whole["test"]  # the same split whatever the fraction
        assert len(p["train"] | p["unused"] | p["validate"] | p["test"]) == 40
    assert abs(len(small["train"]) - 0.3 * 20) <= 2  # 20 training patients
    again = parts(0.3)
    assert again == small  # reproducible from the seed


def test_pos_weight_is_negatives_over_positives_of_the_training_images(labelled, tmp_path):
    run = Finetuning(_config(labelled, tmp_path / "run", pos_weight=True, label_fraction=0.6), progress=False)
    table = LabelTable.read_manifest(labelled, FINDINGS)
    train = {r["image"] for r in _rows(tmp_path / "run" / "split.csv") if r["split"] == "train"}
    values = table.values[[k for k, p in enumerate(table.paths) if p in train]]
    expected = (values == 0).sum(0) / (values == 1).sum(0)
    np.testing.assert_allclose(run.objective.pos_weight.numpy(), expected, rtol=1e-6)


def test_an_official_split_column_is_used(labelled, tmp_path):
    rows = _rows(labelled)
    for k, row in enumerate(rows):
        row["split"] = "test" if k < 10 else "train"  # no validate: carved from train by patient
    manifest = labelled.parent / "official.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    Finetuning(_config(manifest, tmp_path / "run"), progress=False)
    parts = {r["image"]: r["split"] for r in _rows(tmp_path / "run" / "split.csv")}
    assert {image for image, part in parts.items() if part == "test"} == {r["path"] for r in rows[:10]}
    assert sum(part == "validate" for part in parts.values()) > 0
    rows[11]["patient_id"] = rows[0]["patient_id"]  # one patient on both sides
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(DataError, match=r"official\.csv: patient 'PHANTOM-000000' is in both the train and the test"):
        Finetuning(_config(manifest, tmp_path / "again"), progress=False)


def test_single_label_classes_train_with_softmax(labelled, tmp_path):
    rows = _rows(labelled)
    classes = ["covid", "pneumonia", "normal"]
    manifest = labelled.parent / "classes.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "patient_id", *classes])
        for k, row in enumerate(rows):
            writer.writerow([row["path"], row["patient_id"], *[int(k % 3 == c) for c in range(3)]])
    result = finetune(_config(manifest, tmp_path / "run", findings=classes, single_label=True, epochs=1),
                      progress=False)
    predictions = Predictions.read(result.predictions)
    np.testing.assert_allclose(predictions.scores.sum(1), 1, rtol=1e-6)
    assert predictions.findings == tuple(classes)
    with open(manifest, "a") as f:
        f.write("extra.dcm,EXTRA,1,1,0\n")
    with pytest.raises(DataError, match="classes.csv"):
        Finetuning(_config(manifest, tmp_path / "bad", findings=classes, single_label=True), progress=False)


def test_outputs_of_a_run(labelled, tmp_path):
    result = finetune(_config(labelled, tmp_path / "run", epochs=3, patience=1, lr=1e-6, warmup_epochs=0),
                      progress=False)
    run = tmp_path / "run"
    summary = json.loads((run / "run.json").read_text())
    validation = _rows(run / "validation.csv")
    best = max(validation, key=lambda r: float(r["mean_auroc"]))
    assert summary["best_epoch"] == result.best_epoch == int(best["epoch"])
    assert summary["epochs_run"] == len(validation) <= 3
    assert summary["stopped_early"] == (len(validation) < 3)  # patience 1: one epoch without a better AUROC
    assert summary["images"] == {"train": 20, "unused": 0, "validate": 10, "test": 10}
    assert summary["init"] == {"init": "random", "backbone": "resnet18"}
    predictions = Predictions.read(result.predictions)
    from cxrfast.eval.auroc import per_finding_auroc
    from cxrfast.eval.thresholds import per_finding, youden_threshold

    validate = predictions.split("validate")
    targets, known = validate.known()
    np.testing.assert_allclose(per_finding_auroc(validate.scores, targets, known), [float(best[f]) for f in FINDINGS],
                               atol=1e-6)  # predictions are of the selected epoch
    thresholds = json.loads((run / "thresholds.json").read_text())
    np.testing.assert_array_equal(per_finding(youden_threshold, validate.scores, targets, known),
                                  [thresholds[f] for f in FINDINGS])


@pytest.mark.parametrize("change, error, message", [
    ({"findings": ["Edema"]}, DataError, r"labels\.csv: line 1: missing column\(s\) 'Edema'"),
    ({"label_fraction": 0.05}, DataError, r"labels\.csv \(label_fraction 0\.05.*no known (positive|negative) of"),
    ({"init": "ENCODER_50"}, ConfigError, r"encoder50\.safetensors: does not fit"),
    ({"layer_decay": 0.75}, ConfigError, "layer_decay: applies to ViTs"),
    ({"mode": "partial"}, ConfigError, "mode must be one of linear, full, frozen_then_full"),
    ({"mode": "frozen_then_full"}, ConfigError, "frozen_epochs: give at least 1"),
    ({"uncertainty_per_finding": {"Edema": "ones"}}, ConfigError, "uncertainty: per_finding names 'Edema'"),
    ({"split": "official"}, DataError, "split official, but the labels have no split column"),
    ({"augment": {"flip": 0.5}}, ConfigError, "augment: .*unexpected keyword argument 'flip'"),
    ({"augment": {"rotation": 400}}, ConfigError, r"augment: ViewAugment\.rotation = 400 is out of range"),
])
def test_bad_input_fails_before_training(labelled, tmp_path, change, error, message):
    if change.get("init") == "ENCODER_50":
        change = {"init": str(export_encoder(create_backbone("resnet50"), tmp_path / "encoder50.safetensors"))}
    out = tmp_path / "run"
    with pytest.raises(error, match=message):
        finetune(_config(labelled, out, **change), progress=False)
    assert not out.exists()  # nothing written, not even the config


def _cli_arguments(labels, out, task: str = "classification") -> list[str]:
    settings = ["epochs=3", "batch_size=4", "image_size=32", "workers=0", "checkpoint_every=1", "keep_checkpoints=2",
                "log_every=1", "patience=none", "findings=['Cardiomegaly', 'Pleural Effusion']",
                "split_fractions={train = 0.5, validate = 0.25, test = 0.25}"]
    return ["--data", str(labels), "--task", task, "--backbone", "resnet18", "--out", str(out), "--quiet",
            *[a for s in settings for a in ("--set", s)]]


# What each task writes from the selected model: its predictions, logs and weights.
_OUTPUTS = {"classification": ("predictions.csv", "thresholds.json", "classifier.safetensors"),
            "segmentation": ("predictions_segmentation.csv", "segmenter.safetensors")}


@pytest.mark.parametrize("task", sorted(_OUTPUTS))
def test_killed_and_resumed_run_equals_an_uninterrupted_one(labelled, tmp_path, one_thread, task):
    """SIGKILL mid-run, then `--resume`: the same weights, validation log and predictions, bitwise."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert main(["finetune", *_cli_arguments(labelled, whole, task)]) == 0
    command = [sys.executable, "-m", "cxrfast.cli", "finetune", *_cli_arguments(labelled, killed, task)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoint-00000007.pt").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 7 <= int(checkpoints(killed)[-1].stem.split("-")[1]) < 15  # 5 steps per epoch, 3 epochs
    assert main(["finetune", *_cli_arguments(labelled, killed, task), "--resume"]) == 0
    *written, weights = _OUTPUTS[task]
    for name in (*written, "validation.csv", "split.csv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
    steps = lambda run: [(r["step"], r["loss"], r["lr"]) for r in _rows(run / "metrics.csv")]  # noqa: E731
    assert steps(killed) == steps(whole)  # every step's loss, those after the resume too (not its speed)
    resumed, uninterrupted = (read_state_dict(run / weights) for run in (killed, whole))
    assert resumed.keys() == uninterrupted.keys()  # (safetensors writes its metadata in no fixed order)
    for name, value in uninterrupted.items():
        assert torch.equal(resumed[name], value), name
