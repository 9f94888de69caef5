"""Cheap checks on uploaded bytes before any decoding: format by magic bytes, pixel count from the header.

The full decode (corrupt or truncated data) is the reader's `ocr.load` stage, run in a worker during the quick check.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image

from api.problems import ApiProblem

from ocr.load import HEIC_SUPPORTED, sniff_format

CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic"}


def sniff_content_type(data: bytes) -> str:
    """The format from the magic bytes (the client's Content-Type header is not trusted)."""
    fmt = sniff_format(data)
    if fmt is None or (fmt == "heic" and not HEIC_SUPPORTED):
        raise ApiProblem(
            415,
            "unsupported_format",
            "the body is not a JPEG, PNG or WebP photo; send the photo bytes themselves as the request body",
        )
    return CONTENT_TYPES[fmt]


def check_header(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Width and height from the image header; refuses decompression bombs without decoding them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ApiProblem(413, "too_many_pixels", f"the image has more than {max_pixels} pixels") from None
    except Exception:  # noqa: BLE001 - any header Pillow cannot parse is a corrupt upload
        raise ApiProblem(422, "corrupt_image", "the image header cannot be read; the file is damaged") from None
    if w <= 0 or h <= 0:
        raise ApiProblem(422, "corrupt_image", "the image has no pixels")
    if w * h > max_pixels:
        raise ApiProblem(
            413, "too_many_pixels", f"the image has {w}x{h} = {w * h} pixels; the limit is {max_pixels}", width=w, height=h
        )
    return w, h
