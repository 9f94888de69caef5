"""A minimal camera for stage tests: put a page image into a photo with a known homography (page mm -> photo px).

Deliberately independent of ocr/synth, so reader-stage tests do not depend on the generator they are checked against.
"""

from __future__ import annotations

import cv2
import numpy as np

from ocr.templates.schema import Template


def photograph(page: np.ndarray, dpmm: float, t: Template, corners_px, size=(3000, 4000), background=90, rotate=0):
    """Warp `page` (drawn at dpmm) so the page corners land on `corners_px` (tl, tr, br, bl) in a photo of `size`
    (w, h), then rotate the photo by `rotate` quarter turns clockwise. Returns (photo gray, H page mm -> photo px)."""
    ph, pw = page.shape[:2]
    src = np.float32([[0, 0], [pw, 0], [pw, ph], [0, ph]])
    M = cv2.getPerspectiveTransform(src, np.float32(corners_px))
    photo = cv2.warpPerspective(page, M, size, flags=cv2.INTER_AREA, borderValue=background)
    H = M @ np.diag([dpmm, dpmm, 1.0])
    w, h = size
    for _ in range(rotate % 4):
        photo = cv2.rotate(photo, cv2.ROTATE_90_CLOCKWISE)
        R = np.array([[0, -1, h - 1], [1, 0, 0], [0, 0, 1]], dtype=np.float64)  # (x, y) -> (h-1-y, x)
        H = R @ H
        w, h = h, w
    return photo, H


def tilted_corners(size=(3000, 4000), margin=0.06, skew=0.05):
    w, h = size
    return [
        (w * margin, h * (margin + skew)),
        (w * (1 - margin - skew), h * margin),
        (w * (1 - margin), h * (1 - margin - skew / 2)),
        (w * (margin + skew / 2), h * (1 - margin)),
    ]


def scan_on_platen(page: np.ndarray, dpmm: float, platen_mm: tuple[float, float], skew_deg: float = 0.0,
                   watermark_seed: int | None = 0):
    """A flatbed scan of `page` (drawn at dpmm) laid at the top-left of a larger platen of `platen_mm` (w, h), turned
    by `skew_deg` (counter-clockwise) about the page's top-left corner. With `watermark_seed`, faint rings are printed
    over sheet and platen alike (as on the 2014 KPU scans), so no brightness step shows where the sheet ends. Returns
    (scan gray, H page mm -> scan px)."""
    w, h = int(round(platen_mm[0] * dpmm)), int(round(platen_mm[1] * dpmm))
    R = cv2.getRotationMatrix2D((0.0, 0.0), skew_deg, 1.0)
    paper = 245
    scan = cv2.warpAffine(np.minimum(page, paper), R, (w, h), flags=cv2.INTER_AREA, borderValue=paper)
    if watermark_seed is not None:
        rng = np.random.default_rng(watermark_seed)
        for _ in range(int(w * h / (20 * dpmm) ** 2)):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(scan, centre, int(4 * dpmm), 205, max(1, int(round(0.8 * dpmm))))
    H = np.vstack([R, [0, 0, 1]]) @ np.diag([dpmm, dpmm, 1.0])
    return scan, H
