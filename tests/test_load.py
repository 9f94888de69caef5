"""Load stage: formats, limits, truncation, EXIF orientation."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from ocr.config import LoadLimits
from ocr.errors import BadInput, InputTooLarge
from ocr.load import load_image


def _photo(w=400, h=300) -> np.ndarray:
    img = np.full((h, w, 3), 230, np.uint8)
    cv2.rectangle(img, (10, 10), (60, 40), (0, 0, 0), -1)  # a dark mark at the top-left
    return img


def _encode(fmt: str, img: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,name", [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
def test_formats_decode_with_hash_and_size(fmt, name):
    data = _encode(fmt, _photo())
    li = load_image(data)
    assert li.format == name
    assert li.bgr.shape[:2] == (300, 400)
    assert li.original_size == (400, 300)
    assert len(li.sha256) == 64 and li.nbytes == len(data)


def test_exif_orientation_is_applied():
    img = _photo(400, 300)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    data = _encode("JPEG", img, exif=exif.tobytes())
    li = load_image(data)
    assert li.orientation == 6
    assert li.bgr.shape[:2] == (400, 300)  # portrait after rotation
    # the dark mark from the stored top-left ends up at the top-right after a clockwise turn
    g = cv2.cvtColor(li.bgr, cv2.COLOR_BGR2GRAY)
    assert g[:60, -45:].mean() < 120 and g[:60, :45].mean() > 200


def test_truncated_jpeg_is_refused():
    data = _encode("JPEG", _photo())
    with pytest.raises(BadInput) as e:
        load_image(data[: len(data) // 2])
    assert e.value.code == "truncated_image"


def test_truncated_png_is_refused():
    data = _encode("PNG", _photo())
    with pytest.raises(BadInput) as e:
        load_image(data[:-30])
    assert e.value.code == "truncated_image"


@pytest.mark.parametrize("data,code", [(b"", "empty_file"), (b"%PDF-1.4 not an image", "unsupported_format"),
                                        (b"\xff\xd8\xff" + b"\x00" * 100 + b"\xff\xd9", "corrupt_image")])
def test_bad_bytes_have_stable_codes(data, code):
    with pytest.raises(BadInput) as e:
        load_image(data)
    assert e.value.code == code
    assert e.value.message


def test_byte_limit():
    data = _encode("PNG", _photo())
    with pytest.raises(InputTooLarge) as e:
        load_image(data, LoadLimits(max_bytes=len(data) - 1))
    assert e.value.code == "file_too_large" and e.value.http_status == 413


def test_pixel_bomb_refused_before_decoding():
    # A tiny PNG whose header claims 6000 x 6000 pixels (highly compressible zeros).
    img = Image.new("L", (6000, 6000), 0)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    data = buf.getvalue()
    assert len(data) < 2_000_000
    with pytest.raises(InputTooLarge) as e:
        load_image(data, LoadLimits(max_pixels=20_000_000))
    assert e.value.code == "too_many_pixels"


def test_large_photo_is_reduced_to_working_size():
    img = np.full((3000, 4000, 3), 220, np.uint8)
    data = _encode("JPEG", img, quality=80)
    li = load_image(data, LoadLimits(work_long_side_px=1000))
    assert max(li.bgr.shape[:2]) == 1000
    assert li.scale == pytest.approx(0.25, rel=0.01)
    assert li.original_size == (4000, 3000)
