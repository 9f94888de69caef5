"""Blank page images for the generator, at the resolution a photo needs.

Uses `ocr.templates.render.blank_page(template, dpmm)` when that module is available; until then (or if it fails)
the template's committed reference PNG resampled, else a plain drawing of the template geometry (boxes, bubbles,
fiducials) so that every template can be filled. Results are cached per (template, quantised dpmm).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from ocr.templates import get_template, reference_path
from ocr.templates.schema import Template

DPMM_STEP = 0.25  # blank pages are cached at multiples of this resolution


def quantise_dpmm(dpmm: float) -> float:
    return max(DPMM_STEP, round(dpmm / DPMM_STEP) * DPMM_STEP)


def _draw_geometry(t: Template, dpmm: float) -> np.ndarray:
    W, H = int(round(t.page_size.width_mm * dpmm)), int(round(t.page_size.height_mm * dpmm))
    img = np.full((H, W), 250, np.uint8)
    lw = max(1, int(round(t.box_border_mm * dpmm)))
    for f in t.fields:
        for b in f.boxes:
            cv2.rectangle(img, (int(b.x * dpmm), int(b.y * dpmm)), (int((b.x + b.w) * dpmm), int((b.y + b.h) * dpmm)), 20, lw)
        for col in f.omr or []:
            for c in col.bubbles:
                cv2.circle(img, (int(c.cx * dpmm), int(c.cy * dpmm)), int(c.r * dpmm), 40, max(1, lw // 2), cv2.LINE_AA)
    fr = t.frame
    if fr.square_mm:
        s = fr.square_mm * dpmm
        for i, (x, y) in enumerate(fr.points):
            x, y = x * dpmm, y * dpmm
            if fr.kind == "checker_fiducials":
                # two squares touching diagonally at the point
                cv2.rectangle(img, (int(x - s), int(y - s)), (int(x), int(y)), 0, -1)
                cv2.rectangle(img, (int(x), int(y)), (int(x + s), int(y + s)), 0, -1)
            else:
                cv2.rectangle(img, (int(x - s / 2), int(y - s / 2)), (int(x + s / 2), int(y + s / 2)), 0, -1)
    return img


@lru_cache(maxsize=1)
def _render_fn():
    try:
        from ocr.templates.render import blank_page  # written by the templates engineer

        return blank_page
    except Exception:
        return None


@lru_cache(maxsize=8)
def _reference_gray(template_id: str) -> np.ndarray | None:
    t = get_template(template_id)
    p = reference_path(t)
    if p is None or not p.exists():
        return None
    return cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)


def blank_page_gray(template_id: str, dpmm: float) -> np.ndarray:
    """Grayscale blank page at `dpmm` (shared and read-only: callers copy before drawing).

    The page is fetched once at its native resolution (the reference's, else 4 px/mm) and resampled here, so photos
    of many sizes do not reload or re-render it.
    """
    return _resampled(template_id, quantise_dpmm(dpmm))


@lru_cache(maxsize=8)
def _resampled(template_id: str, dpmm: float) -> np.ndarray:
    t = get_template(template_id)
    return _sized(t, _native(template_id), dpmm)


@lru_cache(maxsize=32)
def _native(template_id: str) -> np.ndarray:
    t = get_template(template_id)
    native = t.reference.dpmm if t.reference is not None else 4.0
    fn = _render_fn()
    if fn is not None:
        try:
            img = np.asarray(fn(t, native))
            if img.ndim == 3:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
            return img.astype(np.uint8, copy=False)
        except Exception:  # fall back to the committed reference below
            pass
    ref = _reference_gray(template_id)
    return ref if ref is not None else _draw_geometry(t, native)


def _sized(t: Template, img: np.ndarray, dpmm: float) -> np.ndarray:
    W, H = int(round(t.page_size.width_mm * dpmm)), int(round(t.page_size.height_mm * dpmm))
    if img.shape[:2] != (H, W):
        img = cv2.resize(img, (W, H), interpolation=cv2.INTER_AREA if W < img.shape[1] else cv2.INTER_LINEAR)
    return img


