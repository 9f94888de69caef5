"""Locate stage: which page is this, and where is it in the photo (a homography page mm -> photo px).

In order of trust:
1. AprilTag 36h10 (2024 plano and our KWK pages): the tag id names template and page; its corners give a coarse
   homography that predicts the four corner fiducials, which are then found by matching their known appearance in a
   small warped window (sub-millimetre), and the final homography is fitted on fiducials + tag corners.
2. Printed corner squares (2019 C1): the four solid squares nearest the photo corners.
3. Page edges (older forms with no marks): the sheet's outline against the background, or the photo frame for a
   scan.
For 2 and 3 the page identity and its orientation are unknown, so every candidate template and every quarter-turn is
tried, and each hypothesis is scored by how well the template's printed digit-box rows are found where it predicts
them (a per-field template match that also refines the homography).

The result is either `Located` or an `Unreadable` value (never an exception for a bad photo).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from ocr.errors import Unreadable, UnreadableReason
from ocr.geometry import homography_from_points, local_scale_px_per_mm, project, reprojection_error, warp_region
from ocr.templates import get_template, list_templates, reference_path, template_for_marker
from ocr.templates.schema import FieldSpec, Rect, Template

APRILTAG_DICT = cv2.aruco.DICT_APRILTAG_36h10
DETECT_LONG_SIDE = 1600  # tag search resolution (a 32 mm tag on a 600 mm page is still ~80 px)
FIDUCIAL_WINDOW_MM = 11.0  # search half-window around a predicted fiducial (must exceed FIDUCIAL_PATCH_MM)
FIDUCIAL_PATCH_MM = 6.5  # half-size of the fiducial appearance that is matched
FIDUCIAL_DPMM = 8.0
FIDUCIAL_MIN_SCORE = 0.45
FIELD_SEARCH_MM = 9.0  # how far a digit-box row is searched around its predicted position
FIELD_DPMM = 3.0
FIELD_MIN_SCORE = 0.30
SKEW_LONG_SIDE = 800  # photo resolution for a scan's skew estimate
SCAN_MAX_SKEW_DEG = 6.0  # a sheet laid on a platen by hand
SCAN_SKEW_STEP_DEG = 0.25
SCAN_MIN_SKEW_DEG = 0.5  # below this the upright placements are close enough for the box rows to correct
INNER_LINE_WEIGHT = 0.5  # the lines between a row's boxes count half as much as its outer frame (see _box_pattern)


@dataclass
class Located:
    template: Template
    H: np.ndarray  # page mm -> working-image px
    method: str
    marker_id: int | None = None
    frame_points_px: list[tuple[float, float]] = field(default_factory=list)
    reprojection_error_mm: float | None = None
    layout_score: float = 0.0  # mean match score of the digit-box rows (0..1)
    fields_matched: int = 0
    rotation_deg: int = 0
    print_matches: bool | None = None  # an unmarked page's print against its blank reference (None: not checked)

    def page_corners_px(self) -> np.ndarray:
        ps = self.template.page_size
        return project(self.H, [(0, 0), (ps.width_mm, 0), (ps.width_mm, ps.height_mm), (0, ps.height_mm)])

    @property
    def px_per_mm(self) -> float:
        ps = self.template.page_size
        return local_scale_px_per_mm(self.H, ps.width_mm / 2, ps.height_mm / 2)


# --------------------------------------------------------------------------------------------------- appearance


@lru_cache(maxsize=32)
def _reference_dark(template_id: str) -> tuple[np.ndarray, float] | None:
    """The template's blank page as a darkness image, with its px/mm."""
    t = get_template(template_id)
    path = reference_path(t)
    if path is not None and path.exists():
        g = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if g is not None:
            return 255 - g, t.reference.dpmm
    try:  # drawn from the template geometry (ocr/templates/render.py)
        from ocr.templates.render import render_page

        dpmm = 4.0
        return 255 - render_page(t, dpmm), dpmm
    except Exception:
        return None


def _reference_region(template: Template, rect: Rect, dpmm: float) -> np.ndarray | None:
    ref = _reference_dark(template.id)
    if ref is None:
        return None
    img, rdpmm = ref
    S = np.array([[rdpmm, 0, 0], [0, rdpmm, 0], [0, 0, 1]], dtype=np.float64)
    w = int(round(rect.w * dpmm))
    h = int(round(rect.h * dpmm))
    return warp_region(img, S, rect, w, h, border_value=0)


def _box_pattern(template: Template, fs: FieldSpec, region: Rect, dpmm: float) -> np.ndarray:
    """What a field's row of boxes looks like (darkness), drawn from geometry: used when no reference exists and
    to weight the match on the box lines rather than on printed text around them.

    The lines between boxes repeat at the box pitch, so a row shifted by one box still lands on most of them: they
    place the row finely but cannot tell which box is which. Only the row's ends can, so the sides between boxes
    are drawn fainter than the row's outer frame."""
    w = int(round(region.w * dpmm))
    h = int(round(region.h * dpmm))
    img = np.zeros((h, w), np.float32)
    t = max(1, int(round(template.box_border_mm * dpmm)))
    left = min(b.x for b in fs.boxes)
    right = max(b.x + b.w for b in fs.boxes)
    for b in fs.boxes:
        x0 = int(round((b.x - region.x) * dpmm))
        y0 = int(round((b.y - region.y) * dpmm))
        x1 = int(round((b.x + b.w - region.x) * dpmm))
        y1 = int(round((b.y + b.h - region.y) * dpmm))
        for x, edge in ((x0, b.x), (x1, b.x + b.w)):
            ink = 255.0 if edge in (left, right) else 255.0 * INNER_LINE_WEIGHT
            cv2.line(img, (x, y0), (x, y1), ink, t)
        cv2.line(img, (x0, y0), (x1, y0), 255.0, t)
        cv2.line(img, (x0, y1), (x1, y1), 255.0, t)
    return img


def _subpixel_peak(res: np.ndarray) -> tuple[float, float, float]:
    _, score, _, (px, py) = cv2.minMaxLoc(res)
    dx = dy = 0.0
    if 0 < px < res.shape[1] - 1:
        l, c, r = res[py, px - 1], res[py, px], res[py, px + 1]
        den = l - 2 * c + r
        if abs(den) > 1e-9:
            dx = 0.5 * (l - r) / den
    if 0 < py < res.shape[0] - 1:
        u, c, d = res[py - 1, px], res[py, px], res[py + 1, px]
        den = u - 2 * c + d
        if abs(den) > 1e-9:
            dy = 0.5 * (u - d) / den
    return px + dx, py + dy, float(score)


# --------------------------------------------------------------------------------------------------- markers


def detect_tags(gray: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """AprilTag 36h10 detections: (id, 4x2 corners in `gray` px, the tag's own tl,tr,br,bl order)."""
    long_side = max(gray.shape[:2])
    f = min(1.0, DETECT_LONG_SIDE / long_side)
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    det = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(APRILTAG_DICT), cv2.aruco.DetectorParameters())
    out: list[tuple[int, np.ndarray]] = []
    for img, scale in ((small, f), (gray, 1.0)) if f < 1 else ((gray, 1.0),):
        corners, ids, _ = det.detectMarkers(img)
        if ids is not None and len(ids):
            for c, i in zip(corners, ids.ravel()):
                pts = c.reshape(4, 2).astype(np.float64) / scale
                if scale != 1.0:  # refine at full resolution
                    pts32 = pts.astype(np.float32).reshape(-1, 1, 2)
                    win = max(2, int(round(2 / scale)))
                    cv2.cornerSubPix(
                        gray, pts32, (win, win), (-1, -1), (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 30, 0.01)
                    )
                    pts = pts32.reshape(4, 2).astype(np.float64)
                out.append((int(i), pts))
            break
    return out


def _tag_page_corners(template: Template) -> np.ndarray:
    """Page-mm positions of the tag's own tl, tr, br, bl corners (the tag may be printed rotated)."""
    m = template.marker
    rect_corners = m.rect.corners()  # page tl, tr, br, bl (clockwise)
    k = (m.rotation_deg // 90) % 4
    return np.array([rect_corners[(i + k) % 4] for i in range(4)], dtype=np.float64)


def _match_fiducial(dark: np.ndarray, H: np.ndarray, template: Template, pt, window_mm: float, dpmm: float,
                    scales=(1.0,), min_score: float = FIDUCIAL_MIN_SCORE):
    """Best match of the frame point's printed appearance within +-window_mm of where H predicts it.

    `scales` lets a wide search absorb the perspective scale change between the tag and a far corner.
    Returns (page-mm position under H of the match, score) or None."""
    region = Rect(x=pt[0] - window_mm, y=pt[1] - window_mm, w=2 * window_mm, h=2 * window_mm)
    size = int(round(2 * window_mm * dpmm))
    patch = warp_region(dark, H, region, size, size, border_value=0).astype(np.float32)
    best = None
    for sc in scales:
        half = FIDUCIAL_PATCH_MM / sc  # a bigger-looking fiducial = a smaller page area at this H
        pr = Rect(x=pt[0] - half, y=pt[1] - half, w=2 * half, h=2 * half)
        side = int(round(2 * FIDUCIAL_PATCH_MM * dpmm))
        tmpl = _reference_region(template, pr, side / (2 * half))
        if tmpl is None or float(tmpl.std()) < 1 or tmpl.shape[0] >= patch.shape[0] or tmpl.shape[1] >= patch.shape[1]:
            continue
        res = cv2.matchTemplate(patch, tmpl.astype(np.float32), cv2.TM_CCOEFF_NORMED)
        px, py, score = _subpixel_peak(res)
        if best is None or score > best[2]:
            best = (px + tmpl.shape[1] / 2, py + tmpl.shape[0] / 2, score)
    if best is None or best[2] < min_score:
        return None
    return (region.x + best[0] / dpmm, region.y + best[1] / dpmm), best[2]


def _shifted(H: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """H moved by (dx, dy) page mm: page point p maps where p + (dx, dy) mapped before."""
    return H @ np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def _refine_fiducial(dark: np.ndarray, H: np.ndarray, template: Template, pt, window_mm: float = FIDUCIAL_WINDOW_MM):
    """Find one frame point near its prediction. Wide windows are searched coarsely first (low resolution, several
    scales, a stricter score), then the hit is re-searched at full resolution.

    Returns (photo px point, score) or None."""
    dx = dy = 0.0
    if window_mm > FIDUCIAL_WINDOW_MM:
        dpmm = min(4.0, max(1.5, 200.0 / window_mm))
        m = _match_fiducial(dark, H, template, pt, window_mm, dpmm, scales=(0.75, 0.9, 1.1, 1.3), min_score=0.7)
        if m is None:
            return None
        dx, dy = m[0][0] - pt[0], m[0][1] - pt[1]
    H2 = _shifted(H, dx, dy)
    f = _match_fiducial(dark, H2, template, pt, FIDUCIAL_WINDOW_MM, FIDUCIAL_DPMM)
    if f is None:
        return None
    return project(H2, [f[0]])[0], f[1]


def find_checker_candidates(gray: np.ndarray) -> np.ndarray:
    """Photo positions of every "two black squares touching at a corner" mark (the 2024 plano's fiducials).

    Scale- and perspective-tolerant: each mark is one 8-connected dark blob whose centroid is the touch point, with
    two diagonally opposite quadrants filled and the other two empty. Returns an (N, 2) array (maybe empty).
    """
    h, w = gray.shape[:2]
    f = min(1.0, 2000.0 / max(h, w))
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    th = cv2.adaptiveThreshold(small, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 51, 25)
    n, lab, stats, cents = cv2.connectedComponentsWithStats(th, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        if ww < 8 or hh < 8 or ww > 0.1 * small.shape[1] or not (0.5 < ww / hh < 2.0):
            continue
        fill = a / float(ww * hh)
        if not (0.3 < fill < 0.7):
            continue
        cx, cy = cents[i]
        blob = lab[y : y + hh, x : x + ww] == i
        mx, my = int(round(cx - x)), int(round(cy - y))
        q = [blob[:my, :mx].mean() if my and mx else 0, blob[:my, mx:].mean() if my else 0,
             blob[my:, mx:].mean() if mx < ww else 0, blob[my:, :mx].mean() if mx else 0]
        diag1, diag2 = q[0] + q[2], q[1] + q[3]
        if max(diag1, diag2) > 1.3 and min(diag1, diag2) < 0.5:
            out.append((cx / f, cy / f))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _locate_by_tag(gray: np.ndarray, dark: np.ndarray, tag_id: int, corners: np.ndarray, template: Template) -> Located:
    """Tag -> coarse homography; then the fiducials, nearest first, each found one tightening the homography.

    A 32 mm tag extrapolated 800 mm across a page in perspective can be off by centimetres, so the search window grows
    with the distance from what is already known."""
    tag_pts = _tag_page_corners(template)
    H = homography_from_points(tag_pts, corners)
    frame = [tuple(p) for p in template.frame.points]
    tag_c = tag_pts.mean(axis=0)
    order = sorted(range(len(frame)), key=lambda i: np.hypot(frame[i][0] - tag_c[0], frame[i][1] - tag_c[1]))
    found: dict[int, np.ndarray] = {}
    candidates = find_checker_candidates(gray) if template.frame.kind == "checker_fiducials" else np.empty((0, 2))
    for i in order:
        known = [tag_c] + [np.array(frame[j]) for j in found]
        dist = min(np.hypot(frame[i][0] - k[0], frame[i][1] - k[1]) for k in known)
        window = min(FIDUCIAL_WINDOW_MM + 0.15 * dist, 130.0)
        r = None
        if len(candidates):
            # The nearest fiducial-shaped mark (in page mm under the current homography) is searched first:
            # far from the tag the homography's prediction can be off by more than any safe search window.
            cand_mm = project(np.linalg.inv(H), candidates)
            d = np.hypot(cand_mm[:, 0] - frame[i][0], cand_mm[:, 1] - frame[i][1])
            k = int(np.argmin(d))
            if d[k] < max(2 * window, 0.6 * dist):
                r = _refine_fiducial(dark, _shifted(H, cand_mm[k, 0] - frame[i][0], cand_mm[k, 1] - frame[i][1]),
                                     template, frame[i])
        if r is None:
            r = _refine_fiducial(dark, H, template, frame[i], window)
        if r is None:
            continue
        found[i] = r[0]
        pp = np.array([frame[j] for j in found] + list(map(tuple, tag_pts)))
        ii = np.array([found[j] for j in found] + list(corners))
        H = homography_from_points(pp, ii)
    if len(found) >= 3:
        # Leave-one-out check: a fiducial that disagrees with the homography of all the other points was a false
        # match found through a wide window; search it again, tightly, where the others put it.
        for i in list(found):
            others = [j for j in found if j != i]
            pp = np.array([frame[j] for j in others] + list(map(tuple, tag_pts)))
            ii = np.array([found[j] for j in others] + list(corners))
            H_o = homography_from_points(pp, ii)
            pred = project(H_o, [frame[i]])[0]
            if np.linalg.norm(pred - found[i]) / local_scale_px_per_mm(H_o, *frame[i]) > 2.0:
                r = _refine_fiducial(dark, H_o, template, frame[i])
                if r is None:
                    del found[i]
                else:
                    found[i] = r[0]
    if len(found) >= 3:
        # A final pass at the tight window from the best homography.
        pp = np.array([frame[j] for j in found] + list(map(tuple, tag_pts)))
        ii = np.array([found[j] for j in found] + list(corners))
        H = homography_from_points(pp, ii)
        for i in list(found):
            r = _refine_fiducial(dark, H, template, frame[i])
            if r is not None:
                found[i] = r[0]
        pp = np.array([frame[j] for j in found] + list(map(tuple, tag_pts)))
        ii = np.array([found[j] for j in found] + list(corners))
        H = homography_from_points(pp, ii)
        err_px = reprojection_error(H, pp, ii)
        err_mm = err_px / max(local_scale_px_per_mm(H, *np.mean(pp, axis=0)), 1e-6)
        method = "checker_fiducials" if len(found) == 4 else "checker_fiducials_partial"
    else:
        err_mm = None
        method = "apriltag"
    return Located(
        template=template,
        H=H,
        method=method,
        marker_id=tag_id,
        frame_points_px=[tuple(map(float, p)) for p in project(H, frame)],
        reprojection_error_mm=err_mm,
    )


# --------------------------------------------------------------------------------------------------- no markers


def _order_clockwise(pts: np.ndarray) -> np.ndarray:
    """tl, tr, br, bl in image orientation."""
    pts = np.asarray(pts, dtype=np.float64).reshape(4, 2)
    c = pts.mean(axis=0)
    ang = np.arctan2(pts[:, 1] - c[1], pts[:, 0] - c[0])
    pts = pts[np.argsort(ang)]  # clockwise from the left in image coordinates (y down)
    s = pts.sum(axis=1)
    k = int(np.argmin(s))
    return np.roll(pts, -k, axis=0)


def _quad_from_mask(mask: np.ndarray) -> np.ndarray | None:
    """The largest blob of a binary mask as a quadrilateral, if it is big enough to be the sheet."""
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    c = max(contours, key=cv2.contourArea)
    area = cv2.contourArea(c)
    if area < 0.12 * mask.shape[0] * mask.shape[1] or area > 0.97 * mask.shape[0] * mask.shape[1]:
        return None
    hull = cv2.convexHull(c)
    peri = cv2.arcLength(hull, True)
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * peri, True)
        if len(approx) == 4:
            return approx.reshape(4, 2).astype(np.float64)
    return cv2.boxPoints(cv2.minAreaRect(hull)).astype(np.float64)


def find_page_quads(gray: np.ndarray, bgr: np.ndarray | None = None) -> list[np.ndarray]:
    """Candidate outlines of the sheet (tl, tr, br, bl), best guesses first; the photo frame last (a scan).

    A bright, colourful background merges with the paper under one brightness threshold, so the paper is also
    looked for as the bright *unsaturated* region, and as the largest closed outline of strong edges. The layout of
    the digit boxes decides between them.
    """
    h, w = gray.shape[:2]
    f = min(1.0, 1000.0 / max(h, w))
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    blur = cv2.GaussianBlur(small, (5, 5), 0)
    kernel = np.ones((15, 15), np.uint8)
    masks = []
    otsu, th = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    masks.append(cv2.morphologyEx(th, cv2.MORPH_CLOSE, kernel))
    if bgr is not None:
        sb = cv2.resize(bgr, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(cv2.GaussianBlur(sb, (5, 5), 0), cv2.COLOR_BGR2HSV)
        paper = ((hsv[:, :, 1] < 70) & (hsv[:, :, 2] > max(otsu, 100))).astype(np.uint8) * 255
        masks.append(cv2.morphologyEx(cv2.morphologyEx(paper, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8)), cv2.MORPH_CLOSE, kernel))
    edges = cv2.dilate(cv2.Canny(blur, 50, 150), np.ones((3, 3), np.uint8))
    filled = np.zeros_like(edges)
    cs, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if cs:
        cv2.drawContours(filled, [max(cs, key=cv2.contourArea)], -1, 255, thickness=cv2.FILLED)
        masks.append(filled)
    quads: list[np.ndarray] = []
    for m in masks:
        q = _quad_from_mask(m)
        if q is None:
            continue
        q = _order_clockwise(q / f)
        if all(np.abs(q - other).max() > 0.02 * max(h, w) for other in quads):
            quads.append(q)
    quads.append(np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64))
    return quads


def find_corner_squares(gray: np.ndarray, template: Template) -> np.ndarray | None:
    """Centres of the template's four printed corner squares (tl, tr, br, bl in the photo), or None.

    Handwriting often touches a square (a signature stroke, a redaction blob): thin strokes are opened away first.
    Of the solid square blobs, the few outermost ones in each diagonal direction are candidates; the chosen four are
    those whose sizes best match what the frame they imply predicts (squares are all printed the same size, so a
    dark blob of the background or a pen does not fit). When one corner is lost it is completed from the other
    three (a scan is close to affine).
    """
    h, w = gray.shape[:2]
    f = min(1.0, 1400.0 / max(h, w))
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    sh, sw = small.shape[:2]
    diag = math.hypot(sh, sw)
    # Local threshold: a photo's background and shadows defeat one global threshold.
    block = int(0.04 * diag) | 1
    th = cv2.adaptiveThreshold(small, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, max(block, 31), 30)
    k = max(3, int(round(0.006 * diag)))
    th = cv2.morphologyEx(th, cv2.MORPH_OPEN, np.ones((k, k), np.uint8))
    n, lab, stats, cents = cv2.connectedComponentsWithStats(th, connectivity=8)
    cands, sides = [], []
    for i in range(1, n):
        x, y, ww, hh, a = stats[i]
        if ww < 0.006 * diag or ww > 0.05 * diag:
            continue
        if x == 0 or y == 0 or x + ww >= sw or y + hh >= sh:
            continue  # cut by the photo's edge (or the scanner's dark margin): its centre is not a square's centre
        if not (0.6 < ww / max(hh, 1) < 1.6):
            continue
        if a < 0.75 * ww * hh:
            continue
        cands.append(cents[i])
        sides.append(math.sqrt(a))
    if len(cands) < 3:
        return None
    cands = np.array(cands)
    sides = np.array(sides)
    # Outermost first in each diagonal direction (tl: min x+y, tr: max x-y, br: max x+y, bl: max y-x).
    scores = [-(cands[:, 0] + cands[:, 1]), cands[:, 0] - cands[:, 1], cands[:, 0] + cands[:, 1], cands[:, 1] - cands[:, 0]]
    shortlist = [list(np.argsort(-sc)[:3]) for sc in scores]
    frame = np.array(template.frame.points, dtype=np.float64)
    square = template.frame.square_mm or 5.0
    best, best_pen = None, float("inf")
    seen: set[frozenset] = set()
    for combo in itertools.product(*shortlist):
        if len(set(combo)) < 4 or frozenset(combo) in seen:
            continue
        seen.add(frozenset(combo))
        quad = _order_clockwise(cands[list(combo)])  # tl, tr, br, bl as the photo shows them
        order = [int(np.argmin(np.linalg.norm(cands - p, axis=1))) for p in quad]
        if not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
            continue
        try:
            H = homography_from_points(frame, quad)
        except ValueError:
            continue
        pen = 0.0
        for i, j in enumerate(order):
            expected = square * local_scale_px_per_mm(H, *frame[i])
            pen += abs(math.log(max(sides[j], 1e-3) / max(expected, 1e-3)))
        if pen < best_pen:
            best, best_pen = quad, pen
    if best is not None and best_pen < 4 * math.log(1.6):
        return best / f
    # One corner lost (ink over it, cut by the scanner): complete it from the other three.
    for missing in range(4):
        others = [shortlist[c][0] for c in range(4) if c != missing]
        if len(set(others)) < 3:
            continue
        if max(sides[others]) > 1.6 * min(sides[others]):
            continue
        a, b_, c = (cands[shortlist[(missing + d) % 4][0]] for d in (1, 2, 3))
        pts = [None] * 4
        for d, p in zip((1, 2, 3), (a, b_, c)):
            pts[(missing + d) % 4] = p
        pts[missing] = a + c - b_  # parallelogram completion
        return np.array(pts) / f
    return None


def _field_search_rect(fs: FieldSpec) -> Rect:
    xs = [b.x for b in fs.boxes] + [b.x + b.w for b in fs.boxes]
    ys = [b.y for b in fs.boxes] + [b.y + b.h for b in fs.boxes]
    return Rect(x=min(xs), y=min(ys), w=max(xs) - min(xs), h=max(ys) - min(ys))


def match_field_row(dark: np.ndarray, H: np.ndarray, template: Template, fs: FieldSpec, search_mm: float
                    ) -> tuple[float, float, float] | None:
    """Where a field's row of printed boxes best matches within +-search_mm of where H puts it.

    Returns (score, dx mm, dy mm), or None when the row falls outside the photo."""
    ih, iw = dark.shape[:2]
    core = _field_search_rect(fs)
    pad = 2.5
    tmpl_rect = Rect(x=core.x - pad, y=core.y - pad, w=core.w + 2 * pad, h=core.h + 2 * pad)
    centre = project(H, [tmpl_rect.center])[0]
    if not (0 <= centre[0] < iw and 0 <= centre[1] < ih):
        return None
    s = search_mm
    region = Rect(x=tmpl_rect.x - s, y=tmpl_rect.y - s, w=tmpl_rect.w + 2 * s, h=tmpl_rect.h + 2 * s)
    rw, rh = int(round(region.w * FIELD_DPMM)), int(round(region.h * FIELD_DPMM))
    # Blur both a little: tolerant to line width and to sub-mm misregistration.
    patch = cv2.GaussianBlur(warp_region(dark, H, region, rw, rh, border_value=0).astype(np.float32), (0, 0), 1.0)
    tmpl = cv2.GaussianBlur(_box_pattern(template, fs, tmpl_rect, FIELD_DPMM), (0, 0), 1.0)
    res = cv2.matchTemplate(patch, tmpl, cv2.TM_CCOEFF_NORMED)
    px, py, score = _subpixel_peak(res)
    return max(score, 0.0), px / FIELD_DPMM - s, py / FIELD_DPMM - s


def refine_by_fields(dark: np.ndarray, H: np.ndarray, template: Template, anchors=None, model: str = "homography"
                     ) -> tuple[np.ndarray, float, int]:
    """Match each field's row of boxes around its predicted place and refit the homography on the matches.

    `anchors` (page points, photo points) are detected marks that the fit must keep honouring (the corner squares),
    so a few mismatched rows cannot drag the page away from its marks. `model` is what the matches may change:
    "homography" (a photo), "affine" (a scan: no perspective, fewer ways to go wrong) or "none" (score only).
    Returns (H, mean match score over fields, number of fields matched).
    """
    page_pts, img_pts, scores = [], [], []
    n_matched = 0
    for fs in template.fields:
        m = match_field_row(dark, H, template, fs, FIELD_SEARCH_MM)
        scores.append(0.0 if m is None else m[0])
        if m is None or m[0] < FIELD_MIN_SCORE:
            continue
        _, dx_mm, dy_mm = m
        n_matched += 1
        for b in fs.boxes:  # every box corner of the matched row is a correspondence
            for (x, y) in b.corners():
                page_pts.append((x, y))
                img_pts.append(project(H, [(x + dx_mm, y + dy_mm)])[0])
    score = float(np.mean(scores)) if scores else 0.0
    if anchors is not None:
        for pp_a, ii_a in zip(*anchors):
            for _ in range(6):  # weight: one mark counts as much as a row of boxes
                page_pts.append(tuple(pp_a))
                img_pts.append(np.asarray(ii_a, dtype=np.float64))
    if len(page_pts) >= 8 and model != "none":
        pp = np.array(page_pts)
        ii = np.array(img_pts)
        spread = np.ptp(pp, axis=0)
        tol = 2.0 * local_scale_px_per_mm(H, *pp.mean(axis=0))
        if len({tuple(p) for p in pp}) >= 4 and spread.min() > 20:  # rows spread over the page
            if model == "affine":
                A, inl = cv2.estimateAffine2D(pp, ii, method=cv2.RANSAC, ransacReprojThreshold=tol)
                Hn = None if A is None else np.vstack([A, [0, 0, 1]])
            else:
                Hn, inl = cv2.findHomography(pp, ii, cv2.RANSAC, tol)
            if Hn is not None and inl is not None and inl.sum() >= 0.6 * len(pp):
                H = Hn
        else:  # a single row (or rows in one line): only a translation is reliable
            d = (ii - project(H, pp)).mean(axis=0)
            H = np.array([[1, 0, d[0]], [0, 1, d[1]], [0, 0, 1]], dtype=np.float64) @ H
    return H, score, n_matched


def layout_fit(dark: np.ndarray, H: np.ndarray, template: Template, tolerance_mm: float = 1.5) -> float:
    """How well every field's row of boxes sits where H puts it (mean match score, each field allowed only
    `tolerance_mm` of play). Unlike the refinement search, a wrong page or a wrong quarter turn cannot score well by
    letting each field wander to the nearest box-like lines."""
    scores = [m[0] if (m := match_field_row(dark, H, template, fs, tolerance_mm)) is not None else 0.0 for fs in template.fields]
    return float(np.mean(scores)) if scores else 0.0


FEATURE_LONG_SIDE = 1200  # photo resolution for feature alignment
CONFIRM_LAYOUT_SCORE = 0.45  # below this box-row fit, an unmarked page's print must match its blank reference
CONFIRM_MAX_DRIFT = 0.03  # feature and outline placements agree within this share of the page diagonal
FEATURE_REF_DPMM = 2.0


def _feature_detector():
    """SIFT where the OpenCV build has it (OpenCV 5's main module does; AKAZE moved to contrib), else ORB."""
    if hasattr(cv2, "SIFT_create"):
        return cv2.SIFT_create(nfeatures=4000), cv2.NORM_L2
    return cv2.ORB_create(nfeatures=4000), cv2.NORM_HAMMING


@lru_cache(maxsize=8)
def _reference_features(template_id: str):
    """SIFT (or ORB) keypoints and descriptors of a template's blank reference rendering (page mm = px / dpmm)."""
    ref = _reference_dark(template_id)
    if ref is None:
        return None
    dark, dpmm = ref
    scale = FEATURE_REF_DPMM / dpmm
    img = cv2.resize(255 - dark, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    kps, desc = _feature_detector()[0].detectAndCompute(img, None)
    if desc is None or len(kps) < 20:
        return None
    pts_mm = np.array([k.pt for k in kps], dtype=np.float64) / FEATURE_REF_DPMM
    return pts_mm, desc


def align_by_features(gray: np.ndarray, template: Template) -> np.ndarray | None:
    """Homography page mm -> photo px from local features matched against the blank reference (kawalc1's approach),
    for unmarked forms whose sheet outline is lost in a cluttered background. None when too few matches agree."""
    ref = _reference_features(template.id)
    if ref is None:
        return None
    pts_mm, ref_desc = ref
    f = min(1.0, FEATURE_LONG_SIDE / max(gray.shape[:2]))
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    detector, norm = _feature_detector()
    kps, desc = detector.detectAndCompute(small, None)
    if desc is None or len(kps) < 20:
        return None
    matches = cv2.BFMatcher(norm).knnMatch(ref_desc, desc, k=2)
    good = [m[0] for m in matches if len(m) == 2 and m[0].distance < 0.8 * m[1].distance]
    if len(good) < 15:
        return None
    src = pts_mm[[m.queryIdx for m in good]]
    dst = np.array([kps[m.trainIdx].pt for m in good], dtype=np.float64) / f
    H, inliers = cv2.findHomography(src, dst, cv2.RANSAC, 4.0 / f)
    if H is None or inliers is None or inliers.sum() < 12:
        return None
    return H


def _drift(H0: np.ndarray, H: np.ndarray, t: Template) -> float:
    """How far a refinement moved the page corners, as a fraction of the page's diagonal in the photo."""
    ps = t.page_size
    corners = [(0, 0), (ps.width_mm, 0), (ps.width_mm, ps.height_mm), (0, ps.height_mm)]
    a, b = project(H0, corners), project(H, corners)
    diag = float(np.linalg.norm(a[2] - a[0])) or 1.0
    return float(np.linalg.norm(a - b, axis=1).max()) / diag


def _refine_hypothesis(dark: np.ndarray, H0: np.ndarray, t: Template, model: str
                       ) -> tuple[np.ndarray | None, int, float]:
    """Refine a placement by the box rows (twice: the first pass corrects most of an outline's error, the second
    what remains) and score it. A pass is kept only if it improves the layout fit: on a periodic row of boxes a
    further pass can walk the page one box further.

    Returns (H, or None when the rows pulled the page far from its outline; fields matched; layout fit)."""
    best: tuple[np.ndarray | None, int, float] = (None, 0, -1.0)
    H = H0
    for _ in range(1 if model == "none" else 2):
        H, _, n = refine_by_fields(dark, H, t, model=model)
        if _drift(H0, H, t) > 0.08:
            break
        score = layout_fit(dark, H, t)
        if score <= best[2]:
            break
        best = (H, n, score)
        if n == 0:
            break
    return best


def _is_scan_frame(quad: np.ndarray, shape) -> bool:
    """The detected outline is the photo's own frame: a flatbed scan (or a photo cropped to the sheet)."""
    h, w = shape[:2]
    frame = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    return bool(np.abs(quad - frame).max() < 0.02 * max(h, w))


def _scan_hypotheses(template: Template, shape):
    """Placements of the sheet on a scanner platen larger than the sheet (A4 on a legal-size glass: the 2014 KPU
    scans), where the photo frame is not the page: the sheet at full width, aligned to the top, middle or bottom,
    upright or upside down. Yields (rotation, H)."""
    h, w = shape[:2]
    ps = template.page_size
    s = w / ps.width_mm
    if abs(h / w - ps.height_mm / ps.width_mm) < 0.03 * ps.height_mm / ps.width_mm or s * ps.height_mm > h * 1.02:
        return  # the frame has the page's own shape: the ordinary outline hypotheses cover it
    R180 = np.array([[-1, 0, w - 1], [0, -1, h - 1], [0, 0, 1]], dtype=np.float64)
    for y0 in (0.0, (h - s * ps.height_mm) / 2, h - s * ps.height_mm):
        H = np.array([[s, 0, 0], [0, s, y0], [0, 0, 1]], dtype=np.float64)
        yield 0, H
        yield 180, R180 @ H


def _scan_skew_deg(gray: np.ndarray) -> float:
    """The turn (degrees, counter-clockwise positive as cv2.getRotationMatrix2D turns) that straightens a sheet laid
    askew on a scanner's platen: the one that makes the printed rules and text lines horizontal, i.e. the row
    profile of ink most peaked. A scan's frame is upright even when the sheet is not."""
    f = min(1.0, SKEW_LONG_SIDE / max(gray.shape[:2]))
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    ink = cv2.adaptiveThreshold(small, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 15).astype(np.float32)
    h, w = ink.shape
    best_deg, best_peak = 0.0, -1.0
    for deg in np.arange(-SCAN_MAX_SKEW_DEG, SCAN_MAX_SKEW_DEG + 1e-9, SCAN_SKEW_STEP_DEG):
        turned = cv2.warpAffine(ink, cv2.getRotationMatrix2D((w / 2, h / 2), float(deg), 1.0), (w, h))
        peak = float((np.diff(turned.sum(axis=1)) ** 2).sum())
        if peak > best_peak:
            best_deg, best_peak = float(deg), peak
    return best_deg


def _turned(hyps: list[tuple[int, np.ndarray]], deg: float, shape) -> list[tuple[int, np.ndarray]]:
    """The same placements for a sheet that a turn by `deg` (_scan_skew_deg) straightens: turned the other way about
    the photo's centre."""
    h, w = shape[:2]
    M = np.vstack([cv2.getRotationMatrix2D((w / 2, h / 2), deg, 1.0), [0, 0, 1]])  # photo -> deskewed photo
    back = np.linalg.inv(M)
    return [(rot, back @ H) for rot, H in hyps]


def _hypotheses(points_mm, quad_img: np.ndarray):
    """Homographies mapping four page points onto a detected quad, one per quarter turn."""
    pts = np.array(points_mm, dtype=np.float64)
    for k in range(4):
        yield k * 90, homography_from_points(pts, np.roll(quad_img, -k, axis=0))


def _locate_without_marker(gray: np.ndarray, dark: np.ndarray, candidates: list[Template],
                           bgr: np.ndarray | None = None) -> Located | None:
    squares: dict[str, np.ndarray | None] = {}
    outlines: list[np.ndarray] | None = None
    skew: float | None = None
    best: Located | None = None
    best_score = -1.0
    for t in candidates:
        if t.frame.kind == "checker_fiducials":
            continue  # marked pages without a readable tag are not guessed
        ps = t.page_size
        page_pts = [(0, 0), (ps.width_mm, 0), (ps.width_mm, ps.height_mm), (0, ps.height_mm)]
        sources: list[tuple[str, list, np.ndarray]] = []
        if t.frame.kind == "corner_squares":
            if t.id not in squares:
                squares[t.id] = find_corner_squares(gray, t)
            if squares[t.id] is not None:
                sources.append(("corner_squares", t.frame.points, squares[t.id]))
        if not sources or sources[0][0] == "corner_squares":  # marks lost, or a wrong square picked: the outline too
            if outlines is None:
                outlines = find_page_quads(gray, bgr)
            pts = t.frame.points if t.frame.kind == "page_edges" else page_pts
            sources += [("page_edges", pts, q) for q in outlines]
        own_best = -1.0
        own: Located | None = None
        print_matches: bool | None = None  # did the printed content match the reference (None: not asked)
        for kind, pts, quad in sources + ([("features", None, None)] if t.reference is not None else []):
            if kind == "features":
                # Feature alignment against the blank reference (slower): only when outlines gave no good fit.
                Hf = align_by_features(gray, t) if own_best < CONFIRM_LAYOUT_SCORE else None
                if own_best < CONFIRM_LAYOUT_SCORE:
                    print_matches = Hf is not None and (own is None or _drift(Hf, own.H, t) < CONFIRM_MAX_DRIFT)
                if Hf is None:
                    continue
                hyps_extra = [(0, Hf)]
            # Printed marks fix the page (measured within half a millimetre on real scans): box rows only score it.
            # A sheet outline is approximate: box rows correct it, affinely when the "outline" is a scan's frame.
            scan = kind == "page_edges" and _is_scan_frame(quad, gray.shape)
            model = "none" if kind == "corner_squares" else ("affine" if scan else "homography")
            hyps = hyps_extra if kind == "features" else list(_hypotheses(pts, quad))
            if scan:
                hyps += list(_scan_hypotheses(t, gray.shape))
                if skew is None:
                    skew = _scan_skew_deg(gray)
                if abs(skew) >= SCAN_MIN_SKEW_DEG:  # the frame is upright, the sheet on the platen is not
                    hyps += _turned(hyps, skew, gray.shape)
            for rot, H0 in hyps:
                # A wrong quarter turn or a wrong template finds no box rows where it expects them.
                H, n, score = _refine_hypothesis(dark, H0, t, model)
                if H is None:
                    continue  # the box rows pulled the page far from its outline: they matched something else
                if score > own_best:
                    own_best = score
                    frame_px = project(H, t.frame.points)
                    own = Located(
                        template=t,
                        H=H,
                        method=kind,
                        frame_points_px=[tuple(map(float, p)) for p in frame_px],
                        layout_score=score,
                        fields_matched=n,
                        rotation_deg=rot,
                    )
        if own is not None and own.method != "features":
            own.print_matches = print_matches
        if own is not None and own.layout_score > best_score:
            best, best_score = own, own.layout_score
        if best is not None and best.template.id == t.id and best_score > 0.6:
            break  # the expected/first candidate fits clearly: no need to try the others
    return best


# --------------------------------------------------------------------------------------------------- entry point


def _marked_sheet_runs_off(gray: np.ndarray, bgr: np.ndarray | None, marks: np.ndarray, *, min_marks: int) -> bool:
    """Whether the sheet's outline follows the photo's own edge while corner marks of a tagged page are visible (so
    the page is sharp enough that framing, not focus, lost the tag)."""
    if len(marks) < min_marks:
        return False
    h, w = gray.shape[:2]
    sheet = find_page_quads(gray, bgr)[0]
    margin = 3.0  # a cut sheet's outline follows the photo's own edge
    touches = bool((sheet[:, 0] < margin).any() or (sheet[:, 1] < margin).any()
                   or (sheet[:, 0] > w - 1 - margin).any() or (sheet[:, 1] > h - 1 - margin).any())
    return touches and not _is_scan_frame(sheet, gray.shape)


def locate(gray: np.ndarray, *, expected: Template | None = None, min_layout_score: float = 0.35,
           bgr: np.ndarray | None = None) -> Located | Unreadable:
    """Identify the page and register it. `gray` is the working image (upright as loaded); `bgr`, when given,
    helps to find the sheet of an unmarked form against a colourful background."""
    dark = 255 - gray
    tags = detect_tags(gray)
    known = [(i, c, template_for_marker("apriltag_36h10", i)) for i, c in tags]
    known = [k for k in known if k[2] is not None]
    if known:
        # Prefer the expected page's tag if several tags are visible (two pages in one photo).
        known.sort(key=lambda k: (expected is None or k[2].id != expected.id, -cv2.contourArea(k[1].astype(np.float32))))
        tag_id, corners, t = known[0]
        loc = _locate_by_tag(gray, dark, tag_id, corners, t)
        H, loc.layout_score, loc.fields_matched = refine_by_fields(dark, loc.H, t)
        if loc.method == "apriltag":  # fiducials not found: the box rows are the better registration
            loc.H = H
        return loc
    if tags:
        return Unreadable(UnreadableReason.NOT_FOUND, f"AprilTag id(s) {sorted(i for i, _ in tags)} are not known forms")
    marks = find_checker_candidates(gray)
    spread = np.ptp(marks, axis=0) / np.array(gray.shape[1::-1], dtype=np.float64) if len(marks) else np.zeros(2)
    # Corner marks sit far apart, not in one row of handwriting. (A slot that expects an unmarked form says what this
    # is: then mark-like blobs in the photo are not a reason to stop.)
    if (expected is None or expected.marker is not None) and len(marks) >= 3 and spread.min() > 0.3:
        # Corner marks of a tagged page but no readable tag: never guess an unmarked form from its box rows.
        if len(marks) < 4:
            return Unreadable(UnreadableReason.CUT_OFF, f"{len(marks)} corner marks seen and the page tag is not in the photo")
        # four or more: the tag is in the photo but unreadable (blur, glare, a finger on it)
        return Unreadable(UnreadableReason.NOT_FOUND, "corner marks seen but the page tag (top right) cannot be read")
    if expected is not None and expected.marker is not None:
        # The slot is a tagged page and no tag is in the photo: an old unmarked form would be a guess. A sheet
        # running off the photo's edge says why the tag is missing.
        if _marked_sheet_runs_off(gray, bgr, marks, min_marks=1):
            return Unreadable(UnreadableReason.CUT_OFF, f"the sheet runs off the photo and the page tag of {expected.id} is not in it")
        return Unreadable(UnreadableReason.NOT_FOUND, f"the page tag of {expected.id} is not in the photo")
    candidates = [t for t in list_templates() if t.frame.kind != "checker_fiducials"]
    if expected is not None and expected in candidates:
        candidates.remove(expected)
        candidates.insert(0, expected)
    best = _locate_without_marker(gray, dark, candidates, bgr)
    if expected is not None and best is not None and best.template.id != expected.id and expected in candidates:
        # The slot says which page this should be: keep it unless another page fits clearly better (a wrong page
        # must be caught, but two similar old forms must not be confused by a hair of layout score).
        own = _locate_without_marker(gray, dark, [expected], bgr)
        own_score = own.layout_score if own is not None else 0.0
        if own is not None and own_score >= min_layout_score and own_score > best.layout_score - 0.08:
            best = own
        elif best.layout_score - own_score < 0.15:
            # Neither page fits convincingly: telling the officer "wrong page" would be a guess.
            return Unreadable(
                UnreadableReason.NOT_FOUND,
                f"the page does not match {expected.id} (layout score {own_score:.2f}) nor clearly another form",
            )
    if best is None or best.layout_score < min_layout_score:
        if _marked_sheet_runs_off(gray, bgr, marks, min_marks=2):
            # No slot named the page, no unmarked form fits, and a tagged page's corner marks lie on a sheet that
            # leaves the photo: the framing lost the tag, and "retake with all four corners" is the instruction.
            return Unreadable(UnreadableReason.CUT_OFF, f"{len(marks)} corner marks seen on a sheet that runs off the photo, and no page tag")
        detail = "no form marker, corner squares or digit-box layout found"
        if best is not None:
            detail += f" (best guess {best.template.id}, layout score {best.layout_score:.2f})"
        return Unreadable(UnreadableReason.NOT_FOUND, detail)
    if best.print_matches is False:
        # A weak box-row fit alone does not make a page this form: another form's table (a DPR page, say) can fit
        # a plano's rows about as well. Where a blank reference exists, its print must agree.
        return Unreadable(
            UnreadableReason.NOT_FOUND,
            f"the digit boxes fit {best.template.id} only weakly (layout score {best.layout_score:.2f}) and the printed "
            "page does not match its blank form",
        )
    return best
