"""OMR: the bubble columns under the digit boxes (PPWP 2024 page 2), read as an independent reading of the number.

Each digit box has a column of 10 bubbles (0 at the top to 9 at the bottom) that the officer blackens for the digit
written in the box. Every bubble always carries ink (its printed ring and the printed digit inside), so a fill is
measured against the blank page: the same column is cut from the template's blank reference image and from the
photo, the blank is blurred to the photo's sharpness and the photo mapped to the blank's intensity units (a line fit
on the pixels no officer marks), and a bubble's fill is the share of its inner disc that is clearly darker than the
blank there. An empty bubble scores about 0 whatever its printed digit, a blackened one about 0.9-1, a sloppy partial
fill somewhere between.

Registration is never exact (paper is not flat): each column is first aligned to the blank column by template
matching within +-SEARCH_MM, judged only on the pixels no officer marks (masked matching: blackened bubbles neither
pull the fit nor lower its score), then each bubble is refined by +-REFINE_PX.

Decision per column, vxsuite style (reject rather than guess): the column's digit is the clearly darkest bubble:
fill >= MARK_FILL, at least MIN_MARGIN above the second darkest, and the second not itself a mark. No bubble above
BLANK_FILL: the column is blank. Anything else (two marks, a faint mark) is ambiguous.

Value: officers write "X" (or nothing) in unused leading boxes and then have no bubble to blacken, so **blank leading
columns count as 0** ("X 4 7" -> blank, 4, 7 -> 47). A blank column after a marked one (a missing digit), any
ambiguous column, or no marked column at all gives value None (an all-blank field is "not filled in", not 0; a zero
count is bubbled as 0 in the units column).

Confidence: the product over columns of a logistic of each column's margin, 0.5 exactly at the decision boundary
(marked: darkest minus second against MIN_MARGIN; blank: how far the darkest stays below BLANK_FILL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ocr.geometry import scale_matrix, warp_region
from ocr.results import OmrReading
from ocr.templates.schema import FieldSpec, OmrColumn, Rect, Template

OMR_DPMM = 4.0  # working resolution (px per mm): an 8.1 mm bubble is ~32 px across, like the 4 px/mm blank
REFERENCE_DPMM = 4.0  # resolution at which the blank page is fetched (the committed references are 4 px/mm)
SEARCH_MM = 5.0  # column alignment search, each direction (curled and folded sheets drift by several mm)
REFINE_PX = 3  # per-bubble refinement after the column alignment, each direction (working px)
INNER_RADIUS = 0.8  # inner disc (fraction of the bubble radius) where fill is measured: inside the printed ring
PIXEL_EXCESS = 0.3  # a pixel this much darker than the blank (in blank ink units) is marked
TOLERANCE_PX = 1  # ... than the blank anywhere within this many working px
_TOLERANCE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * TOLERANCE_PX + 1, 2 * TOLERANCE_PX + 1))
ALIGN_BLUR_PX = 1.2  # both sides are blurred this much (working px) before the column alignment
BLANK_BLURS_PX = (0.0, 1.0, 2.0, 3.5)  # blur widths tried to bring the blank to the photo's sharpness
MIN_ALIGN_SCORE = 0.3  # a column whose best match is below this was not found (occluded, cut off, wrong place)

# Thresholds on the fill (share of the inner disc marked). Tuned on 30 synthetic page-2 photos (`c1ocr synth` seed 3:
# curl, fold, shadow, blur, JPEG): empty bubbles p99 0.02, clean fills >= 0.75, sloppy partial fills 0.08-0.6; checked
# on 25 more (seed 11): 155 of 162 fields read, the rest None (partial fills, a pen over a column), none wrong.
MARK_FILL = 0.15  # a definite mark
BLANK_FILL = 0.06  # below this for every bubble: a blank column; between the two: a faint mark, ambiguous
MIN_MARGIN = 0.10  # the mark must beat the second darkest bubble by this much
CONF_SOFTNESS = 0.05  # logistic scale of a marked column's confidence around MIN_MARGIN
BLANK_SOFTNESS = 0.02  # logistic scale of a blank column's confidence around BLANK_FILL

ColumnStatus = Literal["marked", "blank", "ambiguous", "not_found"]


@dataclass(frozen=True)
class ColumnReading:
    status: ColumnStatus
    digit: int | None
    fills: list[float]  # excess fill per bubble, clipped to [0, 1]
    confidence: float  # confidence in `status` (and `digit` when marked)
    offset_mm: tuple[float, float]  # how far the column was found from where H puts it
    align_score: float


# --- images ------------------------------------------------------------------------------------------------------


def _normalise(dark: np.ndarray) -> np.ndarray:
    """Darkness region -> [0, 1] relative to its own paper (0) and ink (1) levels."""
    d = dark.astype(np.float32)
    paper = float(np.percentile(d, 25))  # most of a bubble column is paper
    ink = float(np.percentile(d, 99.5))
    span = max(ink - paper, 40.0)  # a region with no ink at all is not stretched into noise
    return np.clip((d - paper) / span, 0.0, 1.0)


def _column_rect(col: OmrColumn, pad_mm: float) -> Rect:
    xs = [b.cx for b in col.bubbles]
    ys = [b.cy for b in col.bubbles]
    r = max(b.r for b in col.bubbles)
    return Rect(
        x=min(xs) - r - pad_mm, y=min(ys) - r - pad_mm, w=max(xs) - min(xs) + 2 * (r + pad_mm),
        h=max(ys) - min(ys) + 2 * (r + pad_mm),
    )


def _warp(dark: np.ndarray, H: np.ndarray, rect: Rect) -> np.ndarray:
    w = max(8, int(round(rect.w * OMR_DPMM)))
    h = max(8, int(round(rect.h * OMR_DPMM)))
    return warp_region(dark, H, rect, w, h, border_value=0)


def _disc_mask(shape: tuple[int, int], cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def _blank_page(template: Template) -> np.ndarray | None:
    """The blank page (grayscale, REFERENCE_DPMM) or None; inverted to darkness per column crop, not per page."""
    from ocr.templates.render import blank_page

    try:
        page = blank_page(template, REFERENCE_DPMM)
    except Exception:  # noqa: BLE001 - no reference: fall back to relative scoring
        return None
    return page if page.ndim == 2 else page.min(axis=2)


def _template_of(field: FieldSpec) -> Template | None:
    from ocr.templates import list_templates

    for t in list_templates():
        for f in t.fields:
            if f is field or f == field:
                return t
    return None


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0 else img


def _unmarkable_mask(shape: tuple[int, int], centres: list[tuple[float, float, float]]) -> np.ndarray:
    """Pixels no officer marks: everything but the bubbles' inner discs (rings and paper between bubbles)."""
    outside = np.ones(shape, dtype=bool)
    for cx, cy, rpx in centres:
        outside &= ~_disc_mask(shape, cx, cy, rpx * (INNER_RADIUS + 0.15))
    return outside


def match_blank(photo: np.ndarray, ref: np.ndarray, outside: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Bring the blank column to the photo's sharpness and the photo to the blank's intensity units.

    Fitting photo ~ a * blur(blank, s) + b on the pixels that no officer marks, for a few blur widths s, and keeping
    the best fit, makes an empty bubble's interior match the blank's within a few hundredths even when the photo is
    soft (a blurred printed ring spreads ink into the disc; the blurred blank spreads it the same way). Returns
    (photo in blank units, the blurred blank, the chosen blur sigma in working px).
    """
    y = photo[outside].astype(np.float64)
    my, vy = float(y.mean()), float(y.var())
    best: tuple[float, float, float, np.ndarray, float] | None = None
    for sigma in BLANK_BLURS_PX:
        rb = _blur(ref, sigma)
        x = rb[outside].astype(np.float64)
        mx, vx = float(x.mean()), float(x.var())
        if x.size < 50 or vx < 1e-6:
            continue
        # Least squares y = a x + b in closed form; residual variance = var(y) - cov^2 / var(x).
        cov = float(((x - mx) * (y - my)).mean())
        a = cov / vx
        if not np.isfinite(a) or a < 0.2:
            continue  # no usable relation at this blur (occluded, wrong place)
        resid = vy - cov * cov / vx
        if best is None or resid < best[0]:
            best = (resid, a, my - a * mx, rb, sigma)
    if best is None:
        return photo, ref, 0.0
    _, a, b0, rb, sigma = best
    return ((photo - b0) / a).astype(np.float32), rb.astype(np.float32), sigma


def _local_levels(pwin: np.ndarray, ref_win: np.ndarray, around: np.ndarray) -> np.ndarray:
    """Re-level one bubble window on its own surroundings: a shadow edge or a fold across the column makes the
    column-wide fit wrong locally, and would otherwise read as fill. Only the offset is corrected, from the median
    difference around the disc, so marker that overflows the ring (common) cannot drag it."""
    if int(around.sum()) < 30:
        return pwin
    return pwin - float(np.median(pwin[around] - ref_win[around]))


# --- one column --------------------------------------------------------------------------------------------------


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def decide_column(fills: list[float], values: list[int]) -> tuple[ColumnStatus, int | None, float]:
    """Fills of one column -> (status, digit, confidence); see the module docstring."""
    order = np.argsort(fills)[::-1]
    f1 = float(fills[order[0]])
    f2 = float(fills[order[1]]) if len(fills) > 1 else 0.0
    if f1 < BLANK_FILL:
        return "blank", None, _logistic((BLANK_FILL - f1) / BLANK_SOFTNESS)
    if f1 >= MARK_FILL and f1 - f2 >= MIN_MARGIN and f2 < MARK_FILL:
        return "marked", int(values[order[0]]), _logistic((f1 - f2 - MIN_MARGIN) / CONF_SOFTNESS)
    return "ambiguous", None, 0.0


def _rings_image(col: OmrColumn, inner: Rect, shape: tuple[int, int]) -> np.ndarray:
    """Without a blank page: the rings drawn from the template geometry (enough to align on)."""
    ref = np.zeros(shape, np.float32)
    for b in col.bubbles:
        c = (int(round((b.cx - inner.x) * OMR_DPMM)), int(round((b.cy - inner.y) * OMR_DPMM)))
        cv2.circle(ref, c, int(round(b.r * OMR_DPMM)), 1.0, 2)
    return ref


def read_column(dark: np.ndarray, H: np.ndarray, col: OmrColumn, blank: np.ndarray | None) -> ColumnReading:
    """One bubble column. dark: the photo's darkness image; blank: the blank page, grayscale at REFERENCE_DPMM."""
    search_px = int(round(SEARCH_MM * OMR_DPMM))
    inner = _column_rect(col, pad_mm=1.0)
    outer = _column_rect(col, pad_mm=1.0 + SEARCH_MM)
    photo = _normalise(_warp(dark, H, outer))
    shape = (photo.shape[0] - 2 * search_px, photo.shape[1] - 2 * search_px)
    if blank is not None:
        blank_crop = warp_region(blank, scale_matrix(REFERENCE_DPMM), inner, shape[1], shape[0], border_value=255)
        ref = _normalise(255 - blank_crop)
    else:
        ref = _rings_image(col, inner, shape)
    n = len(col.bubbles)

    centres = [((b.cx - inner.x) * OMR_DPMM, (b.cy - inner.y) * OMR_DPMM, b.r * OMR_DPMM) for b in col.bubbles]
    unmarkable = _unmarkable_mask(shape, centres)

    # Column alignment: where in the searched region the blank column fits best, judged only on what no officer
    # marks (rings, printed text, paper between bubbles), so blackened bubbles neither pull the fit nor lower its
    # score. Both sides get the same blur so a soft photo still matches the crisp blank.
    pm, rm = _blur(photo, ALIGN_BLUR_PX), _blur(ref, ALIGN_BLUR_PX)
    if float(pm.std()) < 1e-3 or float(rm[unmarkable].std()) < 1e-3:
        score, dx, dy = 0.0, search_px, search_px
    else:
        res = cv2.matchTemplate(pm, rm, cv2.TM_CCOEFF_NORMED, mask=unmarkable.astype(np.float32))
        res = np.nan_to_num(res, nan=-1.0, posinf=-1.0, neginf=-1.0)
        _, score, _, (dx, dy) = cv2.minMaxLoc(res)
    offset_mm = ((dx - search_px) / OMR_DPMM, (dy - search_px) / OMR_DPMM)
    if score < MIN_ALIGN_SCORE:
        return ColumnReading("not_found", None, [0.0] * n, 0.0, offset_mm, float(score))
    aligned = photo[dy : dy + shape[0], dx : dx + shape[1]]
    if blank is not None:
        aligned, ref, _ = match_blank(aligned, ref, unmarkable)

    fills: list[float] = []
    for cx, cy, rpx in centres:
        half = int(math.ceil(rpx * 1.15))
        icx, icy = int(round(cx)), int(round(cy))
        y0, x0 = max(0, icy - half), max(0, icx - half)
        ref_win = ref[y0 : icy + half + 1, x0 : icx + half + 1]
        # Per-bubble refinement: the ring's position within +-REFINE_PX of the column fit.
        ry = rx = 0
        if blank is not None and ref_win.size and float(ref_win.std()) > 1e-3:
            by0, bx0 = max(0, y0 - REFINE_PX), max(0, x0 - REFINE_PX)
            big = aligned[by0 : y0 + ref_win.shape[0] + REFINE_PX, bx0 : x0 + ref_win.shape[1] + REFINE_PX]
            if big.shape[0] > ref_win.shape[0] and big.shape[1] > ref_win.shape[1] and float(big.std()) > 1e-3:
                r = cv2.matchTemplate(big, ref_win, cv2.TM_CCOEFF_NORMED)
                _, _, _, (bx, by) = cv2.minMaxLoc(r)
                rx, ry = bx - (x0 - bx0), by - (y0 - by0)
        disc = _disc_mask(ref_win.shape, cx - x0, cy - y0, rpx * INNER_RADIUS)
        pwin = aligned[y0 + ry : y0 + ry + ref_win.shape[0], x0 + rx : x0 + rx + ref_win.shape[1]]
        if pwin.shape != ref_win.shape or not disc.any():
            pwin = aligned[y0 : y0 + ref_win.shape[0], x0 : x0 + ref_win.shape[1]]
        if not disc.any():
            fills.append(0.0)
            continue
        if blank is not None:
            pwin = _local_levels(pwin, ref_win, ~_disc_mask(ref_win.shape, cx - x0, cy - y0, rpx * (INNER_RADIUS + 0.15)))
            # Fill = the share of the inner disc that is clearly darker than the blank there: a full fill is ~1, a
            # sloppy half fill ~0.5, and the printed digit (present in both) ~0.
            # The blank is taken at its darkest within +-TOLERANCE_PX, so a printed digit that is a pixel off (fold,
            # motion blur, JPEG) is not mistaken for a mark; a marker fill covers far more than that.
            ref_tol = cv2.dilate(ref_win, _TOLERANCE_KERNEL)
            fills.append(float(((pwin[disc] - ref_tol[disc]) > PIXEL_EXCESS).mean()))
        else:
            fills.append(float(pwin[disc].mean()))

    if blank is None:
        # Relative scoring: every bubble carries the same kind of print, so the column median is "empty".
        med = float(np.median(fills))
        fills = [f - med for f in fills]
    fills = [float(np.clip(f, 0.0, 1.0)) for f in fills]
    status, digit, conf = decide_column(fills, col.values)
    return ColumnReading(status, digit, fills, conf, offset_mm, float(score))


# --- a field -----------------------------------------------------------------------------------------------------


def combine_columns(columns: list[ColumnReading]) -> tuple[int | None, float]:
    """Column readings -> (value, confidence); blank leading columns count as 0 (see the module docstring)."""
    if not columns or any(c.status in ("ambiguous", "not_found") for c in columns):
        return None, 0.0
    seen_mark = False
    value = 0
    for c in columns:
        if c.status == "marked":
            seen_mark = True
            value = value * 10 + int(c.digit)  # type: ignore[arg-type]
        elif seen_mark:  # a blank column after a digit: a missing digit, not a zero
            return None, 0.0
        else:
            value = value * 10
    if not seen_mark:
        return None, 0.0
    conf = float(np.prod([c.confidence for c in columns]))
    return value, conf


def read_omr_columns(
    dark: np.ndarray, H: np.ndarray, field: FieldSpec, template: Template | None = None
) -> list[ColumnReading]:
    if not field.omr:
        return []
    template = template or _template_of(field)
    blank = _blank_page(template) if template is not None else None
    return [read_column(dark, H, col, blank) for col in field.omr]


def read_omr(dark: np.ndarray, H: np.ndarray, field: FieldSpec, template: Template | None = None) -> OmrReading:
    """Read the bubble columns of `field`.

    dark: darkness image of the photo (ocr.cells.darkness_image: 255 = ink); H: page mm -> photo px. `template`
    (the field's page) gives the blank reference; when omitted it is looked up among the built-in templates, and
    without one the fills are scored relative to the column median.
    """
    columns = read_omr_columns(dark, H, field, template)
    value, conf = combine_columns(columns)
    return OmrReading(
        digits=[c.digit for c in columns],
        value=value,
        confidence=round(conf, 4),
        fills=[[round(f, 3) for f in c.fills] for c in columns],
    )


__all__ = ["ColumnReading", "combine_columns", "decide_column", "read_column", "read_omr", "read_omr_columns"]
