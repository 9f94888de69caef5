"""Gate stage: reject rather than guess.

After the page is located, decide whether the photo is good enough to read the digit boxes at all. Each check is
measured on the digit boxes themselves (not on the whole photo: a blurry background does not matter, a blurry box
does), and a failure is a typed `Unreadable` reason with a retake instruction. Thresholds live in
`ocr.config.GateThresholds`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ocr.config import GateThresholds
from ocr.errors import Unreadable, UnreadableReason
from ocr.geometry import local_scale_px_per_mm, project, tilt_degrees, warp_region
from ocr.locate import Located
from ocr.templates.schema import Rect

SAMPLE_DPMM = 4.0  # resolution at which box regions are sampled for the photometric checks


@dataclass
class GateResult:
    ok: bool
    unreadable: Unreadable | None
    metrics: dict[str, float] = field(default_factory=dict)
    occluded_boxes: list[tuple[str, int]] = field(default_factory=list)


def _all_boxes(loc: Located) -> list[tuple[str, int, Rect]]:
    return [(f.id, i, b) for f in loc.template.fields for i, b in enumerate(f.boxes)]


def _line_width_mm(patch: np.ndarray, dpmm: float) -> tuple[float, float] | None:
    """Apparent width (full width at half maximum) of the box's left and top printed border, in mm.

    A 1 mm printed line stays about 1 mm in a sharp photo; defocus or motion spreads it (a Gaussian blur of sigma
    widens it to about 2.35 * sqrt(sigma^2 + w^2 / 12)). Measured on the border, not on the ink, so it does not
    depend on how boldly the officer wrote. Returns (width mm, line contrast in darkness levels), or None when no
    printed line is visible (covered, glare).
    """
    p = patch.astype(np.float32)
    n = p.shape[0]
    inner = slice(n // 4, 3 * n // 4)
    widths, contrasts = [], []
    for prof in (p[inner, :].mean(axis=0), p[:, inner].mean(axis=1)):
        seg = prof[: int(0.35 * len(prof))]  # the left/top border lies in the first third (box + 15% margin)
        k = int(np.argmax(seg))
        base = float(np.percentile(prof, 20))
        peak = float(seg[k])
        if peak - base < 25:
            continue
        half = base + (peak - base) / 2
        lo = k
        while lo > 0 and seg[lo] > half:
            lo -= 1
        hi = k
        while hi < len(seg) - 1 and seg[hi] > half:
            hi += 1
        if lo == 0 or hi == len(seg) - 1:
            continue
        # interpolate the half-maximum crossings
        left = lo + (half - seg[lo]) / max(seg[lo + 1] - seg[lo], 1e-6)
        right = hi - 1 + (seg[hi - 1] - half) / max(seg[hi - 1] - seg[hi], 1e-6)
        widths.append((right - left) / dpmm)
        contrasts.append(peak - base)
    return (float(np.median(widths)), float(np.median(contrasts))) if widths else None


def photo_level_reason(gray: np.ndarray, th: GateThresholds) -> Unreadable | None:
    """Why no form could be found, when the whole photo says it: too dark, or blurred beyond any edge.

    Used only after locate failed, so an officer hears "blurry, retake" rather than "form not recognised".
    """
    f = 1000.0 / max(gray.shape[:2])
    small = cv2.resize(gray, None, fx=f, fy=f, interpolation=cv2.INTER_AREA) if f < 1 else gray
    s = small.astype(np.float32)
    paper = float(np.percentile(s, 85))
    if paper < th.min_mean_luma:
        return Unreadable(UnreadableReason.TOO_DARK, f"photo brightness {paper:.0f}/255 and no form found")
    gx = cv2.Sobel(s, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(s, cv2.CV_32F, 0, 1)
    # strongest edges relative to the photo's contrast: a page of print has crisp ones unless the photo is smeared
    edge = float(np.percentile(np.hypot(gx, gy), 99.5)) / max(float(np.percentile(s, 95) - np.percentile(s, 5)), 1.0)
    if edge < th.min_photo_edge:
        return Unreadable(UnreadableReason.BLURRY, f"no sharp edge anywhere in the photo (edge score {edge:.2f}) and no form found")
    return None


def gate(bgr: np.ndarray, loc: Located, th: GateThresholds) -> GateResult:
    """Measure everything first, then decide in the order an officer can act on: light, framing, angle and
    distance, then the boxes themselves (reflection, focus, something covering them)."""
    h, w = bgr.shape[:2]
    t = loc.template
    m: dict[str, float] = {}
    if loc.reprojection_error_mm is not None:
        m["reprojection_error_mm"] = round(loc.reprojection_error_mm, 3)
    tilt = tilt_degrees(loc.H, t.page_size.width_mm, t.page_size.height_mm)
    m["tilt_deg"] = round(tilt, 1)
    m["layout_score"] = round(loc.layout_score, 3)

    boxes = _all_boxes(loc)
    inside_boxes = []
    for item in boxes:
        b = item[2]
        q = project(loc.H, Rect(x=b.x - 1, y=b.y - 1, w=b.w + 2, h=b.h + 2).corners())
        if (q[:, 0] >= 0).all() and (q[:, 1] >= 0).all() and (q[:, 0] < w).all() and (q[:, 1] < h).all():
            inside_boxes.append(item)
    outside = len(boxes) - len(inside_boxes)
    m["boxes_outside"] = float(outside)
    # Marks must be in the photo; a scanned sheet's own edges may be trimmed by the scanner.
    frame_out = 0 if t.frame.kind == "page_edges" else sum(
        1 for x, y in project(loc.H, t.frame.points) if not (0 <= x < w and 0 <= y < h)
    )
    m["frame_points_outside"] = float(frame_out)
    box_px = min(local_scale_px_per_mm(loc.H, *b.center) * min(b.w, b.h) for _, _, b in boxes)
    m["min_box_px"] = round(box_px, 1)

    # Per box (inside the photo): paper level, border width (blur), washed-out or covered boxes.
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lumas, blur_mm, contrast = [], [], []  # blur_mm: per box, border width beyond the printed width
    occluded: list[tuple[str, int]] = []
    glared: list[tuple[str, int]] = []
    for fid, i, b in inside_boxes:
        margin = 0.15 * b.w
        r = Rect(x=b.x - margin, y=b.y - margin, w=b.w + 2 * margin, h=b.h + 2 * margin)
        n = int(round(r.w * SAMPLE_DPMM))
        patch = warp_region(gray, loc.H, r, n, n)
        lumas.append(float(np.percentile(patch, 75)))  # the paper level around the box
        line = _line_width_mm(255 - patch, SAMPLE_DPMM)
        if line is not None:
            blur_mm.append(line[0] - t.box_border_mm)
            contrast.append(line[1])
            continue
        # No printed border visible: washed out by a reflection, or covered by something dark.
        if float((patch >= 250).mean()) > th.max_glare_fraction:
            glared.append((fid, i))
        elif np.percentile(patch, 90) < 0.45 * 255:
            occluded.append((fid, i))
    paper = float(np.median(lumas)) if lumas else 0.0
    m["paper_luma"] = round(paper, 1)
    # How much wider than printed the box borders look: the blur, in mm.
    m["blur_mm"] = round(float(np.median(blur_mm)) if blur_mm else 99.0, 3)
    m["line_contrast"] = round(float(np.median(contrast)) if contrast else 0.0, 1)
    m["glare_boxes"] = float(len(glared))
    m["occluded_boxes"] = float(len(occluded))

    def fail(reason: UnreadableReason, detail: str, occ=()) -> GateResult:
        return GateResult(False, Unreadable(reason, detail), m, list(occ))

    if lumas and paper < th.min_mean_luma:
        return fail(UnreadableReason.TOO_DARK, f"paper brightness {paper:.0f}/255")
    if outside > th.max_cut_off_fraction * len(boxes):
        return fail(UnreadableReason.CUT_OFF, f"{outside} of {len(boxes)} digit boxes are outside the photo")
    # The whole sheet must be in the photo, as officers are told: registration that rests on marks outside the
    # frame is extrapolation, and a cut sheet is how a half-photographed page looks.
    if frame_out:
        return fail(UnreadableReason.CUT_OFF, f"{frame_out} of the 4 corner marks are outside the photo")
    if loc.reprojection_error_mm is not None and loc.reprojection_error_mm > th.max_reprojection_mm:
        return fail(UnreadableReason.BAD_GEOMETRY, f"corner marks disagree by {loc.reprojection_error_mm:.1f} mm (folded or curled page?)")
    if loc.layout_score < th.min_layout_score:
        return fail(UnreadableReason.BAD_GEOMETRY, f"digit boxes not where the page marks put them (layout score {loc.layout_score:.2f})")
    if tilt > th.max_tilt_deg:
        return fail(UnreadableReason.BAD_GEOMETRY, f"photo taken at {tilt:.0f} degrees to the page")
    if box_px < th.min_box_px:
        return fail(UnreadableReason.TOO_SMALL, f"digit boxes are only {box_px:.0f} px wide (need {th.min_box_px:.0f})")
    if glared:
        names = ", ".join(f"{f}[{i}]" for f, i in glared[:5])
        return fail(UnreadableReason.GLARE, f"{len(glared)} boxes washed out by a reflection: {names}")
    if m["blur_mm"] > th.max_blur_mm:
        return fail(UnreadableReason.BLURRY, f"box borders smeared by {m['blur_mm']:.1f} mm")
    if paper > th.max_mean_luma and m["line_contrast"] < th.min_line_contrast:
        return fail(UnreadableReason.TOO_BRIGHT, f"paper brightness {paper:.0f}/255, printed lines faded to {m['line_contrast']:.0f}")
    if len(occluded) > th.max_occluded_boxes:
        names = ", ".join(f"{f}[{i}]" for f, i in occluded[:5])
        return fail(UnreadableReason.OCCLUDED, f"{len(occluded)} boxes covered: {names}", occluded)
    return GateResult(True, None, m)
