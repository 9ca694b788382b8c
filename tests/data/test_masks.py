"""Segmentation masks: the phantoms' lung masks on disk, masks read from a manifest column (one
file or a union), their size checked against the image's, shrunk like the image, and moved with
their image's view."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from cxrfast.data.area_resize import shrink
from cxrfast.data.augment import ViewAugment, resize_center
from cxrfast.data.datasets import ImageFiles, MaskedViews, view_generator
from cxrfast.data.masks import MaskFiles, read_mask
from cxrfast.data.phantom_archive import MASK_COLUMN, write_phantom_archive
from cxrfast.data.synthetic import make_phantom
from cxrfast.errors import DataError


@pytest.fixture(scope="module")
def archive(module_folder):
    out = module_folder("masked")
    return write_phantom_archive(out, 4, rows=72, columns=64, seed=7, lung_masks=True, progress=False)


def _rows(labels) -> list[dict]:
    with open(labels, newline="") as f:
        return list(csv.DictReader(f))


def test_phantoms_write_their_lung_masks(archive):
    rows = _rows(archive)
    assert [r[MASK_COLUMN] for r in rows] == [f"PHANTOM-{7 + k:06d}_lungs.png" for k in range(4)]
    for k, row in enumerate(rows):
        expected = make_phantom(7 + k, 72, 64).lung_mask
        np.testing.assert_array_equal(read_mask([archive.parent / row[MASK_COLUMN]]), expected)
        assert expected.any() and not expected.all()


def test_masks_from_a_manifest_at_the_images_shape_or_shrunk(archive):
    names = [r["path"] for r in _rows(archive)]
    masks = MaskFiles.from_manifest(archive, MASK_COLUMN, [(72, 64)] * 4, names)
    for k in range(4):
        expected = make_phantom(7 + k, 72, 64).lung_mask.astype(np.float32)
        torch.testing.assert_close(masks[k], torch.from_numpy(expected)[None])
    small = MaskFiles.from_manifest(archive, MASK_COLUMN, [(72, 64)] * 4, names, shapes=[(36, 32)] * 4)
    expected = (shrink(make_phantom(7, 72, 64).lung_mask.astype(np.float32), (36, 32)) >= 0.5).astype(np.float32)
    torch.testing.assert_close(small[0], torch.from_numpy(expected)[None])


def test_a_mask_may_be_the_union_of_files(tmp_path):
    whole = np.zeros((10, 12), np.uint8)
    whole[2:8, 1:5] = 255
    whole[3:9, 7:11] = 255
    left, right = whole.copy(), whole.copy()
    left[:, 6:] = 0
    right[:, :6] = 0
    Image.fromarray(left).save(tmp_path / "left.gif")  # JSRT/SCR's masks are GIFs
    Image.fromarray(right).save(tmp_path / "right.png")
    (tmp_path / "m.csv").write_text("path,lungs\nimage.png,left.gif|right.png\n")
    masks = MaskFiles.from_manifest(tmp_path / "m.csv", "lungs", [(10, 12)], ["image.png"])
    np.testing.assert_array_equal(masks[0][0].numpy(), whole > 0)


@pytest.mark.parametrize("text, message", [
    ("path,lungs\nimage.png,\n", r"m\.csv: line 2: lungs is blank"),
    ("path,lungs\nimage.png,missing.png\n", r"m\.csv: line 2: mask .*missing\.png not found"),
    ("path,lungs\nimage.png,mask.png\n", r"mask\.png: a 10×12 mask for the 10×13 image image\.png; a mask must "
                                         "have its image's size or that size divided by a whole factor"),
    ("path,other\nimage.png,mask.png\n", r"missing column\(s\) 'lungs'"),
])
def test_bad_masks_name_the_file(tmp_path, text, message):
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(tmp_path / "mask.png")
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(DataError, match=message):
        MaskFiles.from_manifest(tmp_path / "m.csv", "lungs", [(10, 13)], ["image.png"])


def test_masked_views_move_the_mask_with_the_view(archive):
    names = [r["path"] for r in _rows(archive)]
    images = ImageFiles(archive)
    masks = MaskFiles.from_manifest(archive, MASK_COLUMN, [(72, 64)] * 4, names)
    centred = MaskedViews(images, masks, [2, 0], size=32)
    item = centred[0]
    assert item.index == 2 and item.views[0].shape == item.masks.shape == (1, 32, 32)
    torch.testing.assert_close(item.masks, resize_center(masks[2][None], 32, nearest=True)[0])
    torch.testing.assert_close(item.views[0], resize_center(images[2][None], 32)[0])
    augment = ViewAugment(size=(32, 32), rotation=10.0, hflip=0.5)
    drawn = MaskedViews(images, masks, [2, 0], augment=augment, seed=3)
    batch = drawn[1]
    expected_view, expected_mask = augment.with_masks(images[0][None], masks[0][None], view_generator(3, 0, 0))
    torch.testing.assert_close(batch.views[0], expected_view[0])
    torch.testing.assert_close(batch.masks, expected_mask[0])
    assert set(batch.masks.unique().tolist()) <= {0.0, 1.0}


def test_prepare_caches_the_masks_beside_their_images(archive, tmp_path):
    from cxrfast.data.prepare import prepare_cache
    from cxrfast.data.prepared_cache import CachedMasks, PreparedCache

    report = prepare_cache(archive, tmp_path / "cache", size=32, workers=0, masks=MASK_COLUMN, progress=False)
    assert (report.images, report.errors) == (4, 0)
    cache = PreparedCache(tmp_path / "cache")
    assert cache.masks_column == MASK_COLUMN
    masks = CachedMasks(cache)
    for k in range(4):
        lung = make_phantom(7 + k, 72, 64).lung_mask.astype(np.float32)
        expected = (shrink(lung, (36, 32)) >= 0.5).astype(np.float32)  # the image's shrink, cut at ½
        torch.testing.assert_close(masks[k], torch.from_numpy(expected)[None])
        assert cache[k].shape == masks[k].shape
    plain = prepare_cache(archive, tmp_path / "plain", size=32, workers=0, progress=False).root
    with pytest.raises(DataError, match="prepared without masks"):
        CachedMasks(PreparedCache(plain))
    assert not list(plain.glob("*.mask.u8"))


def test_prepare_reports_an_image_whose_mask_does_not_fit(archive, tmp_path):
    from cxrfast.data.prepare import prepare_cache

    rows = _rows(archive)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(archive.parent / "tiny.png")
    rows[1][MASK_COLUMN] = "tiny.png"
    manifest = archive.parent / "tiny.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = prepare_cache(manifest, tmp_path / "cache", size=32, workers=0, masks=MASK_COLUMN, progress=False)
    assert (report.images, report.errors) == (3, 1)
    errors = _rows(tmp_path / "cache" / "errors.csv")
    assert errors[0]["name"] == rows[1]["path"] and "a 10×10 mask for the 72×64 image" in errors[0]["reason"]
    with pytest.raises(DataError, match="give the manifest CSV, not a folder"):
        prepare_cache(archive.parent, tmp_path / "folder", masks=MASK_COLUMN, workers=0, progress=False)
    with pytest.raises(DataError, match="no column 'heart'"):
        prepare_cache(archive, tmp_path / "heart", masks="heart", workers=0, progress=False)
