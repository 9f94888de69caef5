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


def _line_width_mm(patch: np.ndarray, dpmm: float) -> float | None:
    """Apparent width (full width at half maximum) of the box's left and top printed border, in mm.

    A 1 mm printed line stays about 1 mm in a sharp photo; defocus or motion spreads it (a Gaussian blur of sigma
    widens it to about 2.35 * sqrt(sigma^2 + w^2 / 12)). Measured on the border, not on the ink, so it does not
    depend on how boldly the officer wrote. Returns None when no printed line is visible (covered, glare).
    """
    p = patch.astype(np.float32)
    n = p.shape[0]
    inner = slice(n // 4, 3 * n // 4)
    widths = []
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
    return float(np.median(widths)) if widths else None


def gate(bgr: np.ndarray, loc: Located, th: GateThresholds) -> GateResult:
    h, w = bgr.shape[:2]
    t = loc.template
    m: dict[str, float] = {}

    # Geometry: homography plausibility.
    if loc.reprojection_error_mm is not None:
        m["reprojection_error_mm"] = round(loc.reprojection_error_mm, 3)
    tilt = tilt_degrees(loc.H, t.page_size.width_mm, t.page_size.height_mm)
    m["tilt_deg"] = round(tilt, 1)
    m["layout_score"] = round(loc.layout_score, 3)

    boxes = _all_boxes(loc)
    # Cut off: any digit box (with a little margin) outside the photo.
    outside = 0
    for _, _, b in boxes:
        q = project(loc.H, Rect(x=b.x - 1, y=b.y - 1, w=b.w + 2, h=b.h + 2).corners())
        if (q[:, 0] < 0).any() or (q[:, 1] < 0).any() or (q[:, 0] >= w).any() or (q[:, 1] >= h).any():
            outside += 1
    m["boxes_outside"] = float(outside)
    if outside > th.max_cut_off_fraction * len(boxes):
        return GateResult(False, Unreadable(UnreadableReason.CUT_OFF, f"{outside} of {len(boxes)} digit boxes are outside the photo"), m)

    if loc.reprojection_error_mm is not None and loc.reprojection_error_mm > th.max_reprojection_mm:
        return GateResult(
            False,
            Unreadable(UnreadableReason.BAD_GEOMETRY, f"corner marks disagree by {loc.reprojection_error_mm:.1f} mm (folded or curled page?)"),
            m,
        )
    if loc.layout_score < th.min_layout_score:
        return GateResult(
            False,
            Unreadable(UnreadableReason.BAD_GEOMETRY, f"digit boxes not where the page marks put them (layout score {loc.layout_score:.2f})"),
            m,
        )
    if tilt > th.max_tilt_deg:
        return GateResult(False, Unreadable(UnreadableReason.BAD_GEOMETRY, f"photo taken at {tilt:.0f} degrees to the page"), m)

    # Resolution: the smallest box, in photo pixels.
    box_px = min(local_scale_px_per_mm(loc.H, *b.center) * min(b.w, b.h) for _, _, b in boxes)
    m["min_box_px"] = round(box_px, 1)
    if box_px < th.min_box_px:
        return GateResult(
            False, Unreadable(UnreadableReason.TOO_SMALL, f"digit boxes are only {box_px:.0f} px wide (need {th.min_box_px:.0f})"), m
        )

    # Photometric checks on the boxes.
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    lumas, blur_mm, glare_fracs = [], [], []  # blur_mm: per box, border width beyond the printed width
    occluded: list[tuple[str, int]] = []
    for fid, i, b in boxes:
        margin = 0.15 * b.w
        r = Rect(x=b.x - margin, y=b.y - margin, w=b.w + 2 * margin, h=b.h + 2 * margin)
        n = int(round(r.w * SAMPLE_DPMM))
        patch = warp_region(gray, loc.H, r, n, n)
        lumas.append(float(np.percentile(patch, 75)))  # the paper level around the box
        s = _line_width_mm(255 - patch, SAMPLE_DPMM)
        if s is not None:
            blur_mm.append(s - loc.template.box_border_mm)
        glare_fracs.append(float((patch >= 250).mean()))
        # Occlusion: a box whose paper is gone (finger, pen, shadowed object) and whose border is not visible.
        if np.percentile(patch, 90) < 0.45 * 255 and s is None:
            occluded.append((fid, i))
    paper = float(np.median(lumas))
    m["paper_luma"] = round(paper, 1)
    # How much wider than printed the box borders look: the blur, in mm.
    m["blur_mm"] = round(float(np.median(blur_mm)) if blur_mm else 99.0, 3)
    m["glare_fraction"] = round(float(np.max(glare_fracs)), 3)
    m["occluded_boxes"] = float(len(occluded))
    if paper < th.min_mean_luma:
        return GateResult(False, Unreadable(UnreadableReason.TOO_DARK, f"paper brightness {paper:.0f}/255"), m)
    if m["blur_mm"] > th.max_blur_mm:
        return GateResult(False, Unreadable(UnreadableReason.BLURRY, f"box borders smeared by {m['blur_mm']:.1f} mm"), m)
    # Glare: saturated patches on the boxes of a photo whose paper is otherwise not saturated (a flatbed scan's
    # white is 255 everywhere and is not glare).
    if paper < 248 and m["glare_fraction"] > th.max_glare_fraction * 4:
        return GateResult(False, Unreadable(UnreadableReason.GLARE, f"{m['glare_fraction'] * 100:.0f}% of a box is washed out"), m)
    if paper > th.max_mean_luma and m["blur_mm"] > 0.5 * th.max_blur_mm:
        return GateResult(False, Unreadable(UnreadableReason.TOO_BRIGHT, f"paper brightness {paper:.0f}/255, low contrast"), m)
    if len(occluded) > th.max_occluded_boxes:
        names = ", ".join(f"{f}[{i}]" for f, i in occluded[:5])
        return GateResult(False, Unreadable(UnreadableReason.OCCLUDED, f"{len(occluded)} boxes covered: {names}"), m, occluded)
    return GateResult(True, None, m)
