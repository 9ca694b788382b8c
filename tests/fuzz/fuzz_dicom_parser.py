"""Coverage-guided fuzzing of the DICOM reader (atheris + libFuzzer).

    .venv/bin/python tests/fuzz/fuzz_dicom_parser.py -max_total_time=60 -rss_limit_mb=4096

Every input goes to `cxrfast.io.read_dicom` (bytes, each stage, and once from a file so the
`pread` fast path and the growing-prefix header parse run too), to `read_header` and straight to
`cxrfast._C.parse`. Bad input may only raise DicomError, _C.ParseError or IndexError; anything
else is re-raised and reported by atheris as a crash, and a native crash kills the process.

With no corpus directory on the command line, the harness writes a seed corpus to
build/fuzz-corpus/seeds (small generated files in several transfer syntaxes, and pydicom's
bundled test files under 200 kB) and passes build/fuzz-corpus/found (new inputs) and the seeds
to libFuzzer; crashing inputs go to build/fuzz-artifacts/ unless -artifact_prefix is given.
libFuzzer exits 0 when -max_total_time passes without a finding.

For silent out-of-bounds reads in the C++ parser, run the same harness against an
AddressSanitizer build of cxrfast._C: see tests/fuzz/asan_build.sh.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import types
import warnings
from pathlib import Path

import atheris
import numpy as np  # imported before instrumentation: only cxrfast is instrumented


def _prefer_pythonpath_copy() -> None:
    """With PYTHONPATH naming a copy of the package (the ASan build of asan_build.sh), import
    that copy: an editable install's finder comes before sys.path and would win."""
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if list(Path(entry, "cxrfast").glob("_C*.so")):
            sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__name__.startswith("ScikitBuild")]
            return


_prefer_pythonpath_copy()

# atheris 3.0 leaks the result of every instrumented comparison of numpy arrays (`values > c`):
# the display transforms would grow the fuzzer by ~1 KB an input until -rss_limit_mb trips.
NOT_INSTRUMENTED = ["cxrfast.io.dicom_display"]

with atheris.instrument_imports(include=["cxrfast"], exclude=NOT_INSTRUMENTED, enable_loader_override=False):
    import cxrfast.errors  # noqa: F401 (imported to be instrumented)
    import cxrfast.io.dicom
    import cxrfast.io.dicom_display
    import cxrfast.io.dicom_header
    import cxrfast.io.dicom_pixels
    from cxrfast import _C
    from cxrfast.io import DicomError, read_dicom, read_header
    from cxrfast.io.dicom_tags import REPORTED_SEQUENCES


def _instrument_skipped_modules() -> int:
    """An editable install (scikit-build-core's redirect) imports cxrfast through a custom loader
    that atheris' import hook cannot instrument; patch the functions of those modules directly."""
    import gc

    skipped = {name for name, module in sys.modules.items()
               if name.split(".")[0] == "cxrfast" and name not in NOT_INSTRUMENTED
               and (getattr(module, "__file__", None) or "").endswith(".py")
               and not type(getattr(module, "__loader__", None)).__name__.startswith("Atheris")}
    functions = [obj for obj in gc.get_objects()
                 if isinstance(obj, types.FunctionType) and obj.__module__ in skipped]
    for function in functions:
        atheris.instrument_func(function)
    return len(functions)


_instrument_skipped_modules()
print(f"fuzz_dicom_parser: {_C.__file__}", file=sys.stderr)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "build" / "fuzz-corpus"
ARTIFACTS = REPO / "build" / "fuzz-artifacts"
ACCEPTED = (DicomError, _C.ParseError, IndexError)
STAGES = ("stored", "modality", "display")
MAX_SEED_BYTES = 200_000

# The path-based reads go through a file written for each input and removed after it.
_SCRATCH_DIR = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
_SCRATCH = os.path.join(_SCRATCH_DIR, f"cxrfast-fuzz-{os.getpid()}.dcm")


def TestOneInput(data: bytes) -> None:  # noqa: N802 (atheris' name)
    for stage in STAGES:
        try:
            read_dicom(data, stage=stage)
        except ACCEPTED:
            pass
    try:
        read_dicom(data, stage="stored", frame=0)
    except ACCEPTED:
        pass
    try:
        read_header(data)
    except ACCEPTED:
        pass
    for options in ({}, {"stop_before_pixels": True, "partial": True, "sequences": list(REPORTED_SEQUENCES)}):
        try:
            _C.parse(data, **options)
        except _C.ParseError:
            pass
    with open(_SCRATCH, "wb") as f:
        f.write(data)
    try:
        for stage in ("stored", "display"):
            try:
                read_dicom(_SCRATCH, stage=stage)
            except ACCEPTED:
                pass
    finally:
        os.unlink(_SCRATCH)


# --- seed corpus -----------------------------------------------------------------------------

def _dataset(ts: str, *, rows: int = 12, columns: int = 16, frames: int = 1, bits: int = 16, stored: int = 12,
             signed: bool = False, samples: int = 1, photometric: str = "MONOCHROME2", **extra):
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.file_meta.TransferSyntaxUID = ts
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "FUZZ"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
    ds.PixelRepresentation = int(signed)
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    shape = (frames, rows, columns, samples)
    dtype = np.dtype(f"{'i' if signed else 'u'}{max(bits, 8) // 8}")
    values = (np.arange(np.prod(shape)) * 37 % (1 << (stored - 1 if signed else stored))).astype(dtype)
    if bits == 1:
        ds.PixelData = np.packbits(values.astype(np.uint8) & 1, bitorder="little").tobytes()
    else:
        ds.PixelData = values.reshape(shape).astype(dtype.newbyteorder(">" if ts.endswith(".2.2") else "<")).tobytes()
    return ds


def _lut_item(first: int, entries: int, bits: int = 16):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.add_new(0x00283002, "US", [entries, first, bits])  # LUT Descriptor
    item.LUTExplanation = "FUZZ"
    item.add_new(0x00283006, "US", [(k * 7) % (1 << bits) for k in range(entries)])  # LUT Data
    return item


def _generated() -> dict[str, bytes]:
    from pydicom.sequence import Sequence
    from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ExplicitVRLittleEndian,
                             ImplicitVRLittleEndian, RLELossless)

    syntaxes = {"el": ExplicitVRLittleEndian, "il": ImplicitVRLittleEndian, "eb": ExplicitVRBigEndian,
                "df": DeflatedExplicitVRLittleEndian}
    variants = {
        "plain": {},
        "mono1_window": dict(photometric="MONOCHROME1", WindowCenter=1000, WindowWidth=800),
        "rescale_signed": dict(signed=True, RescaleSlope=2, RescaleIntercept=-1024, PixelPaddingValue=-2048),
        "sigmoid": dict(WindowCenter=[500, 900], WindowWidth=[400, 100], VOILUTFunction="SIGMOID",
                        PresentationLUTShape="INVERSE"),
        "luts": dict(ModalityLUTSequence=Sequence([_lut_item(0, 64)]), VOILUTSequence=Sequence([_lut_item(0, 64, 8)])),
        "byte": dict(bits=8, stored=8, rows=8, columns=8),
        "rgb": dict(bits=8, stored=8, samples=3, photometric="RGB", rows=4, columns=6),
        "frames": dict(frames=3, rows=4, columns=4),
        "wide": dict(bits=32, stored=20, rows=4, columns=4),
        "bitmap": dict(bits=1, stored=1, rows=8, columns=16),
    }
    out = {}
    for tsname, ts in syntaxes.items():
        for vname, kwargs in variants.items():
            if ts == DeflatedExplicitVRLittleEndian and vname not in ("plain", "luts", "frames"):
                continue
            buffer = io.BytesIO()
            _dataset(ts, **kwargs).save_as(buffer, enforce_file_format=True)
            out[f"gen_{tsname}_{vname}.dcm"] = buffer.getvalue()
    for vname, kwargs in {"plain": {}, "frames": dict(frames=3, rows=4, columns=4),
                          "rgb": dict(bits=8, stored=8, samples=3, photometric="RGB", rows=4, columns=6)}.items():
        ds = _dataset(ExplicitVRLittleEndian, **kwargs)
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out[f"gen_rle_{vname}.dcm"] = buffer.getvalue()
    # No file meta: the encoding is inferred from the first element.
    buffer = io.BytesIO()
    ds = _dataset(ExplicitVRLittleEndian)
    del ds.file_meta
    ds.save_as(buffer, implicit_vr=True, little_endian=True)
    out["gen_nometa_il.dcm"] = buffer.getvalue()
    return out


def build_corpus(folder: Path) -> int:
    """Write the seed corpus to `folder` (created if missing); returns the number of files."""
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seeds = _generated()
    import pydicom.data

    bundled = Path(pydicom.data.__file__).parent / "test_files"
    for path in sorted(bundled.rglob("*")):
        if path.is_file() and path.stat().st_size <= MAX_SEED_BYTES and path.suffix.lower() in (".dcm", ""):
            seeds[f"pydicom_{path.relative_to(bundled).as_posix().replace('/', '_')}"] = path.read_bytes()
    for name, data in seeds.items():
        target = folder / name
        if not target.exists() or target.read_bytes() != data:
            target.write_bytes(data)
    return len(seeds)


def main() -> None:
    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        seeds, found = CORPUS / "seeds", CORPUS / "found"
        count = build_corpus(seeds)
        found.mkdir(parents=True, exist_ok=True)
        print(f"fuzz_dicom_parser: {count} seeds in {seeds}; new inputs go to {found}", file=sys.stderr)
        argv += [str(found), str(seeds)]  # libFuzzer writes new inputs to the first directory
    if not any(arg.startswith("-artifact_prefix=") for arg in argv[1:]):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        argv.insert(1, f"-artifact_prefix={ARTIFACTS}/")
    warnings.simplefilter("ignore")  # pydicom's decoders warn about the odd inputs; they are expected
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
