"""Page geometry: homographies between page millimetres and photo pixels, and region warps.

Convention used everywhere: `H` maps page millimetres (x right, y down, origin top-left of the sheet) to photo pixels,
as a 3x3 float64 matrix for `cv2.perspectiveTransform`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ocr.templates.schema import Rect


MAX_BLUR_SIGMA_PX = 8.0  # widest anti-aliasing blur `warp_region` runs at full resolution


def scale_matrix(s: float) -> np.ndarray:
    return np.array([[s, 0, 0], [0, s, 0], [0, 0, 1]], dtype=np.float64)


def translate_matrix(tx: float, ty: float) -> np.ndarray:
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)


def project(H: np.ndarray, pts) -> np.ndarray:
    """Map Nx2 points through H."""
    arr = np.asarray(pts, dtype=np.float64).reshape(-1, 1, 2)
    return cv2.perspectiveTransform(arr, H).reshape(-1, 2)


def local_scale_px_per_mm(H: np.ndarray, x: float, y: float) -> float:
    """Geometric-mean pixels per millimetre of H around page point (x, y)."""
    p = project(H, [(x, y), (x + 1, y), (x, y + 1)])
    sx = float(np.linalg.norm(p[1] - p[0]))
    sy = float(np.linalg.norm(p[2] - p[0]))
    return math.sqrt(max(sx, 1e-9) * max(sy, 1e-9))


def warp_region(
    image: np.ndarray,
    H: np.ndarray,
    rect: Rect,
    out_w: int,
    out_h: int,
    *,
    border_value: int | tuple = 255,
    interpolation: int = cv2.INTER_AREA,
) -> np.ndarray:
    """Resample the page rectangle `rect` (mm) of a photo into an `out_w` x `out_h` image.

    Only the region is warped (never the whole page), so the cost is proportional to the output size.
    """
    # page mm -> output px
    A = np.array(
        [[out_w / rect.w, 0, -rect.x * out_w / rect.w], [0, out_h / rect.h, -rect.y * out_h / rect.h], [0, 0, 1]],
        dtype=np.float64,
    )
    # output px -> photo px = H @ inv(A)
    M = H @ np.linalg.inv(A)
    # INTER_AREA is not supported by warpPerspective; pre-blur when downsampling instead.
    scale = local_scale_px_per_mm(H, *rect.center) * rect.w / out_w  # photo px per output px
    src = image
    interp = cv2.INTER_LINEAR if interpolation == cv2.INTER_AREA else interpolation
    if scale > 1.6 and interpolation == cv2.INTER_AREA:
        # Blur only the bounding box we read from, to avoid aliasing when shrinking.
        quad = project(H, rect.corners())
        x0, y0 = np.floor(quad.min(axis=0)).astype(int) - 4
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 4
        hh, ww = image.shape[:2]
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, ww), min(y1, hh)
        if x1 > x0 and y1 > y0:
            roi = image[y0:y1, x0:x1]
            M = translate_matrix(-x0, -y0) @ M
            sigma = 0.45 * scale
            if sigma > MAX_BLUR_SIGMA_PX:
                # A blur costs time in proportion to its width: average f x f pixel blocks first, and blur what is
                # left. Only a near-degenerate homography (a misdetected tag, a region near the horizon) asks for
                # this; a blur of sigma 15,000 px there held one page for over 25 minutes.
                f = math.ceil(sigma / MAX_BLUR_SIGMA_PX)
                h0, w0 = roi.shape[:2]
                sw, sh = max(1, round(w0 / f)), max(1, round(h0 / f))
                roi = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA)
                kx, ky = sw / w0, sh / h0  # region px -> shrunk px, pixel centres kept
                M = np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1]], dtype=np.float64) @ M
                sigma = min(0.45 * scale * min(kx, ky), MAX_BLUR_SIGMA_PX)
            src = cv2.GaussianBlur(roi, (0, 0), max(sigma, 0.5))
    return cv2.warpPerspective(
        src,
        M,
        (out_w, out_h),
        flags=interp | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=border_value,
    )


def homography_from_points(page_pts, image_pts) -> np.ndarray:
    H, _ = cv2.findHomography(np.asarray(page_pts, np.float64), np.asarray(image_pts, np.float64), 0)
    if H is None:
        raise ValueError("degenerate point set")
    return H


def reprojection_error(H: np.ndarray, page_pts, image_pts) -> float:
    """RMS distance in pixels between projected page points and their detections."""
    p = project(H, page_pts)
    d = np.linalg.norm(p - np.asarray(image_pts, np.float64).reshape(-1, 2), axis=1)
    return float(np.sqrt(np.mean(d**2)))


def tilt_degrees(H: np.ndarray, page_w: float, page_h: float, focal_px: float | None = None) -> float:
    """Approximate angle between camera axis and page normal implied by H.

    Uses the standard plane-pose decomposition with an assumed focal length (1.2 x the larger image-side extent of
    the page when not given): good enough to reject grazing-angle photos, not a calibration.
    """
    corners = project(H, [(0, 0), (page_w, 0), (page_w, page_h), (0, page_h)])
    cx, cy = corners.mean(axis=0)
    extent = float(np.max(corners.max(axis=0) - corners.min(axis=0)))
    f = focal_px or 1.2 * max(extent, 1.0)
    K = np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]], dtype=np.float64)
    B = np.linalg.inv(K) @ H
    r1, r2 = B[:, 0], B[:, 1]
    lam = 2.0 / (np.linalg.norm(r1) + np.linalg.norm(r2))
    r1, r2 = r1 * lam, r2 * lam
    n = np.cross(r1, r2)
    n /= np.linalg.norm(n) + 1e-12
    return float(math.degrees(math.acos(min(1.0, abs(n[2])))))
