"""`prepare --shard K/N` and `--merge N`: parts prepared apart (one of them killed and resumed,
one with an unreadable file) merged into one cache equal to a single run's: the same manifest
rows apart from where each image lies, the same stored pixels, the same errors; a merge refuses
an unfinished part, a part of other settings, and a part that does not hold what it should, and a
merge stopped midway continues."""

from __future__ import annotations

import csv
import os
import shutil

import numpy as np
import pytest

import cxrfast.data.prepare as prepare_module
from cxrfast.cli import main
from cxrfast.data.prepare import merge_parts, part_folder, prepare_cache
from cxrfast.data.prepared_cache import LOCATION, PreparedCache
from cxrfast.errors import DataError
from cxrfast.io.png_writer import write_png


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    for i in range(23):
        write_png(root / f"img{i:02d}.png", np.random.default_rng(i).integers(0, 256, (20, 16), dtype=np.uint8))
    (root / "broken.png").write_bytes(b"not a png")
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _without_location(cache: PreparedCache):
    return [{k: v for k, v in r.items() if k not in LOCATION[1:]} for r in cache.records]


def test_merged_parts_equal_one_run(tmp_path, archive, capsys):
    whole = PreparedCache(prepare_cache(archive, tmp_path / "whole", size=8, workers=0, shard_images=4,
                                        progress=False).root)
    out = tmp_path / "merged"
    for k in (1, 2, 3):
        assert main(["prepare", str(archive), str(out), "--size", "8", "--workers", "0", "--shard", f"{k}/3"]) == 0
        assert part_folder(out, k, 3).is_dir() and not out.exists()
    assert main(["prepare", str(archive), str(out), "--size", "8", "--merge", "3"]) == 0
    assert "23 images cached" in capsys.readouterr().out
    merged = PreparedCache(out)
    assert _without_location(merged) == _without_location(whole)
    for i in range(len(whole)):
        np.testing.assert_array_equal(merged.pixels(i), whole.pixels(i))
    assert _rows(out / "errors.csv") == _rows(tmp_path / "whole" / "errors.csv") != []
    assert not any(part_folder(out, k, 3).exists() for k in (1, 2, 3))


def test_a_merge_checks_its_parts_and_continues_after_a_stop(tmp_path, archive, monkeypatch):
    out = tmp_path / "merged"
    with pytest.raises(DataError, match="part 1/2 of .* is not there"):
        merge_parts(archive, out, 2, size=8, progress=False)  # nothing prepared
    prepare_cache(archive, out, size=8, workers=0, shard_images=3, part=(1, 2), progress=False)
    prepare_cache(archive, out, size=12, workers=0, part=(2, 2), progress=False)
    with pytest.raises(DataError, match=r"part.*2, 2.*not part 2/2"):
        merge_parts(archive, out, 2, size=8, progress=False)
    shutil.rmtree(part_folder(out, 2, 2))
    prepare_cache(archive, out, size=8, workers=0, shard_images=3, part=(2, 2), progress=False)
    os.remove(part_folder(out, 2, 2) / "manifest.csv")
    with pytest.raises(DataError, match="part 2/2 is unfinished"):
        merge_parts(archive, out, 2, size=8, progress=False)
    prepare_cache(archive, out, size=8, workers=0, shard_images=3, part=(2, 2), progress=False)
    (archive / "img99.png").write_bytes((archive / "img00.png").read_bytes())
    with pytest.raises(DataError, match="was the archive changed"):
        merge_parts(archive, out, 2, size=8, progress=False)
    (archive / "img99.png").unlink()
    # A merge stopped after its first shard moves on from there when run again.
    real_replace = os.replace

    def stop_after_one_shard(a, b):
        real_replace(a, b)
        if str(b).endswith(".json"):
            raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module.os, "replace", stop_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        merge_parts(archive, out, 2, size=8, progress=False)
    monkeypatch.setattr(prepare_module.os, "replace", real_replace)
    report = merge_parts(archive, out, 2, size=8, progress=False)
    assert (report.images, report.errors) == (23, 1)
    whole = PreparedCache(prepare_cache(archive, tmp_path / "whole", size=8, workers=0, progress=False).root)
    merged = PreparedCache(out)
    assert _without_location(merged) == _without_location(whole)
    for i in range(len(whole)):
        np.testing.assert_array_equal(merged.pixels(i), whole.pixels(i))


def test_bad_parts_are_refused_on_the_command_line(tmp_path, archive, capsys):
    with pytest.raises(SystemExit):
        main(["prepare", str(archive), str(tmp_path / "c"), "--shard", "4/3"])
    assert "K/N needs 1 ≤ K ≤ N" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["prepare", str(archive), str(tmp_path / "c"), "--shard", "1/2", "--merge", "2"])
