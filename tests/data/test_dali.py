"""The DALI pipeline with CPU operators (`device_id=None`) against cxrfast's numpy/torch path:
display values equal to `read_dicom`'s for raw, RLE and JPEG 2000 files (and the syntaxes it
reads on the CPU), the centred view equal to torch's antialiased resize of the same region, and
the loader's order, sharding and resumption equal to `DistributedSampler`'s."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

pytest.importorskip("nvidia.dali", reason="the dali extra (nvidia-dali-cuda130) is not installed", exc_type=ImportError)

from cxrfast.data.augment import Crops, ViewAugment  # noqa: E402
from cxrfast.data.dali import DaliLoader, calibrate_decoder  # noqa: E402
from cxrfast.data.dali_samples import DISPLAY_VALUES, PipelineSamples, display_program  # noqa: E402
from cxrfast.data.prepare import prepare_cache  # noqa: E402
from cxrfast.errors import DataError, DicomError  # noqa: E402
from cxrfast.io import read_dicom, read_header  # noqa: E402
from cxrfast.io.dicom_display import window  # noqa: E402
from cxrfast.io.dicom_header import Rescale, Window  # noqa: E402
from cxrfast.io.dicom_writer import write_dicom  # noqa: E402

ROWS, COLUMNS = 150, 118


def _stored(bits: int, seed: int, signed: bool = False) -> np.ndarray:
    """Smooth anatomy-like values over the whole stored range, plus noise (a compressor's worst)."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    low = -(1 << (bits - 1)) if signed else 0
    wave = 0.5 + 0.45 * np.sin(y / 17 + seed) * np.cos(x / 23)
    noise = np.random.default_rng(seed).normal(0, 0.01, wave.shape)
    values = np.clip(low + (wave + noise) * (top - low), low, top).round()
    return values.astype(np.int16 if signed else (np.uint8 if bits <= 8 else np.uint16))


# (transfer syntax, bits stored, header) — the headers cover every term of the display formula.
CASES = {
    "explicit-window": ("explicit", 12, dict(window=(2100.0, 2900.0))),
    "explicit-minmax-padding": ("explicit", 12, dict(padding=(0, 40))),
    "explicit-monochrome1-rescale": ("explicit", 12, dict(photometric_interpretation="MONOCHROME1",
                                                          rescale=(0.5, -1024.0), window=(-300.0, 1200.0))),
    "explicit-linear-exact": ("explicit", 16, dict(window=(30000.0, 41000.5), voi_lut_function="LINEAR_EXACT")),
    "explicit-sigmoid-on-cpu": ("explicit", 12, dict(window=(2000.0, 1500.0), voi_lut_function="SIGMOID")),
    "explicit-signed": ("explicit", 12, dict(pixel_representation=1, rescale=(1.0, 100.0))),
    "big-endian": ("big_endian", 12, dict(window=(2000.0, 4000.0))),
    "rle-minmax": ("rle", 12, {}),
    "rle-minmax-negative-slope": ("rle", 12, dict(rescale=(-2.0, 100.0))),
    "explicit-minmax-negative-slope-monochrome1": ("explicit", 12, dict(rescale=(-1.0, 0.0),
                                                                        photometric_interpretation="MONOCHROME1")),
    "rle-inverse": ("rle", 10, dict(presentation_lut_shape="INVERSE", window=(500.0, 700.0))),
    "jpeg2000-window": ("jpeg2000", 12, dict(window=(2100.0, 2900.0))),
    "jpeg2000-minmax-padding": ("jpeg2000", 12, dict(padding=(0, 40))),
    "jpeg2000-8bit": ("jpeg2000", 8, dict(window=(128.0, 200.0))),  # DALI's CPU decoder returns × 257
    "jpeg2000-16bit-monochrome1": ("jpeg2000", 16, dict(photometric_interpretation="MONOCHROME1")),
    "jpeg2000-lossy": ("jpeg2000_lossy", 12, dict(window=(2000.0, 3000.0))),
    "jpeg2000-signed-on-cpu": ("jpeg2000", 12, dict(pixel_representation=1)),
    "jpeg-ls-on-cpu": ("jpeg_ls", 12, dict(window=(2000.0, 3000.0))),
}


@pytest.fixture(scope="module")
def dicom_folder(module_folder):
    folder = module_folder("dali-dicom")
    for k, (name, (syntax, bits, header)) in enumerate(CASES.items()):
        signed = header.get("pixel_representation", 0) == 1
        write_dicom(folder / f"{k:02d}-{name}.dcm", _stored(bits, k, signed), transfer_syntax=syntax,
                    bits_stored=bits, patient_id=f"P{k}", **header)
    return folder


def test_every_case_takes_the_intended_route(dicom_folder):
    """The cases exercise DALI's decoder, DALI's display formula on CPU-read values, and the
    CPU display fallback; check that each one really goes where its name says."""
    samples = PipelineSamples(dicom_folder, batch_size=1, shuffle=False, seed=0, rank=0, world_size=1,
                              decoder_scales=calibrate_decoder("cpu"))
    for k, name in enumerate(CASES):
        sample = samples.sample(k)
        assert sample.encoded == (name.startswith("jpeg2000") and not name.endswith("on-cpu")), name
        on_cpu = name.endswith("sigmoid-on-cpu")
        assert (sample.program == DISPLAY_VALUES) == on_cpu, name


def test_display_values_equal_read_dicom(dicom_folder):
    loader = DaliLoader(dicom_folder, 1, size=None, shuffle=False, workers=1)
    batches = list(loader)
    assert len(batches) == len(CASES)
    for (name, (syntax, _, _)), path, (batch,) in zip(CASES.items(), sorted(dicom_folder.iterdir()),
                                                   (b.views for b in batches)):
        expected = read_dicom(path, stage="display").pixels
        assert batch.shape == (1, 1, ROWS, COLUMNS), name
        # Displayed on the CPU, values travel as 16-bit display values (the prepared cache's format).
        tolerance = 0.5 / 65535 + 1e-7 if name.endswith("sigmoid-on-cpu") else 2e-6
        np.testing.assert_allclose(batch[0, 0].numpy(), expected, atol=tolerance, rtol=0, err_msg=name)


def test_decoder_calibration_matches_the_cpu_decoder():
    """On the CPU, DALI's JPEG 2000 decoder stretches 8-bit values to 16 bits and leaves 9–16-bit
    values alone; the calibration must find exactly that."""
    scales = calibrate_decoder("cpu")
    assert scales == {bits: float(65535 if bits == 8 else (1 << bits) - 1) for bits in range(8, 17)}


def test_display_program_matches_the_standard_window(dicom_folder):
    """In stored units, the program reproduces `dicom_display`'s window for LINEAR (centre − 0.5,
    width − 1; width 1 a step) and LINEAR_EXACT, with rescale and inversion."""
    info = read_header(sorted(dicom_folder.iterdir())[0])
    for function, center, width in [("LINEAR", 100.0, 1.0), ("LINEAR", 2048.0, 4096.0), ("LINEAR_EXACT", 10.0, 3.0)]:
        for rescale, inverse in [(Rescale(1.0, 0.0), None), (Rescale(-0.5, 300.0), "INVERSE")]:
            w = Window(center, width, function)
            header = replace(info, window=w, rescale=rescale, presentation_lut_shape=inverse)
            program = display_program(header)
            x = np.arange(-2000, 4000, 0.25)
            ours = np.clip((x - program.x0) * program.gain + program.offset, 0, 1)
            m = x * rescale.slope + rescale.intercept
            expected = 1 - window(m, w) if inverse else window(m, w)
            np.testing.assert_allclose(ours, expected, atol=1e-9, err_msg=f"{function} {width} {rescale}")


def test_center_view_equals_torch_antialiased_resize(dicom_folder):
    size = 48
    loader = DaliLoader(dicom_folder, 1, size=size, shuffle=False, workers=1)
    for path, (batch,) in zip(sorted(dicom_folder.iterdir()), (b.views for b in loader)):
        image = torch.from_numpy(read_dicom(path, stage="display").pixels)[None, None]
        scale = size / min(ROWS, COLUMNS)
        resized = F.interpolate(image, size=(round(ROWS * scale), round(COLUMNS * scale)), mode="bilinear",
                                antialias=True)
        top, left = (resized.shape[2] - size + 1) // 2, (resized.shape[3] - size + 1) // 2  # DALI rounds .5 up
        expected = resized[..., top:top + size, left:left + size]
        assert batch.shape == (1, 1, size, size)
        # Same filter family, different edge handling: interior equal, borders within a few 1e-3.
        inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
        np.testing.assert_allclose(batch[inner], expected[inner], atol=2e-3, err_msg=path.name)
        assert float((batch - expected).abs().mean()) < 1e-3


@pytest.fixture(scope="module")
def constant_cache(module_folder):
    """A prepared cache of 11 images, image i constant at (i + 1) / 16: a batch tells its indices."""
    source = module_folder("dali-constant")
    for i in range(11):
        write_dicom(source / f"{i:02d}.dcm", np.full((40, 36), (i + 1) * 256, np.uint16), bits_stored=12,
                    window=(2048.0, 4097.0), voi_lut_function="LINEAR_EXACT", patient_id=f"C{i}")
    out = module_folder("dali-constant-cache") / "cache"
    prepare_cache(source, out, size=32, workers=1, progress=False)
    return out


def _indices(batch: torch.Tensor) -> list[int]:
    return [round(float(v) * 16) - 1 for v in batch.mean((1, 2, 3))]


def test_order_and_shards_follow_distributed_sampler(constant_cache):
    for world in (1, 2):
        seen = []
        for rank in range(world):
            loader = DaliLoader(constant_cache, 2, size=16, seed=5, rank=rank, world_size=world, workers=1)
            loader.epoch = 3
            loader.load_state_dict(loader.state_dict())
            got = [i for batch in loader for i in _indices(batch.views[0])]
            sampler = DistributedSampler(range(11), num_replicas=world, rank=rank, shuffle=True, seed=5,
                                         drop_last=True)
            sampler.set_epoch(3)
            expected = list(sampler)[: len(loader) * 2]
            assert got == expected
            seen += got
        assert len(set(seen)) == len(seen)  # shards never overlap


def test_epochs_and_mid_epoch_resume(constant_cache):
    whole = DaliLoader(constant_cache, 2, size=16, seed=1, workers=1)
    epochs = [[_indices(b.views[0]) for b in whole] for _ in range(2)]
    assert len(epochs[0]) == len(whole) == 5 and epochs[0] != epochs[1]
    assert whole.state_dict() == {"epoch": 2, "batch": 0}

    first = DaliLoader(constant_cache, 2, size=16, seed=1, workers=1)
    iterator = iter(first)
    done = [_indices(next(iterator).views[0]) for _ in range(2)]
    resumed = DaliLoader(constant_cache, 2, size=16, seed=1, workers=1)
    resumed.load_state_dict(first.state_dict())
    rest = [_indices(b.views[0]) for b in resumed]
    assert done + rest == epochs[0]
    assert [_indices(b.views[0]) for b in resumed] == epochs[1]


def test_augmented_views(constant_cache, dicom_folder):
    augment = ViewAugment(size=(24, 20), rotation=0.0, brightness=0.0, contrast=0.0, gamma=0.0, blur=1.0)
    views = next(iter(DaliLoader(constant_cache, 4, crops=[Crops(augment, 3)], workers=1))).views
    assert len(views) == 3 and all(v.shape == (4, 1, 24, 20) for v in views)
    # A constant image stays constant under crop, resize and blur.
    for v in views:
        np.testing.assert_allclose(v.amax((1, 2, 3)), v.amin((1, 2, 3)), atol=1e-5)

    augment = ViewAugment(size=32)
    a = [next(iter(DaliLoader(dicom_folder, 4, crops=[Crops(augment, 2)], seed=9, workers=1))).views for _ in range(2)]
    assert torch.equal(a[0][0], a[1][0]) and torch.equal(a[0][1], a[1][1])  # seeded: reproducible
    assert not torch.equal(a[0][0], a[0][1])  # two different views
    assert all(float(v.min()) >= 0 and float(v.max()) <= 1 for v in a[0])


def test_errors_name_the_problem(tmp_path, dicom_folder):
    with pytest.raises(DataError, match="no batch of 64"):
        DaliLoader(dicom_folder, 64)
    with pytest.raises(DataError, match="no DICOM, PNG, JPEG or JSRT .IMG files"):
        DaliLoader(tmp_path, 1)
    with pytest.raises(ValueError, match="crops must be a non-empty list of Crops"):
        DaliLoader(dicom_folder, 1, crops=[ViewAugment()])
    bad = tmp_path / "bad"
    bad.mkdir()
    write_dicom(bad / "a.dcm", _stored(12, 0), bits_stored=12)
    (bad / "b.dcm").write_bytes((bad / "a.dcm").read_bytes()[:2000])  # cut inside Pixel Data
    with pytest.raises(DataError, match="b.dcm: truncated"):
        list(DaliLoader(bad, 1, size=16, shuffle=False, workers=1))
    # A codestream the header accepts but DALI's decoder cannot: the error names the batch's files.
    j2k = tmp_path / "j2k"
    j2k.mkdir()
    path = write_dicom(j2k / "c.dcm", _stored(12, 0), bits_stored=12, transfer_syntax="jpeg2000")
    data = bytearray(path.read_bytes())
    siz = data.find(b"\xff\x4f\xff\x51")
    data[siz + 60 : siz + 400] = bytes(340)  # zero the coding style and the first tile's header
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="c.dcm"):
        list(DaliLoader(j2k, 1, size=16, workers=1))
    samples = PipelineSamples(bad, batch_size=1, shuffle=False, seed=0, rank=0, world_size=1, decoder_scales={})
    with pytest.raises(DicomError, match="b.dcm"):
        samples.sample(1)


@pytest.mark.gpu
def test_gpu_pipeline_equals_cpu(dicom_folder):
    """The same display values from the GPU pipeline (nvjpeg2k decoding, GPU operators)."""
    cpu = list(DaliLoader(dicom_folder, 1, size=None, shuffle=False, workers=1))
    gpu = list(DaliLoader(dicom_folder, 1, size=None, shuffle=False, workers=1, device="cuda"))
    for name, (a,), (b,) in zip(CASES, (x.views for x in cpu), (x.views for x in gpu)):
        assert b.device.type == "cuda"
        np.testing.assert_allclose(b.cpu().numpy(), a.numpy(), atol=2e-6, err_msg=name)
