"""JSRT's raw films and SCR's half-resolution masks, in their layout (written here from phantoms:
the sets themselves cannot be redistributed): the films' bytes decoded against `struct` and their
"white is zero" display, the manifest with its folds and its structures' unions, and the masks
scaled up to their films through `MaskFiles`, `prepare` and a segmentation run."""

from __future__ import annotations

import csv
import functools
import os
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from cxrfast.data.area_resize import shrink
from cxrfast.data.jsrt import SHAPE, WHITE, read_jsrt, write_jsrt_manifest
from cxrfast.data.masks import MaskFiles
from cxrfast.data.sources import find_sources, image_shape, load_image
from cxrfast.data.synthetic import make_phantom
from cxrfast.errors import DataError

NAMES = ("JPCLN001", "JPCLN002", "JPCNN001", "JPCNN002", "JPCLN003")
FOLD_OF = (1, 2, 1, 1, 2)


def _write_film(path, display: np.ndarray) -> None:
    """A JSRT film of `display` (0 black, 1 white): 12-bit values, white is zero, big-endian."""
    values = np.rint((1.0 - display) * WHITE).astype(">u2")
    path.write_bytes(values.tobytes())


def _layout(root, side: int = 1024) -> dict[str, np.ndarray]:
    """`root/All247images` and `root/scratch/fold{1,2}/masks/...`: each film a `side`² phantom with
    each pixel doubled (JSRT's 2048² at the default), its masks at `side`² as SCR draws them.
    Returns each image's lungs."""
    (root / "All247images").mkdir(parents=True)
    lungs = {}
    for k, (name, fold) in enumerate(zip(NAMES, FOLD_OF)):
        phantom = make_phantom(k, side, side)
        _write_film(root / "All247images" / f"{name}.IMG", np.kron(phantom.image, np.ones((2, 2), np.float32)))
        left, right = phantom.lung_mask.copy(), phantom.lung_mask.copy()
        left[:, :side // 2], right[:, side // 2:] = False, False  # the patient's left lung is on the image's right
        heart = np.zeros_like(left)
        heart[side // 2:side * 3 // 4, side * 3 // 8:side * 5 // 8] = True
        drawn = {"left lung": left, "right lung": right, "heart": heart}
        for structure in drawn:
            folder = root / "scratch" / f"fold{fold}" / "masks" / structure
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(drawn[structure].astype(np.uint8) * 255).save(folder / f"{name}.gif")
        lungs[name] = phantom.lung_mask
    (root / "All247images" / "CLNDAT_EN.txt").write_text("JPCLN001.IMG\t15\t2\n")  # the set's notes, not an image
    return lungs


@pytest.fixture(scope="module")
def jsrt(module_folder):
    root = module_folder("jsrt")
    return root, _layout(root)


def test_a_film_is_big_endian_12_bit_white_is_zero(tmp_path):
    count = SHAPE[0] * SHAPE[1]
    values = (np.arange(count, dtype=np.int64) * 7919) % 4200  # every 12-bit value, and a few above 4095
    data = values.astype(">u2").tobytes()
    (tmp_path / "JPCNN001.IMG").write_bytes(data)
    display = read_jsrt(tmp_path / "JPCNN001.IMG")
    decoded = np.array(struct.unpack(f">{count}H", data), dtype=np.float64)
    expected = 1.0 - np.minimum(decoded, 4095) / 4095  # 0 is white, 4095 (and above) black
    assert display.dtype == np.float32 and display.shape == (2048, 2048)
    np.testing.assert_allclose(display.ravel(), expected, atol=1e-7)
    assert display.ravel()[values == 0].min() == 1.0 and display.ravel()[values >= 4095].max() == 0.0
    (tmp_path / "short.IMG").write_bytes(data[:-2])
    with pytest.raises(DataError, match=r"short\.IMG: 8388606 bytes; a JSRT \.IMG image is 8388608"):
        load_image(tmp_path / "short.IMG")
    with pytest.raises(DataError, match=r"short\.IMG: 8388606 bytes"):
        image_shape(tmp_path / "short.IMG")


def test_films_are_found_in_a_folder_and_read_as_display_values(jsrt):
    root, _ = jsrt
    sources = find_sources(root / "All247images")
    assert [s.name for s in sources] == [f"{n}.IMG" for n in sorted(NAMES)]
    phantom = make_phantom(NAMES.index("JPCLN002"), 1024, 1024)
    film = load_image(root / "All247images" / "JPCLN002.IMG")
    assert film.metadata == {} and image_shape(root / "All247images" / "JPCLN002.IMG") == (2048, 2048)
    np.testing.assert_allclose(film.pixels[::2, ::2], phantom.image, atol=0.5 / WHITE + 1e-6)


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_the_manifest_names_each_film_with_its_scr_masks(jsrt, tmp_path):
    root, lungs = jsrt
    manifest = write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "manifests" / "jsrt.csv")
    rows = _rows(manifest)
    assert list(rows[0]) == ["path", "patient_id", "lung_mask", "heart_mask", "Nodule", "fold", "split"]
    order = sorted(range(len(NAMES)), key=lambda k: NAMES[k])
    assert [(r["patient_id"], r["Nodule"], r["fold"], r["split"]) for r in rows] == [
        (NAMES[k], str(int("LN" in NAMES[k])), str(FOLD_OF[k]), "test" if FOLD_OF[k] == 2 else "train") for k in order]
    first, relative = rows[0], functools.partial(os.path.relpath, start=manifest.parent)  # as the manifest names files
    assert first["path"] == relative(root / "All247images" / "JPCLN001.IMG")
    masks = root / "scratch" / "fold1" / "masks"
    assert first["lung_mask"] == "|".join(relative(masks / f"{side} lung" / "JPCLN001.gif")
                                          for side in ("left", "right"))
    masks = MaskFiles.from_manifest(manifest, "lung_mask", [image_shape(manifest.parent / r["path"]) for r in rows],
                                    [r["path"] for r in rows])
    for k, row in enumerate(rows):  # 1024² masks on 2048² films: each mask pixel covers 2 × 2 film pixels
        expected = np.kron(lungs[row["patient_id"]], np.ones((2, 2), bool)).astype(np.float32)
        torch.testing.assert_close(masks[k], torch.from_numpy(expected)[None])
    swapped = _rows(write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "f1.csv", test_fold=1))
    assert [r["split"] for r in swapped] == ["train" if r["fold"] == "2" else "test" for r in swapped]


def test_prepare_caches_the_films_and_their_scaled_masks(jsrt, tmp_path):
    from cxrfast.data.prepare import prepare_cache
    from cxrfast.data.prepared_cache import CachedMasks, PreparedCache

    root, lungs = jsrt
    manifest = write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "jsrt.csv")
    report = prepare_cache(manifest, tmp_path / "cache", size=256, workers=0, masks="lung_mask", progress=False)
    assert (report.images, report.errors) == (len(NAMES), 0)
    cache = PreparedCache(tmp_path / "cache")
    masks = CachedMasks(cache)
    for k, row in enumerate(_rows(manifest)):
        film = read_jsrt(tmp_path / row["path"])
        np.testing.assert_allclose(cache[k][0].numpy(), shrink(film, (256, 256)), atol=1 / 65535)
        doubled = np.kron(lungs[row["patient_id"]], np.ones((2, 2), np.float32))
        expected = (shrink(doubled, (256, 256)) >= 0.5).astype(np.float32)
        torch.testing.assert_close(masks[k], torch.from_numpy(expected)[None])


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "scratch/fold2/masks/heart/JPCLN002.gif").unlink(),
     r"JPCLN002\.IMG: no fold2/masks/heart/JPCLN002\.gif"),
    (lambda root: (root / "All247images/JPCNN002.IMG").unlink(),
     r"JPCNN002\.gif: SCR has masks for JPCNN002, but .*All247images has no JPCNN002\.IMG"),
    (lambda root: [(root / f"scratch/fold1/masks/{s}/JPCNN001.gif").unlink() for s in ("left lung", "right lung")],
     r"JPCNN001\.IMG: no SCR masks in"),
    (lambda root: (root / "All247images/scan.img").write_bytes(b""),
     r"scan\.img: not named JPCLN<number>\.IMG or JPCNN<number>\.IMG"),
])
def test_what_does_not_match_is_an_error_naming_it(tmp_path, change, message):
    _layout(tmp_path, side=64)
    change(tmp_path)
    with pytest.raises(DataError, match=message):
        write_jsrt_manifest(tmp_path / "All247images", tmp_path / "scratch")


def test_the_command_line_writes_the_manifest(jsrt, tmp_path, capsys):
    from cxrfast.cli import main

    root, _ = jsrt
    out = tmp_path / "cli.csv"
    assert main(["manifest", "jsrt", str(root / "All247images"), str(root / "scratch"), "--test-fold", "1",
                 "--out", str(out)]) == 0
    assert out.read_text() == write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "api.csv",
                                                  test_fold=1).read_text()
    assert f"{len(NAMES)} images with their masks" in capsys.readouterr().out
    assert main(["manifest", "jsrt", str(root / "All247images"), str(root)]) == 2  # not SCR's folder: a clear error
    assert "give SCR's folder" in capsys.readouterr().err


def test_the_scr_folder_and_test_fold_are_checked(jsrt, tmp_path):
    root, _ = jsrt
    with pytest.raises(DataError, match=r"no fold1/masks/left lung/ folder; give SCR's folder holding fold1/"):
        write_jsrt_manifest(root / "All247images", root)
    with pytest.raises(DataError, match="test_fold must be 1 or 2"):
        write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "m.csv", test_fold=3)


def test_a_segmentation_run_takes_the_manifest_and_scr_folds(jsrt, tmp_path):
    from cxrfast.data.prepare import prepare_cache
    from cxrfast.train import FinetuneConfig, finetune, load_config

    root, _ = jsrt
    manifest = write_jsrt_manifest(root / "All247images", root / "scratch", tmp_path / "jsrt.csv")
    cache = prepare_cache(manifest, tmp_path / "cache", size=64, workers=0, masks="lung_mask", progress=False).root
    config = load_config(None, (), kind=FinetuneConfig, task="segmentation", data=str(cache), out=str(tmp_path / "run"),
                         backbone="resnet18", image_size=64, epochs=1, batch_size=2, workers=0,
                         split_fractions={"train": 0.6, "validate": 0.4, "test": 0.15})  # validation: 1 of fold 1's 3
    result = finetune(config, progress=False)
    split = {r["image"]: r["split"] for r in _rows(tmp_path / "run" / "split.csv")}
    assert {name for name, part in split.items() if part == "test"} == {
        os.path.relpath(root / "All247images" / f"{n}.IMG", manifest.parent) for n, fold in zip(NAMES, FOLD_OF)
        if fold == 2}
    predictions = _rows(tmp_path / "run" / "predictions_segmentation.csv")
    assert {r["split"] for r in predictions} == {"validate", "test"} and all(0 <= float(r["dice"]) <= 1
                                                                            for r in predictions)
    assert np.isfinite(result.losses).all()
