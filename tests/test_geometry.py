"""Region warps (ocr/geometry.py): anti-aliased downsampling stays right and bounded for any homography."""

from __future__ import annotations

import cv2
import numpy as np

from ocr import geometry
from ocr.geometry import MAX_BLUR_SIGMA_PX, scale_matrix, warp_region
from ocr.templates.schema import Rect


def _pattern(h: int = 2400, w: int = 2000) -> np.ndarray:
    """Smooth shading and large blocks: what survives a strong downsample, so two correct resamplers agree on it."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = 100 + 60 * np.sin(xx / 310.0) * np.cos(yy / 270.0)
    img[400:1200, 300:900] += 60
    img[1500:2100, 1100:1700] -= 70
    return np.clip(img, 0, 255).astype(np.uint8)


def test_shrinking_first_matches_the_full_resolution_blur(monkeypatch):
    image = _pattern()
    H, rect = scale_matrix(40.0), Rect(x=0, y=0, w=50, h=60)  # 40 photo px per output px: a blur of sigma 18
    out = warp_region(image, H, rect, 50, 60, border_value=0)
    monkeypatch.setattr(geometry, "MAX_BLUR_SIGMA_PX", 1e9)  # the plain path: one blur at full resolution
    ref = warp_region(image, H, rect, 50, 60, border_value=0)
    assert out.shape == ref.shape == (60, 50)
    inner = (slice(2, -2), slice(2, -2))  # the edges see the region's border differently
    assert np.abs(out[inner].astype(float) - ref[inner].astype(float)).max() <= 3.0


def test_degenerate_homography_never_asks_for_a_huge_blur(monkeypatch):
    # A misdetected tag once gave H a local scale of 34,000 px per mm: the region's pre-blur had sigma 15,000 and
    # held one page for over 25 minutes. The blur must stay narrow, whatever H says.
    sigmas: list[float] = []
    real_blur = cv2.GaussianBlur

    def spy(src, ksize, sigma, *args, **kwargs):
        sigmas.append(float(sigma))
        return real_blur(src, ksize, sigma, *args, **kwargs)

    monkeypatch.setattr(geometry.cv2, "GaussianBlur", spy)
    image = _pattern(3246, 2435)
    H = np.array([[34000.0, 0.0, -1.0e6], [0.0, 34000.0, -1.5e6], [0.0, 0.0, 1.0]])
    out = warp_region(image, H, Rect(x=20, y=30, w=80, h=80), 400, 400, border_value=0)
    assert out.shape == (400, 400)
    assert sigmas and max(sigmas) <= MAX_BLUR_SIGMA_PX
