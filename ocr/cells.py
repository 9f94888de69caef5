"""Cells stage: from a located page to one normalised image per digit box (the fields' boxes, and the boxes of the
tally-row totals where each row has a box per digit).

For each box the page region (box plus a margin) is warped to a canonical crop (`CROP_PX` square, the box border
mapped to `[MARGIN_PX, MARGIN_PX + BOX_PX]`). Paper is never flat, so the printed box lines are searched for a few
pixels around where the homography predicts them; the border is removed; the ink is found against the local paper
white; and the ink is normalised into a `CELL_PX` square for the digit readers.

The same `prepare_cell` is used on synthetic training cells (ocr/read/train.py), so the classifier sees exactly what
the reader will give it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ocr.geometry import local_scale_px_per_mm, warp_region
from ocr.templates.schema import FieldSpec, Rect, Template

BOX_PX = 64  # the box (border middle to border middle) in the canonical crop
MARGIN_PX = 16  # margin around the box in the canonical crop: room for the local search and for overflowing ink
CROP_PX = BOX_PX + 2 * MARGIN_PX
CELL_PX = 32  # classifier input side
GLYPH_PX = 24  # longest side of the normalised glyph inside CELL_PX
# How far (canonical px) the box lines are searched around their predicted position: nearly the whole margin. A
# curled, tilted, shaken page puts boxes up to a fifth of a box (13 px) off the page's homography (BENCHMARKS.md,
# "Hand-shaken and curled photos"); the lines are found as a pair a box width apart, so the wider window does not
# pull in the neighbours' lines.
SEARCH_PX = 15
SIZE_TOLERANCE_PX = 10  # a found pair further than this from the box's width is a digit stroke, not the box
RECENTRE_PX = 4  # a box whose lines sit this far (canonical px) from the prediction is cut again around them
# The middle of a box side, where a line's darkness profile is read: away from the corners where lines cross.
SIDE = slice(MARGIN_PX + BOX_PX // 6, MARGIN_PX + BOX_PX - BOX_PX // 6)

EMPTY_INK_FRACTION = 0.004  # below this much ink (of the box interior) a box is empty
SPECK_FRACTION = 0.0025  # connected ink blobs smaller than this (of the interior) are noise
# Strokes are grown into the faint ink beside them (hysteresis): a hand-shaken photo smears the strokes across the
# shake and leaves those along it dark, so one digit's strokes differ several-fold in darkness, and a single threshold
# kept only the dark ones (a "6" became a blob and an arc, an "8" a few dots). Growth is bounded: at most
# WEAK_GROW_PX into ink above WEAK_INK (soft ink, see `ink_map`), and never within WEAK_EDGE_PX of the interior's
# sides, where faint ink is more often a box line's blurred flank or a scanned form's grey border than writing
# (unbounded growth hung such bands on the digits of the 2014 scans). Faint ink touching no stroke stays out.
WEAK_INK = 0.2
WEAK_GROW_PX = 6
WEAK_EDGE_PX = 8


@dataclass
class PreparedCell:
    """A box ready for the readers."""

    input: np.ndarray  # CELL_PX x CELL_PX float32 in [0, 1], 1 = ink
    ink_fraction: float  # ink area / box interior area
    empty: bool  # too little ink to be a mark at all
    line_offset_px: tuple[float, float]  # how far the found box lines sit from the prediction (canonical px, x/y)
    lines_found: int  # of the 4 box lines, how many were found as printed lines
    touches_border: bool  # ink runs into the removed border band (digit crossing the box line)
    interior: np.ndarray = field(repr=False, default=None)  # ink map of the box interior (debug)
    # The kept ink at box scale (the interior resized to CELL_PX square, not centred or magnified): where the mark
    # sits in the box and how much of it it fills, which `input` throws away. A "1" stands in the middle of its box;
    # a box-line remnant hugs a side; a small dash and a small thick "1" differ mostly in that.
    placement: np.ndarray = field(repr=False, default=None)

    def channels(self, n: int) -> np.ndarray:
        """The digit model's input planes: 1 -> the glyph; 2 -> the glyph and its placement in the box."""
        if n == 1:
            return np.asarray(self.input, np.float32)[None]
        if n == 2:
            place = self.placement if self.placement is not None else np.zeros((CELL_PX, CELL_PX), np.float32)
            return np.stack([np.asarray(self.input, np.float32), np.asarray(place, np.float32)])
        raise ValueError(f"a digit model takes 1 or 2 input planes, not {n}")


@dataclass
class CellCrop:
    field_id: str  # the field's id, or for a tally-row total box its row's id (FieldSpec.row_total_id)
    index: int  # box index within the field (or the row), left to right
    crop: np.ndarray  # CROP_PX square, "darkness" image: 0 = paper, 255 = darkest ink
    border_px: float  # printed border width in canonical px
    px_per_mm_photo: float  # photo resolution at this box (for the gate)
    cell: PreparedCell | None = None


def darkness_image(bgr_or_gray: np.ndarray) -> np.ndarray:
    """A single channel where ink is bright: 255 - min(R, G, B).

    The minimum channel makes blue and black marker equally dark, and keeps yellowed paper close to white.
    """
    if bgr_or_gray.ndim == 2:
        return cv2.bitwise_not(bgr_or_gray)
    b, g, r = cv2.split(bgr_or_gray)  # cv2's per-element min is ~20x faster than numpy's min over the channel axis
    return cv2.bitwise_not(cv2.min(cv2.min(b, g), r))


def box_crop(dark: np.ndarray, H: np.ndarray, box: Rect) -> np.ndarray:
    """Warp one box (plus margin) of a darkness image into the canonical CROP_PX square."""
    m = box.w * MARGIN_PX / BOX_PX
    mh = box.h * MARGIN_PX / BOX_PX
    region = Rect(x=box.x - m, y=box.y - mh, w=box.w + 2 * m, h=box.h + 2 * mh)
    return warp_region(dark, H, region, CROP_PX, CROP_PX, border_value=0)


def _smoothed(profile: np.ndarray, width: float) -> np.ndarray:
    k = max(1, int(round(width)))
    return np.convolve(profile, np.ones(k) / k, mode="same")


def _line_peaks(smooth: np.ndarray, expected: int, level: float) -> list[int]:
    """Local maxima above `level` within the search window around `expected`."""
    lo = max(0, expected - SEARCH_PX)
    hi = min(len(smooth), expected + SEARCH_PX + 1)
    return [
        i
        for i in range(lo, hi)
        if smooth[i] > level and smooth[i] >= smooth[max(i - 1, 0)] and smooth[i] >= smooth[min(i + 1, len(smooth) - 1)]
    ]


def _find_line(smooth: np.ndarray, expected: int, level: float) -> tuple[int, bool]:
    """The printed line nearest to `expected` within the search window; returns (position, found).

    Nearest, not strongest: where boxes sit a few millimetres apart the neighbouring box's border is in the window
    too, and may be darker than this box's own.
    """
    peaks = _line_peaks(smooth, expected, level)
    if not peaks:
        return expected, False
    return min(peaks, key=lambda p: (abs(p - expected), -smooth[p])), True


PAIR_TOLERANCE_PX = 4  # two lines BOX_PX +- this apart are taken as the box's own pair


def _find_line_pair(profile: np.ndarray, width: float) -> tuple[int, int, bool, bool]:
    """The box's two lines along one axis: (first, second, first found, second found).

    Both lines are searched together: a curled page can shift a box by most of the search window, and then the
    neighbouring box's line (a few px outside this box's line) is as near to where a lone line is expected as this
    box's own, which sits inside it. The pair of peaks spaced like the box settles it. A blurred line's peak is
    barely above the flanks of its neighbours, so candidates are peaks halfway from the paper to the darkest line, not
    a fixed step above the crop's median; a lone line is still held to the old, stricter level.
    """
    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    smooth = _smoothed(profile, width)
    median = float(np.median(smooth))
    strict = max(60.0, median + 40.0)
    paper = float(np.percentile(smooth, 20))
    near_a, near_b = smooth[max(0, a - SEARCH_PX) : a + SEARCH_PX + 1], smooth[b - SEARCH_PX : b + SEARCH_PX + 1]
    top = float(max(near_a.max(), near_b.max()))
    loose = max(60.0, paper + 0.5 * (top - paper), min(strict, paper + 25.0))
    firsts, seconds = _line_peaks(smooth, a, loose), _line_peaks(smooth, b, loose)
    pairs = [
        (abs((q - p) - BOX_PX), abs(p - a) + abs(q - b), -(smooth[p] + smooth[q]), p, q)
        for p in firsts
        for q in seconds
        if abs((q - p) - BOX_PX) <= PAIR_TOLERANCE_PX
    ]
    if pairs:
        _, _, _, p, q = min(pairs)
        return p, q, True, True
    p, fp = _find_line(smooth, a, strict)
    q, fq = _find_line(smooth, b, strict)
    return p, q, fp, fq


def find_box_lines(crop: np.ndarray, border_px: float) -> tuple[tuple[int, int, int, int], int]:
    """Locate the left, right, top and bottom box lines in a canonical crop (local search).

    Returns ((x0, x1, y0, y1), number of lines found). Lines not found keep their predicted position, shifted by the
    offset of the opposite line when that one was found (boxes keep their size).
    """
    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    col = crop[SIDE, :].astype(np.float32).mean(axis=0)
    row = crop[:, SIDE].astype(np.float32).mean(axis=1)
    x0, x1, fx0, fx1 = _find_line_pair(col, border_px)
    y0, y1, fy0, fy1 = _find_line_pair(row, border_px)
    if fx0 and not fx1:
        x1 = x0 + BOX_PX
    elif fx1 and not fx0:
        x0 = x1 - BOX_PX
    if fy0 and not fy1:
        y1 = y0 + BOX_PX
    elif fy1 and not fy0:
        y0 = y1 - BOX_PX
    # Reject a found pair that disagrees wildly with the box size (a digit stroke mistaken for a line).
    if abs((x1 - x0) - BOX_PX) > SIZE_TOLERANCE_PX:
        x0, x1 = a, b
        fx0 = fx1 = False
    if abs((y1 - y0) - BOX_PX) > SIZE_TOLERANCE_PX:
        y0, y1 = a, b
        fy0 = fy1 = False
    return (x0, x1, y0, y1), int(fx0) + int(fx1) + int(fy0) + int(fy1)


INK_MIN_SPAN = 60.0  # darkness above paper that always counts as contrast (keeps paper noise from being "ink")


def ink_map(crop: np.ndarray, interior: tuple[slice, slice] | None = None) -> np.ndarray:
    """Soft ink in [0, 1] from a darkness crop, relative to the local paper level and to the strongest mark inside
    the box (`interior`): a faint ballpoint on a grey scan is ink too, though far lighter than a black marker."""
    c = crop.astype(np.float32)
    paper = float(np.percentile(c, 30))  # most of a box is paper
    ref = c[interior] if interior is not None else c
    strongest = float(np.percentile(ref, 99.5)) if ref.size else 255.0
    span = max(min(255.0 - paper, strongest - paper), INK_MIN_SPAN)
    ink = (c - paper - 0.18 * span) / (0.35 * span)
    return np.clip(ink, 0.0, 1.0)


def normalise_ink(ink: np.ndarray, aspect: float = 1.0) -> tuple[np.ndarray, float, bool, np.ndarray]:
    """Ink map of a box interior -> (CELL_PX square glyph, ink fraction, empty?, placement).

    Small specks are dropped, and the strokes kept are grown into the faint ink joined to them (`WEAK_INK`); the
    glyph keeps its aspect ratio (a dash stays a flat bar, a "1" a thin stroke), is
    scaled so its longest side is GLYPH_PX (tiny marks are not blown up beyond their share of the box) and centred
    on its centre of mass, as MNIST digits are. `aspect` is the printed box's height / width: the canonical crop is
    square whatever the box, so a tall box (2014 and 2019 C1: twice as tall as wide) arrives squashed, a "2" as flat
    as a dash; the glyph's true shape is restored here. `placement` is the kept ink at box scale (see PreparedCell).
    """
    h, w = ink.shape
    area = float(h * w)
    binary = (ink > 0.5).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    for i in range(1, n):
        if stats[i, cv2.CC_STAT_AREA] >= SPECK_FRACTION * area:
            keep[i] = True
    mask = keep[lab]
    if mask.any():
        weak = (ink > WEAK_INK).astype(np.uint8)
        e = WEAK_EDGE_PX
        weak[:e, :] = 0
        weak[-e:, :] = 0
        weak[:, :e] = 0
        weak[:, -e:] = 0
        grown = mask.astype(np.uint8)
        step = np.ones((3, 3), np.uint8)
        for _ in range(WEAK_GROW_PX):
            grown = cv2.dilate(grown, step) & weak
        mask = mask | grown.astype(bool)
    ink = np.where(mask | (cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0), ink, 0.0)
    frac = float(mask.sum()) / area
    out = np.zeros((CELL_PX, CELL_PX), np.float32)
    if frac < EMPTY_INK_FRACTION:
        return out, frac, True, out.copy()
    placement = np.clip(cv2.resize(ink.astype(np.float32), (CELL_PX, CELL_PX), interpolation=cv2.INTER_AREA), 0, 1)
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    glyph = ink[y0:y1, x0:x1]
    gh, gw = glyph.shape
    longest = max(gh * aspect, gw)  # in horizontal canonical pixels: the glyph as written
    # Do not magnify a mark beyond what a glyph spanning 40% of the box's shorter side would get. The shorter side:
    # in a tall box (2014 / 2019 C1) digits are written about as tall as the box is wide, and a "1" under two fifths
    # of the box's height would otherwise come out smaller than any "1" the net was trained on, like a line fragment.
    s = GLYPH_PX / max(longest, 0.4 * min(h * aspect, w))
    nh, nw = max(1, int(round(gh * aspect * s))), max(1, int(round(gw * s)))
    glyph = cv2.resize(glyph, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    tot = float(glyph.sum())
    if tot <= 0:
        return out, frac, True, np.zeros_like(out)
    gy, gx = np.indices(glyph.shape)
    cy, cx = float((gy * glyph).sum() / tot), float((gx * glyph).sum() / tot)
    oy = int(round(CELL_PX / 2 - cy))
    ox = int(round(CELL_PX / 2 - cx))
    # Keep the glyph inside the cell even when its mass is off-centre.
    oy = min(max(oy, 0), CELL_PX - nh) if nh <= CELL_PX else (CELL_PX - nh) // 2
    ox = min(max(ox, 0), CELL_PX - nw) if nw <= CELL_PX else (CELL_PX - nw) // 2
    ys0, xs0 = max(0, -oy), max(0, -ox)
    yd0, xd0 = max(0, oy), max(0, ox)
    hh = min(nh - ys0, CELL_PX - yd0)
    ww = min(nw - xs0, CELL_PX - xd0)
    out[yd0 : yd0 + hh, xd0 : xd0 + ww] = glyph[ys0 : ys0 + hh, xs0 : xs0 + ww]
    return np.clip(out, 0, 1), frac, False, placement


def drop_border_remnants(ink: np.ndarray, max_depth: int = 4) -> np.ndarray:
    """Remove what is left of the printed box lines inside the interior (a misregistered or bowed border).

    From each edge inwards, rows (or columns) that are inked along most of their length are border, not writing:
    a digit crossing the box line covers only a short stretch of it. Then any thin blob along an edge that runs most
    of its length goes too (a border line that is not quite parallel to the crop), and a thin blob out of a corner
    that runs a fifth of it (a line darker or bowed at one end leaves only that end inside)."""
    out = ink.copy()
    h, w = out.shape
    top, bottom, left, right = 0, h, 0, w  # the part still considered interior
    for _ in range(max_depth):
        if bottom - top < 4 or right - left < 4:
            break
        if (out[top, left:right] > 0.5).mean() > 0.6:
            out[top, :] = 0.0
            top += 1
        if (out[bottom - 1, left:right] > 0.5).mean() > 0.6:
            out[bottom - 1, :] = 0.0
            bottom -= 1
        if (out[top:bottom, left] > 0.5).mean() > 0.6:
            out[:, left] = 0.0
            left += 1
        if (out[top:bottom, right - 1] > 0.5).mean() > 0.6:
            out[:, right - 1] = 0.0
            right -= 1
    # Components of the ink, and again of its faint pixels too: a remnant that fades in and out along the line falls
    # apart into pieces each too short to be line, and only its faint pixels join them; a blurred line's faint halo
    # makes it look thick, so the ink alone says it is thin.
    edge = 3
    for level in (0.5, 0.2):
        n, lab, stats, _ = cv2.connectedComponentsWithStats((out > level).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            x, y, ww, hh, _ = stats[i]
            at_left_right = x <= edge or x + ww >= w - edge
            at_top_bottom = y <= edge or y + hh >= h - edge
            # Along an edge for most of its length; or out of a corner for a fifth of it (a line darker or bowed at
            # one end leaves only that end inside: a digit's stroke is not both thin and hugging the corner).
            vertical = ww <= max(3, 0.12 * w) and at_left_right and (hh >= 0.6 * h or (at_top_bottom and hh >= 0.2 * h))
            horizontal = hh <= max(3, 0.12 * h) and at_top_bottom and (ww >= 0.6 * w or (at_left_right and ww >= 0.2 * w))
            if vertical or horizontal:
                out[cv2.dilate((lab == i).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0] = 0.0
    return out


LINE_FALLOFF = 0.15  # a printed line ends where its darkness above the paper falls below this share of its peak
LINE_PERCENTILE = 30  # the line's darkness profile is this percentile along the box side (see `_line_reach`)
LINE_EXTRA_MAX_PX = 5  # at most this much (canonical px) beyond the nominal band is taken as the line's flank


def _line_reach(profile: np.ndarray, paper: float, pos: int, inward: int, band: int) -> int:
    """How far (px) inward from `pos` the printed line's darkness reaches, at least `band`.

    A scan or a soft photo blurs a hairline into a band several pixels wide; cutting the nominal border width away
    leaves its flank inside the box, where it becomes a bar beside the digit (a thin "1" then reads as a dash, a "5"
    beside a bar as something else). The profile is a low percentile along the box side: a line runs the whole
    side, a digit stroke beside it only part, so writing does not make the line look wider. `paper` is the
    profile's level away from the lines. `prepare_cell` takes the line's own darkness off its flank rather than
    cutting the flank away, so a loop written across the line keeps the part that lies in the flank.
    """
    n = len(profile)
    lo, hi = max(0, pos - 2), min(n, pos + 3)
    if hi <= lo:
        return band
    peak_at = lo + int(np.argmax(profile[lo:hi]))
    height = float(profile[peak_at]) - paper
    level = paper + LINE_FALLOFF * height
    wobble = 2.0 + 0.05 * height  # a thick line's flat top wobbles a little; a real rise is something else
    reach = 0
    i = peak_at
    while (
        reach < band + LINE_EXTRA_MAX_PX
        and 0 <= i + inward < n
        and level < profile[i + inward] <= profile[i] + wobble  # a flank falls steadily
    ):
        i += inward
        reach = abs(i - pos)
    return max(band, reach + 1)


def prepare_cell(crop: np.ndarray, border_px: float, aspect: float = 1.0) -> PreparedCell:
    """Canonical darkness crop of one box -> the classifier input and ink statistics (`aspect`: the printed box's
    height / width; see `normalise_ink`)."""
    (x0, x1, y0, y1), found = find_box_lines(crop, border_px)
    band = int(np.ceil(border_px / 2 + 1.5))
    # Percentile and median by partition: np.percentile and np.median cost more than the rest of this function.
    k = (SIDE.stop - SIDE.start) * LINE_PERCENTILE // 100
    col = np.partition(crop[SIDE, :], k, axis=0)[k].astype(np.float32)
    row = np.partition(crop[:, SIDE], k, axis=1)[:, k].astype(np.float32)
    pc, pr = (float(np.partition(p, CROP_PX // 2)[CROP_PX // 2]) for p in (col, row))
    # The line's flank beyond the nominal band: its own darkness is taken off, so what stays is writing that
    # crosses it (a loop over the box line survives, a bare flank does not).
    clean = crop.astype(np.float32)
    for prof, paper, pos, inward, horizontal in (
        (row, pr, y0, 1, True), (row, pr, y1, -1, True), (col, pc, x0, 1, False), (col, pc, x1, -1, False)
    ):
        reach = _line_reach(prof, paper, pos, inward, band)
        for d in range(band, reach):
            i = pos + inward * d
            if 0 <= i < CROP_PX:
                excess = max(0.0, float(prof[i]) - paper)
                if horizontal:
                    clean[i, :] = np.maximum(clean[i, :] - excess, 0.0)
                else:
                    clean[:, i] = np.maximum(clean[:, i] - excess, 0.0)
    inner = (slice(y0 + band, y1 - band + 1), slice(x0 + band, x1 - band + 1))
    ink = ink_map(clean, inner)
    interior = drop_border_remnants(ink[inner])
    if interior.size == 0:
        interior = ink[MARGIN_PX:-MARGIN_PX, MARGIN_PX:-MARGIN_PX]
    # Ink touching the removed border band: a digit written across the box line.
    ring = np.concatenate(
        [interior[:2, :].ravel(), interior[-2:, :].ravel(), interior[:, :2].ravel(), interior[:, -2:].ravel()]
    )
    touches = bool((ring > 0.5).mean() > 0.02)
    glyph, frac, empty, placement = normalise_ink(interior, aspect)
    return PreparedCell(
        input=glyph,
        ink_fraction=frac,
        empty=empty,
        line_offset_px=((x0 + x1) / 2 - CROP_PX / 2, (y0 + y1) / 2 - CROP_PX / 2),
        lines_found=found,
        touches_border=touches,
        interior=interior,
        placement=placement,
    )


def extract_box_cells(
    dark: np.ndarray, H: np.ndarray, template: Template, cell_id: str, boxes: list[Rect]
) -> list[CellCrop]:
    """One prepared cell per box, left to right; `cell_id` names them (a field id or a tally-row total's id)."""
    out = []
    for i, box in enumerate(boxes):
        crop = box_crop(dark, H, box)
        border_px = template.box_border_mm * BOX_PX / box.w
        cc = CellCrop(
            field_id=cell_id,
            index=i,
            crop=crop,
            border_px=border_px,
            px_per_mm_photo=local_scale_px_per_mm(H, *box.center),
        )
        cc.cell = prepare_cell(crop, border_px, box.h / box.w)
        _recentre(cc, dark, H, box)
        out.append(cc)
    _follow_neighbours(out, dark, H, boxes)
    return out


def _follow_neighbours(cells: list[CellCrop], dark: np.ndarray, H: np.ndarray, boxes: list[Rect]) -> None:
    """A box whose four lines were not all found is cut again where its field's other boxes were found.

    The boxes of one field move together on a curled page; a box whose lines lie beyond its own search window (the
    most curled pages move boxes up to 17 px) is found where its neighbours, whose lines were all found, say it is.
    The new cut is kept when it finds more of the box's lines."""
    found = [c.cell.line_offset_px for c in cells if c.cell is not None and c.cell.lines_found == 4]
    if not found:
        return
    dx, dy = (float(np.median([o[k] for o in found])) for k in (0, 1))
    for cc, box in zip(cells, boxes):
        cell = cc.cell
        if cell is None or cell.lines_found == 4:
            continue
        ox, oy = cell.line_offset_px
        if max(abs(dx - ox), abs(dy - oy)) < RECENTRE_PX:
            continue
        crop, again = _cut_at(cc, dark, H, box, dx, dy)
        if again.lines_found > cell.lines_found:
            cc.crop, cc.cell = crop, again


def _cut_at(
    cc: CellCrop, dark: np.ndarray, H: np.ndarray, box: Rect, dx: float, dy: float
) -> tuple[np.ndarray, PreparedCell]:
    """The box cut again `dx`, `dy` canonical px off its prediction, and its cell, whose line offset is reported
    from the prediction (not from the new cut)."""
    moved = Rect(x=box.x + dx * box.w / BOX_PX, y=box.y + dy * box.h / BOX_PX, w=box.w, h=box.h)
    crop = box_crop(dark, H, moved)
    cell = prepare_cell(crop, cc.border_px, box.h / box.w)
    ox, oy = cell.line_offset_px
    cell.line_offset_px = (dx + ox, dy + oy)
    return crop, cell


def _recentre(cc: CellCrop, dark: np.ndarray, H: np.ndarray, box: Rect) -> None:
    """Cut a box again centred on the lines found for it, when they sit well off the homography's prediction.

    A curled or folded page moves boxes up to a fifth of a box off the page's homography: the box then sits against
    one side of the crop, part of the digit beyond the crop or close enough to the crop's side to be taken for a box
    line's remnant. Cut again around the found lines, the box has its full margin. The second cut is kept when it
    finds at least as many of the box's lines; its offset is reported from the first prediction."""
    cell = cc.cell
    if cell is None or cell.lines_found < 3:
        return
    dx, dy = cell.line_offset_px
    if max(abs(dx), abs(dy)) < RECENTRE_PX:
        return
    crop, again = _cut_at(cc, dark, H, box, dx, dy)
    if again.lines_found >= cell.lines_found:
        cc.crop, cc.cell = crop, again


def extract_field_cells(dark: np.ndarray, H: np.ndarray, template: Template, field: FieldSpec) -> list[CellCrop]:
    return extract_box_cells(dark, H, template, field.id, field.boxes)


def extract_row_total_cells(
    dark: np.ndarray, H: np.ndarray, template: Template, field: FieldSpec
) -> dict[str, list[CellCrop]]:
    """The tally-row totals of a field, keyed by `FieldSpec.row_total_id`; none unless every row has a box per digit.

    The readers take one digit per box, so a single wide cell per row (2019 plano) cannot be read; and the R14
    cross-check needs every row, so such a field's rows are not cut at all.
    """
    if not field.row_totals_boxed:
        return {}
    return {
        field.row_total_id(i): extract_box_cells(dark, H, template, field.row_total_id(i), row)
        for i, row in enumerate(field.row_totals or [])
    }


def extract_cells(dark: np.ndarray, H: np.ndarray, template: Template) -> dict[str, list[CellCrop]]:
    """All boxes of a page: every field's, keyed by field id, then the readable tally-row totals (see
    `extract_row_total_cells`). Fields come first, so the field cells keep their place in the reader's batch."""
    cells = {f.id: extract_field_cells(dark, H, template, f) for f in template.fields}
    for f in template.fields:
        cells.update(extract_row_total_cells(dark, H, template, f))
    return cells
