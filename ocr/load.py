"""Load stage: bytes -> a working image, with limits checked before any pixel is decoded.

- Formats: JPEG, PNG, WebP; HEIC/HEIF when `pillow-heif` is installed (phones' default on iOS).
- Limits: byte size, then pixel count read from the header (decompression bombs never get decoded).
- Truncated files are refused (a half-uploaded photo must be re-sent, not half-read).
- EXIF orientation is applied, so a photo is upright as the phone showed it.
- Large photos are decoded at reduced scale (JPEG DCT scaling) when the long side exceeds the working size: a 12 MP
  photo of a 600 x 900 mm plano still gives > 4 px/mm, plenty for 18 mm boxes.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ocr.config import LoadLimits, get_settings
from ocr.errors import BadInput, InputTooLarge

try:  # optional HEIC support
    import pillow_heif  # type: ignore

    pillow_heif.register_heif_opener()
    HEIC_SUPPORTED = True
except Exception:  # pragma: no cover - depends on the installation
    HEIC_SUPPORTED = False


@dataclass
class LoadedImage:
    bgr: np.ndarray  # working image, upright
    format: str  # "jpeg" | "png" | "webp" | "heic"
    original_size: tuple[int, int]  # (width, height) of the upright original
    scale: float  # working px / original px
    orientation: int  # EXIF orientation tag that was applied (1 = none)
    sha256: str
    nbytes: int

    @property
    def gray(self) -> np.ndarray:
        return cv2.cvtColor(self.bgr, cv2.COLOR_BGR2GRAY)


def sniff_format(data: bytes) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "heic"
    return None


def _check_complete(fmt: str, data: bytes) -> None:
    """Refuse files cut short in transfer (their decoders would silently fill the rest with grey)."""
    if fmt == "jpeg":
        tail = data[-(2 * 1024 * 1024) :]
        if b"\xff\xd9" not in tail:
            raise BadInput("the JPEG file is truncated (upload interrupted?): send the photo again", code="truncated_image")
    elif fmt == "png":
        if b"IEND" not in data[-64:]:
            raise BadInput("the PNG file is truncated (upload interrupted?): send the photo again", code="truncated_image")
    elif fmt == "webp":
        declared = int.from_bytes(data[4:8], "little") + 8
        if len(data) < declared:
            raise BadInput("the WebP file is truncated (upload interrupted?): send the photo again", code="truncated_image")


_ORIENT_OPS = {
    2: lambda a: cv2.flip(a, 1),
    3: lambda a: cv2.rotate(a, cv2.ROTATE_180),
    4: lambda a: cv2.flip(a, 0),
    5: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE), 1),
    6: lambda a: cv2.rotate(a, cv2.ROTATE_90_CLOCKWISE),
    7: lambda a: cv2.flip(cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE), 1),
    8: lambda a: cv2.rotate(a, cv2.ROTATE_90_COUNTERCLOCKWISE),
}


def load_image(source: bytes | str | Path, limits: LoadLimits | None = None) -> LoadedImage:
    """Decode a photo within limits; raises BadInput / InputTooLarge with stable codes."""
    limits = limits or get_settings().load
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            size = path.stat().st_size
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror}", code="unreadable_file") from None
        if size > limits.max_bytes:
            raise InputTooLarge(
                f"file is {size / 1e6:.1f} MB, the limit is {limits.max_bytes / 1e6:.0f} MB: send a smaller photo",
                code="file_too_large",
            )
        data = path.read_bytes()
    else:
        data = bytes(source)
    if len(data) > limits.max_bytes:
        raise InputTooLarge(
            f"file is {len(data) / 1e6:.1f} MB, the limit is {limits.max_bytes / 1e6:.0f} MB: send a smaller photo",
            code="file_too_large",
        )
    if len(data) == 0:
        raise BadInput("the file is empty: send the photo again", code="empty_file")
    fmt = sniff_format(data)
    if fmt is None:
        raise BadInput("not a JPEG, PNG, WebP or HEIC image: send a photo of the form", code="unsupported_format")
    if fmt == "heic" and not HEIC_SUPPORTED:
        raise BadInput(
            "HEIC photos are not supported by this server: set the camera to 'Most compatible' (JPEG) and retake",
            code="unsupported_format",
        )
    _check_complete(fmt, data)

    # Header only: size and orientation, before decoding any pixel.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                try:
                    orientation = int(im.getexif().get(0x0112, 1) or 1)
                except Exception:
                    orientation = 1
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputTooLarge("image has too many pixels (decompression bomb?)", code="too_many_pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise BadInput(f"the image cannot be decoded ({e.__class__.__name__}): send the photo again", code="corrupt_image") from None
    if w <= 0 or h <= 0:
        raise BadInput("the image has no pixels", code="corrupt_image")
    if w * h > limits.max_pixels:
        raise InputTooLarge(
            f"image is {w}x{h} = {w * h / 1e6:.0f} MP, the limit is {limits.max_pixels / 1e6:.0f} MP",
            code="too_many_pixels",
        )
    if orientation not in range(1, 9):
        orientation = 1

    bgr = None
    scale = 1.0
    if fmt in ("jpeg", "png", "webp"):
        flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
        long_side = max(w, h)
        if fmt == "jpeg" and long_side >= 2 * limits.work_long_side_px:
            flags = cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION
        buf = np.frombuffer(data, dtype=np.uint8)
        bgr = cv2.imdecode(buf, flags)
    if bgr is None:  # HEIC, or a file OpenCV refuses: decode through Pillow
        try:
            with Image.open(io.BytesIO(data)) as im:
                bgr = cv2.cvtColor(np.asarray(im.convert("RGB")), cv2.COLOR_RGB2BGR)
        except Exception as e:
            raise BadInput(f"the image cannot be decoded ({e.__class__.__name__}): send the photo again", code="corrupt_image") from None
    if bgr.ndim == 2:
        bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
    scale = bgr.shape[1] / float(w)
    if orientation != 1:
        bgr = _ORIENT_OPS[orientation](bgr)
    upright = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    long_side = max(bgr.shape[:2])
    if long_side > limits.work_long_side_px:
        f = limits.work_long_side_px / long_side
        bgr = cv2.resize(bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        scale *= f
    return LoadedImage(
        bgr=np.ascontiguousarray(bgr),
        format=fmt,
        original_size=upright,
        scale=scale,
        orientation=orientation,
        sha256=hashlib.sha256(data).hexdigest(),
        nbytes=len(data),
    )
