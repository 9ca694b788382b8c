"""The prepared cache against independent readings of the same files (pydicom for DICOM, Pillow
for PNG/JPEG, a numpy block mean for the area resize): values, manifest, errors, resumption."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

import cxrfast.data.prepare as prepare_module
from cxrfast.cli import main
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.errors import DataError
from cxrfast.io.dicom_writer import write_dicom
from cxrfast.io.png_writer import write_png

ROWS, COLUMNS, SIZE = 384, 256, 128  # shrinks by exactly 2: the block mean is the area average
STEP = 0.5 / 65535 + 1e-6  # uint16 rounding


def _image(seed: int) -> np.ndarray:
    g = np.random.default_rng(seed)
    return g.random((ROWS, COLUMNS)).astype(np.float32)


def _block_mean(values: np.ndarray, factor: int = 2) -> np.ndarray:
    rows, columns = values.shape
    return values.reshape(rows // factor, factor, columns // factor, factor).mean((1, 3))


def _pydicom_display(path) -> np.ndarray:
    """Window (linear, PS3.3 C.11.2.1.2) and MONOCHROME1 inversion through pydicom's reading."""
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.astype(np.float64)
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    values = np.clip((stored - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    return 1 - values if ds.PhotometricInterpretation == "MONOCHROME1" else values


@pytest.fixture
def dataset(tmp_path):
    """A folder of every kind of source, two unreadable files and one that is no image."""
    src = tmp_path / "src"
    (src / "dicom").mkdir(parents=True)
    expected = {}
    for i, (syntax, photometric) in enumerate([("explicit", "MONOCHROME2"), ("rle", "MONOCHROME1"),
                                               ("jpeg2000", "MONOCHROME2"), ("deflated", "MONOCHROME2")]):
        stored = np.rint(_image(i) * 4095).astype(np.uint16)
        path = write_dicom(src / "dicom" / f"{syntax}.dcm", stored, transfer_syntax=syntax, bits_stored=12,
                           photometric_interpretation=photometric, window=(2048, 4096), patient_id=f"P{i}")
        expected[f"dicom/{syntax}.dcm"] = _pydicom_display(path)
    # A DICOM file without a suffix, recognised by its DICM marker.
    no_suffix = write_dicom(src / "dicom" / "IM0001", np.rint(_image(9) * 4095).astype(np.uint16), bits_stored=12,
                            window=(2048, 4096), patient_id="P9")
    expected["dicom/IM0001"] = _pydicom_display(no_suffix)
    for bits in (8, 16):
        path = write_png(src / f"png{bits}.png", _image(10 + bits), bits=bits)
        expected[f"png{bits}.png"] = np.asarray(Image.open(path), dtype=np.float64) / (2**bits - 1)
    jpeg = src / "photo.jpg"
    Image.fromarray((_image(20) * 255).astype(np.uint8)).save(jpeg, quality=95)
    expected["photo.jpg"] = np.asarray(Image.open(jpeg), dtype=np.float64) / 255
    (src / "dicom" / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    (src / "truncated.png").write_bytes(jpeg.read_bytes()[:200])
    (src / "notes.txt").write_text("not an image")
    return src, {name: _block_mean(values) for name, values in expected.items()}


def _assert_same(got: PreparedCache, expected: PreparedCache) -> None:
    assert [r["name"] for r in got.records] == [r["name"] for r in expected.records]
    for i in range(len(expected)):
        np.testing.assert_array_equal(got.pixels(i), expected.pixels(i))


def test_every_image_equals_its_independent_reading(dataset, tmp_path):
    src, expected = dataset
    report = prepare_cache(src, tmp_path / "cache", size=SIZE, workers=0, shard_images=3, progress=False)
    assert (report.images, report.errors, report.read) == (len(expected), 2, len(expected) + 2)
    cache = PreparedCache(tmp_path / "cache")
    assert sorted(r["name"] for r in cache.records) == sorted(expected)
    for i, record in enumerate(cache.records):
        got = cache[i]
        assert got.shape == (1, ROWS // 2, COLUMNS // 2) and cache.pixels(i).dtype == np.uint16
        np.testing.assert_allclose(got[0].numpy(), expected[record["name"]], atol=STEP, err_msg=record["name"])
        assert (int(record["source_rows"]), int(record["source_columns"])) == (ROWS, COLUMNS)
    patients = {r["name"]: r["patient_id"] for r in cache.records}
    assert patients["dicom/rle.dcm"] == "P1" and patients["dicom/IM0001"] == "P9" and patients["png8.png"] == ""
    with open(tmp_path / "cache" / "errors.csv", newline="") as f:
        errors = {row["name"]: row["reason"] for row in csv.DictReader(f)}
    assert set(errors) == {"dicom/corrupt.dcm", "truncated.png"}
    assert "corrupt.dcm" in errors["dicom/corrupt.dcm"] and "truncated.png" in errors["truncated.png"]


def test_a_killed_run_resumes_where_it_stopped(dataset, tmp_path, monkeypatch):
    src, expected = dataset
    whole = tmp_path / "whole"
    prepare_cache(src, whole, size=SIZE, workers=0, shard_images=2, progress=False)
    write_shard = prepare_module._write_shard
    written = []

    def killed_at_the_third_shard(root, shard, *args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(shard)
        return write_shard(root, shard, *args)

    monkeypatch.setattr(prepare_module, "_write_shard", killed_at_the_third_shard)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache(src, tmp_path / "resumed", size=SIZE, workers=0, shard_images=2, progress=False)
    with pytest.raises(DataError, match="unfinished"):
        PreparedCache(tmp_path / "resumed")
    monkeypatch.setattr(prepare_module, "_write_shard", write_shard)
    loads = []
    monkeypatch.setattr(prepare_module, "load_image", lambda path, f=prepare_module.load_image: loads.append(path)
                        or f(path))
    report = prepare_cache(src, tmp_path / "resumed", size=SIZE, workers=0, shard_images=2, progress=False)
    # The two complete shards held 4 sources (images or failures); failures are tried again.
    first_four = sorted(expected.keys() | {"dicom/corrupt.dcm", "truncated.png"})[:4]
    assert report.read == len(expected) + 2 - sum(name in expected for name in first_four)
    _assert_same(PreparedCache(tmp_path / "resumed"), PreparedCache(whole))


def test_a_second_run_reads_nothing_and_new_files_are_added(dataset, tmp_path):
    src, expected = dataset
    prepare_cache(src, tmp_path / "cache", size=SIZE, workers=0, progress=False)
    assert prepare_cache(src, tmp_path / "cache", size=SIZE, workers=0, progress=False).read == 2  # the failures
    write_png(src / "new.png", _image(30), bits=8)
    report = prepare_cache(src, tmp_path / "cache", size=SIZE, workers=0, progress=False)
    assert (report.read, report.images) == (3, len(expected) + 1)


def test_manifest_csv_sources_carry_their_columns(dataset, tmp_path):
    src, expected = dataset
    manifest = tmp_path / "labels.csv"
    manifest.write_text(f"path,Cardiomegaly\n{src / 'png8.png'},1\nsrc/png16.png,0\n")  # absolute, relative
    prepare_cache(manifest, tmp_path / "cache", size=SIZE, workers=0, progress=False)
    cache = PreparedCache(tmp_path / "cache")
    assert [r["Cardiomegaly"] for r in cache.records] == ["1", "0"]
    np.testing.assert_allclose(cache[1][0].numpy(), expected["png16.png"], atol=STEP)


def test_worker_processes_give_the_same_cache(dataset, tmp_path):
    src, _ = dataset
    prepare_cache(src, tmp_path / "inline", size=SIZE, workers=0, progress=False)
    prepare_cache(src, tmp_path / "pool", size=SIZE, workers=2, progress=False)
    _assert_same(PreparedCache(tmp_path / "pool"), PreparedCache(tmp_path / "inline"))


def test_settings_and_folders_are_checked(dataset, tmp_path):
    src, _ = dataset
    prepare_cache(src, tmp_path / "cache", size=SIZE, workers=0, progress=False)
    assert json.loads((tmp_path / "cache" / "cache.json").read_text())["size"] == SIZE
    with pytest.raises(DataError, match="prepared with"):
        prepare_cache(src, tmp_path / "cache", size=64, workers=0, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("")
    with pytest.raises(DataError, match="not empty"):
        prepare_cache(src, tmp_path / "busy", size=SIZE, workers=0, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM, PNG, JPEG or JSRT .IMG files"):
        prepare_cache(tmp_path / "empty", tmp_path / "other", workers=0, progress=False)
    with pytest.raises(DataError, match="not a prepared cache"):
        PreparedCache(tmp_path / "empty")


def test_images_are_never_enlarged_and_keep_their_aspect(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_png(src / "small.png", np.full((40, 30), 0.25, np.float32))
    write_png(src / "wide.png", np.full((300, 900), 0.75, np.float32))
    prepare_cache(src, tmp_path / "cache", size=100, workers=0, progress=False)
    cache = PreparedCache(tmp_path / "cache")
    assert [tuple(cache[i].shape[1:]) for i in range(2)] == [(40, 30), (100, 300)]


def test_cli_prepare(dataset, tmp_path, capsys):
    src, expected = dataset
    assert main(["prepare", str(src), str(tmp_path / "cache"), "--size", str(SIZE), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert f"{len(expected)} images cached" in out and "2 images could not be read" in out
