"""Review images: the field crop (perspective-corrected) and the page image with the field highlighted.

The reading's `location.page_corners_px` are the sheet's corners in the photo (tl, tr, br, bl); with the template's
page size they give the page-mm -> photo-px homography, so a field's boxes (page mm) map onto the photo.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ocr.templates.schema import FieldSpec, Template

CROP_PX_PER_MM = 8.0
CROP_PAD_MM = 4.0
PAGE_LONG_SIDE_PX = 1600


def homography(template: Template, page_corners_px: list) -> np.ndarray:
    w, h = template.page_size.width_mm, template.page_size.height_mm
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[float(x), float(y)] for x, y in page_corners_px])
    return cv2.getPerspectiveTransform(src, dst)


def field_rect_mm(spec: FieldSpec, pad: float = CROP_PAD_MM) -> tuple[float, float, float, float]:
    xs = [b.x for b in spec.boxes] + [b.x + b.w for b in spec.boxes]
    ys = [b.y for b in spec.boxes] + [b.y + b.h for b in spec.boxes]
    return min(xs) - pad, min(ys) - pad, max(xs) + pad, max(ys) + pad


def field_polygon_px(template: Template, spec: FieldSpec, page_corners_px: list) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = field_rect_mm(spec, pad=1.0)
    pts = np.float32([[[x0, y0]], [[x1, y0]], [[x1, y1]], [[x0, y1]]])
    out = cv2.perspectiveTransform(pts, homography(template, page_corners_px))
    return [(float(p[0][0]), float(p[0][1])) for p in out]


@lru_cache(maxsize=8)
def _decode(path: str, mtime_ns: int) -> np.ndarray:  # noqa: ARG001 - mtime keys the cache
    data = np.fromfile(path, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("stored photo cannot be decoded")
    return img


def decode_photo(path: str) -> np.ndarray:
    import os

    return _decode(path, os.stat(path).st_mtime_ns)


def crop_png(img: np.ndarray, template: Template, spec: FieldSpec, page_corners_px: list) -> bytes:
    x0, y0, x1, y1 = field_rect_mm(spec)
    s = CROP_PX_PER_MM
    # crop px -> page mm -> photo px
    to_mm = np.array([[1 / s, 0, x0], [0, 1 / s, y0], [0, 0, 1]], dtype=np.float64)
    m = homography(template, page_corners_px) @ to_mm
    size = (int(round((x1 - x0) * s)), int(round((y1 - y0) * s)))
    crop = cv2.warpPerspective(img, m, size, flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP, borderValue=(255, 255, 255))
    ok, buf = cv2.imencode(".png", crop)
    return buf.tobytes()


def page_jpeg(img: np.ndarray, polygon: list[tuple[float, float]] | None) -> tuple[bytes, float]:
    """The photo scaled to PAGE_LONG_SIDE_PX with the polygon drawn; returns (jpeg, scale applied)."""
    h, w = img.shape[:2]
    scale = min(1.0, PAGE_LONG_SIDE_PX / max(h, w))
    small = cv2.resize(img, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA) if scale < 1 else img.copy()
    if polygon:
        pts = np.int32([[x * scale, y * scale] for x, y in polygon])
        cv2.polylines(small, [pts], isClosed=True, color=(0, 0, 255), thickness=max(2, int(4 * scale)))
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes(), scale
