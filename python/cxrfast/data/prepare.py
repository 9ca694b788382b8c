"""`prepare_cache`: read every image of a dataset once, shrink it, and write the prepared cache
(`cxrfast.data.prepared_cache` describes the layout).

Images are read and shrunk in worker processes (spawned: forking a process that has run torch's
thread pools can deadlock) and written by this one, shard by shard, in source order. A shard is
complete once its index is renamed into place, so a run killed at any moment loses at most the
shard it was writing, and running again continues: images already in a complete shard are not
read again, new images in the source are added, and images that failed are tried again (a fixed
file gets in). An image that cannot be read is recorded with its reason and the rest proceeds.

With `masks` (a manifest column naming each image's segmentation mask, as `cxrfast.data.masks`
reads it), each mask is read with its image, checked to fit the image's size (its own, or a whole
fraction of it, scaled up), shrunk as the image is (area mean, cut at ½) and stored beside it as
uint8 0/1; an image whose mask is missing or does not fit is recorded as an error like an
unreadable one.

With `ct` (`cxrfast.data.ct_slices.CTSlices`), the DICOM files are CT slices: ordered by series
along the slice normal, sampled, windowed by the display policy, which the cache's settings
record; slices left out are listed in `skipped.csv` with the reason.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.progress import Progress

from cxrfast.atomic import atomic_path, write_text_atomically
from cxrfast.data.area_resize import shorter_side_shape, shrink
from cxrfast.data.ct_slices import CTSlices, load_slice, plan_slices
from cxrfast.data.loader import one_native_thread
from cxrfast.data.masks import SEPARATOR, fit_mask, read_mask
from cxrfast.data.prepared_cache import (ERRORS_FILE, LOCATION, MANIFEST_FILE, MASK_DTYPE, SETTINGS_FILE,
                                         SKIPPED_FILE, PixelEncoding, mask_path, shard_paths)
from cxrfast.data.sources import Source, find_sources, load_image
from cxrfast.errors import DataError

SHARD_IMAGES = 256


@dataclass(frozen=True)
class PrepareReport:
    root: Path
    images: int  # cached, this run and earlier ones
    errors: int  # unreadable, listed in errors.csv
    read: int  # images (and failures) this run read; the rest came from earlier runs
    skipped: int = 0  # CT slices left out by the sampling, listed in skipped.csv


def _load(item: tuple[Path, list[Path] | None, int | None], size: int, ct: CTSlices | None,
          encoding: PixelEncoding) -> tuple:
    """In a worker: ("ok", stored pixels (channels, rows, columns), metadata, source shape, uint8
    mask or None), ("error", reason) or ("skipped", reason)."""
    path, mask_files, frame = item
    try:
        if ct is None:
            image = load_image(path)
            pixels, metadata = image.pixels[None], image.metadata
        else:
            pixels, body, metadata = load_slice(path, ct, frame)
            if body < ct.min_body_share:
                return "skipped", f"body covers {body:.3f} of the slice, under min_body_share {ct.min_body_share}"
        source_shape = pixels.shape[1:]
        shape = shorter_side_shape(*source_shape, size)
        stored = encoding.encode(np.stack([shrink(channel, shape) for channel in pixels]))
        mask = None
        if mask_files is not None:
            inside = fit_mask(read_mask(mask_files), source_shape, f"mask {SEPARATOR.join(map(str, mask_files))}",
                              str(path))
            mask = (shrink(inside.astype(np.float32), shape) >= 0.5).astype(MASK_DTYPE)
        return "ok", stored, metadata, source_shape, mask
    except Exception as e:  # noqa: BLE001 — any failure of one file is that file's error, not the run's
        return "error", f"{type(e).__name__}: {e}"


def prepare_cache(src: str | os.PathLike, out: str | os.PathLike, *, size: int = 512, workers: int | None = None,
                  shard_images: int = SHARD_IMAGES, masks: str | None = None, ct: CTSlices | None = None,
                  part: tuple[int, int] | None = None, progress: bool = True) -> PrepareReport:
    """Prepare (or finish preparing) the cache of the images under `src` (a folder or a manifest
    CSV) in `out`, shorter sides shrunk to `size`, with the masks the manifest's column `masks`
    names, or as CT slices with `ct`. `workers`: reading processes (default: the cores; 0 reads
    in this process).

    `part` = (k, n) prepares only part k of n (every n-th image from the k-th, 1 ≤ k ≤ n) into
    its own folder beside `out` (`part_folder`), so n machines can share one archive;
    `merge_parts` then makes them one cache in `out`."""
    if size < 1 or shard_images < 1:
        raise ValueError("size and shard_images must be positive")
    settings = _settings(src, size, masks, ct)
    sources, mask_files, planned = _sources(src, masks, ct, progress)
    root = Path(out)
    if part is not None:
        k, n = _check_part(part)
        root, sources = part_folder(out, k, n), sources[k - 1::n]
        settings, planned = {**settings, "part": [k, n]}, {"skipped": {}, "errors": {}}  # the merge lists them
    root.mkdir(parents=True, exist_ok=True)
    _claim(root, settings)
    shards = _complete_shards(root)
    done = {item["name"] for index in shards.values() for item in index["images"] + index.get("skipped", [])}
    todo = [s for s in sources if s.name not in done]
    workers = (os.cpu_count() or 1) if workers is None else workers
    encoding = PixelEncoding.of(settings)
    load = partial(_load, size=size, ct=ct, encoding=encoding)
    with Progress(disable=not progress) as bar, _Workers(workers, len(todo)) as pool:
        task = bar.add_task(f"prepare → {root}", total=len(sources), completed=len(sources) - len(todo))
        mapper = pool.imap if pool is not None else map
        for start in range(0, len(todo), shard_images):
            chunk = todo[start:start + shard_images]
            shard = max(shards, default=-1) + 1
            results = mapper(load, [(s.path, mask_files.get(s.name), s.frame) for s in chunk])
            shards[shard] = _write_shard(root, shard, chunk, results, lambda: bar.advance(task), bool(masks),
                                         encoding)
    images, errors, skipped = _write_manifest(root, sources, shards, **planned)
    return PrepareReport(root, images, errors, len(todo), skipped)


def part_folder(out: str | os.PathLike, k: int, n: int) -> Path:
    """Where part k of n of the cache `out` is prepared: a folder beside it."""
    out = Path(out)
    return out.with_name(f"{out.name}.part-{k}-of-{n}")


def merge_parts(src: str | os.PathLike, out: str | os.PathLike, parts: int, *, size: int = 512,
                masks: str | None = None, ct: CTSlices | None = None, progress: bool = True) -> PrepareReport:
    """Make the `parts` parts prepared with the same settings one cache in `out`: each part
    checked (finished, its settings, the images it was to hold), its shards moved in and numbered
    on, the manifest written in source order, the part folders removed. A merge that stops
    midway continues when run again."""
    _check_part((1, parts))
    settings = _settings(src, size, masks, ct)
    sources, _, planned = _sources(src, masks, ct, progress)
    encoding = PixelEncoding.of(settings)
    root = Path(out)
    folders = [part_folder(out, k, parts) for k in range(1, parts + 1)]
    merged = {item["name"] for index in _complete_shards(root).values()  # by a merge that stopped midway
              for item in index["images"] + index["errors"] + index.get("skipped", [])} if root.is_dir() else set()
    for k, folder in enumerate(folders, start=1):
        wanted = {s.name for s in sources[k - 1::parts]}
        if not folder.exists():
            if wanted <= merged:
                continue  # merged already
            raise DataError(f"{folder}: part {k}/{parts} of {settings} is not there; prepare it with "
                            f"`cxrfast prepare --shard {k}/{parts}`")
        found = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8")) if (
            folder / SETTINGS_FILE).is_file() else None
        if found != {**settings, "part": [k, parts]}:
            raise DataError(f"{folder}: prepared with {found}, not part {k}/{parts} of {settings}")
        if not (folder / MANIFEST_FILE).is_file():
            raise DataError(f"{folder}: part {k}/{parts} is unfinished; run its `cxrfast prepare --shard {k}/{parts}` "
                            "again")
        held = {item["name"] for index in _complete_shards(folder).values()
                for item in index["images"] + index["errors"] + index.get("skipped", [])}
        if held | (merged & wanted) != wanted:
            raise DataError(f"{folder}: part {k}/{parts} holds {len(held & wanted)} of its {len(wanted)} images and "
                            f"{len(held - wanted)} others; was the archive changed? Prepare the part again")
    root.mkdir(parents=True, exist_ok=True)
    _claim(root, settings)
    shards = _complete_shards(root)
    for folder in folders:
        if not folder.exists():
            continue
        for old, index in sorted(_complete_shards(folder).items()):
            new = max(shards, default=-1) + 1
            data, index_path = shard_paths(folder, old, encoding)
            moved, moved_index = shard_paths(root, new, encoding)
            if mask_path(folder, old).exists():
                os.replace(mask_path(folder, old), mask_path(root, new))
            os.replace(data, moved)
            os.replace(index_path, moved_index)  # last: a shard with its index is complete
            shards[new] = index
        shutil.rmtree(folder)
    images, errors, skipped = _write_manifest(root, sources, shards, **planned)
    return PrepareReport(root, images, errors, 0, skipped)


def _check_part(part: tuple[int, int]) -> tuple[int, int]:
    k, n = part
    if not 1 <= k <= n:
        raise DataError(f"part {k}/{n}: K/N needs 1 ≤ K ≤ N")
    return k, n


def _settings(src, size: int, masks: str | None, ct: CTSlices | None) -> dict:
    if ct is not None and masks:
        raise DataError(f"{src}: masks are cached with radiographs, not with CT slices")
    described = {"size": size, **({"masks": masks} if masks else {}), **({"ct": ct.settings()} if ct else {})}
    return {"format": PixelEncoding.of(described).format, **described}


def _sources(src, masks: str | None, ct: CTSlices | None, progress: bool):
    """The images to cache in order, their mask files, and what CT planning left out or refused."""
    sources = find_sources(src)
    mask_files = _mask_files(Path(src), sources, masks)
    planned = {"skipped": {}, "errors": {}}
    if ct is not None:
        with Progress(disable=not progress) as bar:
            task = bar.add_task("CT headers: series and slice order", total=len(sources))
            plan = plan_slices(sources, ct, lambda: bar.advance(task))
        sources, planned = plan.kept, {"skipped": plan.skipped, "errors": plan.errors}
    return sources, mask_files, planned


def _mask_files(src: Path, sources: list[Source], column: str | None) -> dict[str, list[Path]]:
    """Each image's mask files (relative to the manifest's folder), by image name."""
    if column is None:
        return {}
    if not (src.is_file() and src.suffix.lower() == ".csv"):
        raise DataError(f"{src}: masks are named in a manifest column; give the manifest CSV, not a folder")
    files = {}
    for source in sources:
        if column not in source.columns:
            raise DataError(f"{src}: no column {column!r} naming the masks")
        if not source.columns[column]:
            raise DataError(f"{src}: {source.name} has no mask in {column!r}; every image needs its mask")
        files[source.name] = [src.parent / name.strip() for name in source.columns[column].split(SEPARATOR)]
    return files


def _claim(root: Path, settings: dict) -> None:
    """Record the settings, or check that an existing cache was prepared with the same ones."""
    path = root / SETTINGS_FILE
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        if found != settings:
            raise DataError(f"{root}: prepared with {found}, not {settings}; use another folder")
        return
    if any(root.iterdir()):
        raise DataError(f"{root}: not empty and not a prepared cache; refusing to write into it")
    write_text_atomically(path, json.dumps(settings))


def _complete_shards(root: Path) -> dict[int, dict]:
    shards = {}
    for index_path in sorted(root.glob("shard-*.json")):
        shard = int(index_path.stem.split("-")[1])
        shards[shard] = json.loads(index_path.read_text(encoding="utf-8"))
    return shards


class _Workers:
    """A spawned process pool, or none (reading in this process) for 0 workers or little work."""

    def __init__(self, workers: int, tasks: int):
        self.pool = (multiprocessing.get_context("spawn").Pool(workers, initializer=one_native_thread)
                     if workers > 0 and tasks > 1 else None)

    def __enter__(self):
        return self.pool

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            if exc[0] is None:
                self.pool.close()
            else:
                self.pool.terminate()
            self.pool.join()


def _write_shard(root: Path, shard: int, chunk: list[Source], results, advance, masked: bool,
                 encoding: PixelEncoding) -> dict:
    data_path, index_path = shard_paths(root, shard, encoding)
    index = {"images": [], "errors": [], "skipped": []}
    offset = 0
    with contextlib.ExitStack() as files:
        f = files.enter_context(open(files.enter_context(atomic_path(data_path)), "wb"))
        mask_file = files.enter_context(open(files.enter_context(atomic_path(mask_path(root, shard))), "wb")) \
            if masked else None
        for source, result in zip(chunk, results):
            if result[0] in ("error", "skipped"):
                index[{"error": "errors", "skipped": "skipped"}[result[0]]].append(
                    {"name": source.name, "reason": result[1]})
            else:
                _, pixels, metadata, source_shape, mask = result
                f.write(pixels.tobytes())
                if mask_file is not None:
                    mask_file.write(mask.tobytes())
                index["images"].append({"name": source.name, "offset": offset, "rows": pixels.shape[1],
                                        "columns": pixels.shape[2], "source_rows": source_shape[0],
                                        "source_columns": source_shape[1], **metadata})
                offset += pixels.size
            advance()
    write_text_atomically(index_path, json.dumps(index))
    return index


def _write_manifest(root: Path, sources: list[Source], shards: dict[int, dict], skipped: dict[str, str],
                    errors: dict[str, str]) -> tuple[int, int, int]:
    """manifest.csv, errors.csv and skipped.csv over the current sources, in their order, with
    the files that were never to be read (`errors`, `skipped`: name -> reason) first."""
    found, failed, left_out = {}, {}, dict(skipped)
    for shard, index in shards.items():
        for item in index["images"]:
            found[item["name"]] = {"shard": shard, **item}
        for item in index["errors"]:
            failed[item["name"]] = item["reason"]
        for item in index.get("skipped", []):
            left_out[item["name"]] = item["reason"]
    rows = [{**found[s.name], **s.columns} for s in sources if s.name in found]
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in LOCATION))
    manifest = io.StringIO()
    writer = csv.DictWriter(manifest, fieldnames=[*LOCATION, *extra], restval="")
    writer.writeheader()
    writer.writerows(rows)
    unread = {**errors, **{s.name: failed[s.name] for s in sources if s.name in failed and s.name not in found}}
    kept_out = {s.name: left_out[s.name] for s in sources if s.name in left_out and s.name not in found}
    for path, listed in ((ERRORS_FILE, unread), (SKIPPED_FILE, {**skipped, **kept_out})):
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["name", "reason"])
        writer.writerows(listed.items())
        write_text_atomically(root / path, text.getvalue())
    write_text_atomically(root / MANIFEST_FILE, manifest.getvalue())
    return len(rows), len(unread), len(skipped) + len(kept_out)
