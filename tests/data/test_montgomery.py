"""The Montgomery set's layout (written here with phantoms: the set itself cannot be
redistributed) as a segmentation manifest whose masks are the union of each image's two lungs."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from cxrfast.data.masks import MaskFiles
from cxrfast.data.montgomery import write_montgomery_manifest
from cxrfast.data.synthetic import make_phantom
from cxrfast.errors import DataError


def _layout(root, count=3):
    for folder in ("CXR_png", "ManualMask/leftMask", "ManualMask/rightMask"):
        (root / folder).mkdir(parents=True)
    lungs = []
    for k in range(count):
        name = f"MCUCXR_{k + 1:04d}_{k % 2}.png"
        phantom = make_phantom(k, 64, 80)
        Image.fromarray((phantom.image * 255).astype(np.uint8)).save(root / "CXR_png" / name)
        left, right = phantom.lung_mask.copy(), phantom.lung_mask.copy()
        left[:, :40], right[:, 40:] = False, False  # the patient's left lung is on the image's right
        Image.fromarray(left.astype(np.uint8) * 255).save(root / "ManualMask/leftMask" / name)
        Image.fromarray(right.astype(np.uint8) * 255).save(root / "ManualMask/rightMask" / name)
        lungs.append(phantom.lung_mask)
    return lungs


def test_the_manifest_names_each_image_with_the_union_of_its_lungs(tmp_path):
    lungs = _layout(tmp_path / "MontgomerySet")
    manifest = write_montgomery_manifest(tmp_path / "MontgomerySet", tmp_path / "manifests" / "mc.csv")
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["patient_id"], r["Tuberculosis"]) for r in rows] == [("MCUCXR_0001", "0"), ("MCUCXR_0002", "1"),
                                                                      ("MCUCXR_0003", "0")]
    assert rows[0]["path"] == "../MontgomerySet/CXR_png/MCUCXR_0001_0.png"
    masks = MaskFiles.from_manifest(manifest, "lung_mask", [(64, 80)] * 3, [r["path"] for r in rows])
    for k, lung in enumerate(lungs):
        torch.testing.assert_close(masks[k], torch.from_numpy(lung.astype(np.float32))[None])


def test_an_image_without_its_masks_is_an_error(tmp_path):
    _layout(tmp_path)
    (tmp_path / "ManualMask/rightMask/MCUCXR_0002_1.png").unlink()
    with pytest.raises(DataError, match=r"MCUCXR_0002_1\.png: no ManualMask/rightMask/MCUCXR_0002_1\.png"):
        write_montgomery_manifest(tmp_path)
    with pytest.raises(DataError, match="no CXR_png/ folder"):
        write_montgomery_manifest(tmp_path / "ManualMask")


def test_the_command_line_writes_the_manifest(tmp_path, capsys):
    from cxrfast.cli import main

    _layout(tmp_path / "MontgomerySet")
    assert main(["manifest", "montgomery", str(tmp_path / "MontgomerySet")]) == 0
    assert "3 images with their masks" in capsys.readouterr().out
    assert (tmp_path / "MontgomerySet" / "montgomery.csv").read_text() == write_montgomery_manifest(
        tmp_path / "MontgomerySet", tmp_path / "MontgomerySet" / "api.csv").read_text()
