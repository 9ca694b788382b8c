"""PNG writer: 8- and 16-bit grayscale written and read back with Pillow."""

import struct

import numpy as np
import pytest
from PIL import Image

from cxrfast.io.png_writer import write_png


def _ihdr(path):
    """(width, height, bit depth, colour type) from the PNG header chunk."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR"
    return struct.unpack(">IIBB", raw[16:26])


@pytest.mark.parametrize("bits, dtype", [(8, np.uint8), (16, np.uint16)])
def test_float_image_round_trip(bits, dtype, tmp_path):
    image = np.random.default_rng(0).random((30, 17))
    image[0, :2] = 0.0, 1.0
    path = write_png(tmp_path / "x.png", image, bits=bits)
    assert _ihdr(path) == (17, 30, bits, 0)  # colour type 0: grayscale
    with Image.open(path) as png:
        assert png.mode == ("L" if bits == 8 else "I;16")
        back = np.asarray(png)
    top = (1 << bits) - 1
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, np.rint(image * top))
    assert (back[0, 0], back[0, 1]) == (0, top)


@pytest.mark.parametrize("bits, values", [
    (8, np.arange(256, dtype=np.int64)),
    (16, np.arange(0, 65536, 257, dtype=np.uint16)),
])
def test_integer_image_is_written_as_is(bits, values, tmp_path):
    image = np.tile(values, (3, 1))
    path = write_png(tmp_path / "x.png", image, bits=bits)
    with Image.open(path) as png:
        np.testing.assert_array_equal(np.asarray(png), image)


@pytest.mark.parametrize("image, bits, message", [
    (np.zeros((4, 4)), 12, "bits"),
    (np.zeros((4, 4, 3)), 8, "rows, columns"),
    (np.zeros((0, 4)), 8, "non-empty"),
    (np.full((4, 4), 1.5), 8, r"\[0, 1\]"),
    (np.full((4, 4), np.nan), 16, r"\[0, 1\]"),
    (np.full((4, 4), 256), 8, "do not fit 8 bits"),
    (np.full((4, 4), -1), 16, "do not fit 16 bits"),
    (np.full((4, 4), True), 8, "dtype"),
])
def test_rejects_bad_input(image, bits, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_png(tmp_path / "x.png", image, bits=bits)
