"""Downstream CT slice sets as users have them (no downloads: each layout is built here): the
COVID-CT folders with their split lists, split folders of class folders, and MedMNIST arrays,
each turned into a manifest whose rows are checked against what was laid out, read back by the
sources reader and prepared into a cache; and every file left out of a split, listed without a
file or labelled outside the classes is an error naming it."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from cxrfast.cli import main
from cxrfast.data.ct_datasets import write_covid_ct_manifest, write_medmnist_manifest, write_split_folders_manifest
from cxrfast.data.prepare import prepare_cache
from cxrfast.data.prepared_cache import PreparedCache
from cxrfast.data.sources import find_sources
from cxrfast.errors import DataError
from cxrfast.io.png_writer import write_png


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _slice(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(path, np.random.default_rng(seed).integers(0, 256, (24, 20), dtype=np.uint8))


def _covid_ct(root):
    """COVID-CT's layout: two class folders under Images-processed/, lists under Data-split/."""
    expected = {}
    for label, (folder, kind) in enumerate([("CT_NonCOVID", "NonCOVID"), ("CT_COVID", "COVID")]):
        names = {"train": [], "val": [], "test": []}
        for i in range(7):
            name = f"{kind}-{i}.{'png' if i % 2 else 'jpg'}"
            _slice(root / "Images-processed" / folder / name, 10 * label + i)
            part = ("train", "train", "train", "val", "test", "train", "test")[i]
            names[part].append(name)
            expected[f"Images-processed/{folder}/{name}"] = (label, {"val": "validate"}.get(part, part))
        for part, listed in names.items():
            lists = root / "Data-split" / kind / f"{part}{folder}.txt"
            lists.parent.mkdir(parents=True, exist_ok=True)
            lists.write_text("\n".join(listed) + "\n")
    return expected


def test_covid_ct_lists_become_one_column_and_the_splits(tmp_path):
    expected = _covid_ct(tmp_path / "COVID-CT")
    manifest = write_covid_ct_manifest(tmp_path / "COVID-CT", tmp_path / "out" / "covid.csv")
    rows = _rows(manifest)
    assert {r["path"].removeprefix("../COVID-CT/"): (int(r["COVID"]), r["split"]) for r in rows} == expected
    assert len({r["patient_id"] for r in rows}) == len(rows)  # no patient identifiers: a slice each
    sources = find_sources(manifest)
    assert all(s.path.is_file() for s in sources) and len(sources) == 14
    cache = PreparedCache(prepare_cache(manifest, tmp_path / "cache", size=16, workers=0, progress=False).root)
    assert len(cache) == 14 and {r["COVID"] for r in cache.records} == {"0", "1"}


def test_covid_ct_refuses_what_it_cannot_place(tmp_path):
    root = tmp_path / "COVID-CT"
    _covid_ct(root)
    _slice(root / "Images-processed" / "CT_COVID" / "stray.png", 99)
    with pytest.raises(DataError, match="1 images are in no split list: stray.png"):
        write_covid_ct_manifest(root)
    (root / "Images-processed" / "CT_COVID" / "stray.png").unlink()
    lists = root / "Data-split" / "COVID" / "testCT_COVID.txt"
    lists.write_text(lists.read_text() + "gone.png\n")
    with pytest.raises(DataError, match=r"testCT_COVID.txt: line 3: gone.png is not in"):
        write_covid_ct_manifest(root)
    lists.write_text("COVID-0.jpg\n")
    with pytest.raises(DataError, match="COVID-0.jpg is already in the train split"):
        write_covid_ct_manifest(root)
    with pytest.raises(DataError, match="no CT_COVID/ in it"):
        write_covid_ct_manifest(tmp_path / "elsewhere")


def test_split_folders_give_a_column_per_class(tmp_path, capsys):
    root = tmp_path / "brain"
    layout = {("train", "bleed"): 3, ("train", "normal"): 2, ("val", "normal"): 1, ("test", "bleed"): 2}
    for (part, name), count in layout.items():
        for i in range(count):
            _slice(root / part / name / f"{i}.png", i)
    assert main(["manifest", "split-folders", str(root)]) == 0
    assert "8 images with their labels and splits" in capsys.readouterr().out
    rows = _rows(root / "manifest.csv")
    got = {(r["split"], r["path"].split("/")[1]) for r in rows}
    assert got == {({"val": "validate"}.get(p, p), n) for p, n in layout}
    assert all(int(r["bleed"]) + int(r["normal"]) == 1 and int(r[r["path"].split("/")[1]]) == 1 for r in rows)
    (root / "extra").mkdir()
    with pytest.raises(DataError, match="folders extra are not a split"):
        write_split_folders_manifest(root)


def test_medmnist_arrays_become_pngs_and_one_hot_columns(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{p}_images": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8) for p, n in
              (("train", 6), ("val", 2), ("test", 3))}
    arrays.update({f"{p}_labels": rng.integers(0, 4, (len(arrays[f"{p}_images"]), 1)) for p in ("train", "val", "test")})
    arrays["train_labels"][0] = 3  # every class appears
    np.savez(tmp_path / "organsmnist.npz", **arrays)
    names = ["bladder", "femur", "heart", "kidney"]
    manifest = write_medmnist_manifest(tmp_path / "organsmnist.npz", tmp_path / "out", names)
    rows = _rows(manifest)
    assert [r["split"] for r in rows] == ["train"] * 6 + ["validate"] * 2 + ["test"] * 3
    for part in ("train", "val", "test"):
        part_rows = [r for r in rows if r["patient_id"].startswith(part)]
        for i, row in enumerate(part_rows):
            np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / row["path"])),
                                          arrays[f"{part}_images"][i])
            assert [int(row[n]) for n in names] == np.eye(4, dtype=int)[arrays[f"{part}_labels"][i, 0]].tolist()
    with pytest.raises(DataError, match="4 classes, but 2 class names"):
        write_medmnist_manifest(tmp_path / "organsmnist.npz", tmp_path / "again", ["a", "b"])


def test_medmnist_multi_label_and_bad_archives(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (5, 3))
    np.savez(tmp_path / "chest.npz", train_images=rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
             train_labels=labels)
    rows = _rows(write_medmnist_manifest(tmp_path / "chest.npz", tmp_path / "out"))
    assert [[int(r[f"class_{k}"]) for k in range(3)] for r in rows] == labels.tolist()
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.array([[0, 2]] * 2))
    with pytest.raises(DataError, match="outside the classes or 0/1"):
        write_medmnist_manifest(tmp_path / "bad.npz", tmp_path / "bad")
    np.savez(tmp_path / "empty.npz", test_images=np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(DataError, match="no train_images and train_labels"):
        write_medmnist_manifest(tmp_path / "empty.npz", tmp_path / "empty")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(DataError, match="not a NumPy .npz archive"):
        write_medmnist_manifest(tmp_path / "text.npz", tmp_path / "text")
