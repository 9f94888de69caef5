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
