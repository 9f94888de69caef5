"""Write numbers into a blank page the way KPPS members do, and record exactly what was written.

Works on a BGR page canvas at `dpmm` pixels per millimetre (page mm * dpmm = canvas px). Ink is composited
multiplicatively (ink darkens paper and printed lines alike), only inside each mark's small region.

Per page a "writer" is drawn once (glyph source, font, pen colour and width, size habit, leading-box convention,
how often they cross the box lines or correct themselves); per box the glyph, placement and rotation vary.

Fields with a tally grid (PPWP plano) also get what a KPPS draws while counting: the votes as tally strokes, five to a
cell, and each row's total ("Jumlah tiap baris") in the row's boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ocr.synth.glyphs import GlyphBank, seven_segment_glyph, stroke_glyph, tight
from ocr.synth.truth import BoxTruth, FieldTruth, OmrColumnTruth, RowTotalTruth
from ocr.templates.schema import TALLY_MARKS_PER_CELL, FieldSpec, Rect, TallyGrid, Template

INK_BGR = {"blue": (165.0, 75.0, 25.0), "black": (38.0, 36.0, 40.0)}


@dataclass
class Writer:
    source: str  # mnist | usps | font | stroke
    font_index: int
    ink: str  # blue | black
    ink_bgr: tuple[float, float, float]
    pen_mm: float  # marker stroke width
    size: float  # glyph height as a fraction of the box
    slant_deg: float
    convention: str  # X | - | 0 | _ | mixed
    cross_rate: float  # chance a glyph runs over the box line
    correction_rate: float
    digital_rate: float  # chance a guided ("seven_segment") field is traced along the dotted guide
    omr_sloppy_rate: float
    opacity: float


def draw_writer(rng: np.random.Generator, bank: GlyphBank, correction_rate: float = 0.03) -> Writer:
    sources = bank.sources
    weights = {"mnist": 0.45, "usps": 0.12, "font": 0.33, "stroke": 0.10}
    p = np.array([weights[s] for s in sources])
    source = str(rng.choice(sources, p=p / p.sum()))
    ink = "blue" if rng.random() < 0.7 else "black"
    base = np.array(INK_BGR[ink]) + rng.normal(0, 12, 3)
    conv = str(rng.choice(["X", "-", "0", "_", "mixed"], p=[0.45, 0.12, 0.18, 0.13, 0.12]))
    return Writer(
        source=source,
        font_index=int(rng.integers(max(1, len(bank.fonts)))),
        ink=ink,
        ink_bgr=tuple(float(v) for v in np.clip(base, 0, 255)),
        pen_mm=float(rng.uniform(1.0, 2.2)),
        size=float(rng.uniform(0.55, 0.85)),
        slant_deg=float(rng.normal(0, 6)),
        convention=conv,
        cross_rate=float(rng.choice([0.02, 0.08, 0.2])),
        correction_rate=correction_rate,
        digital_rate=float(rng.choice([0.0, 0.0, 0.3, 1.0])),
        omr_sloppy_rate=float(rng.choice([0.02, 0.06, 0.15])),
        opacity=float(rng.uniform(0.82, 0.98)),
    )


def field_chars(value: int, n_boxes: int, kind: str, convention: str, rng: np.random.Generator) -> str:
    """The characters a KPPS member writes for `value` in `n_boxes` boxes (leading fillers per convention)."""
    if kind != "count":
        return f"{value:0{n_boxes}d}"[-n_boxes:]
    digits = str(value)
    conv = convention if convention != "mixed" else str(rng.choice(["X", "-", "0", "_"]))
    n_lead = n_boxes - len(digits)
    if value == 0 and conv != "0" and rng.random() < 0.4:
        # "XXX" / "---" for nothing at all (the units box gets a filler too)
        n_lead, digits = n_boxes, ""
    lead = {"X": "X", "-": "-", "0": "0", "_": "_"}[conv] * n_lead
    return lead + digits


def chars_value(text: str) -> int:
    digits = "".join(c if c.isdigit() else "0" for c in text)
    return int(digits) if digits else 0


def tally_rows(votes: int, grid: TallyGrid) -> list[int]:
    """Votes per grid row as a KPPS tallies them: five to a cell, cell by cell left to right, row by row. Votes beyond
    the grid's room are not drawn (the rows then sum to less)."""
    return [min(max(votes - r * grid.row_max, 0), grid.row_max) for r in range(grid.rows)]


def _split_cell(cell: Rect, n: int) -> list[Rect]:
    """`n` equal slots side by side in one wide cell: where the digits of a number written in it go."""
    w = cell.w / n
    return [Rect(x=cell.x + i * w, y=cell.y, w=w, h=cell.h) for i in range(n)]


def _rect_px(r: Rect, dpmm: float) -> tuple[float, float, float, float]:
    return r.x * dpmm, r.y * dpmm, r.w * dpmm, r.h * dpmm


def _stroke_width(mask: np.ndarray) -> float:
    b = (mask > 0.5).astype(np.uint8)
    if b.sum() == 0:
        return 0.0
    # A paper border: a mask with no paper pixel at all (a tight, solid glyph) has no distance to measure.
    b = cv2.copyMakeBorder(b, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    dt = cv2.distanceTransform(b, cv2.DIST_L2, 3)
    return float(4.0 * dt[b > 0].mean())


def _shape(mask: np.ndarray, target_h: float, max_w: float, pen_px: float, rot_deg: float, slant_deg: float) -> np.ndarray:
    """Scale a tight glyph to `target_h`, set its stroke width to about `pen_px`, slant and rotate it."""
    h, w = mask.shape
    s = target_h / max(h, 1)
    if w * s > max_w:
        s = max_w / max(w, 1)
    nh, nw = max(2, int(round(h * s))), max(2, int(round(w * s)))
    g = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    # Upscaled low-resolution glyphs are soft and downscaled thin strokes are faint: restore a marker-like edge.
    g = np.clip((g / max(float(g.max()), 1e-3) - 0.25) / 0.4, 0, 1)
    diff = pen_px - _stroke_width(g)
    if diff > 1.0:
        k = int(round(diff))
        g = cv2.dilate(g, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k + 1, k + 1)))
    elif diff < -2.5 and min(nh, nw) > 12:
        g = cv2.erode(g, np.ones((3, 3), np.uint8))
    pad = int(max(nh, nw) * 0.3) + 2
    g = cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    c = (g.shape[1] / 2, g.shape[0] / 2)
    M = cv2.getRotationMatrix2D(c, rot_deg, 1.0)
    sh = np.tan(np.radians(slant_deg))
    M[0, 1] += -sh
    M[0, 2] += sh * c[1]
    g = cv2.warpAffine(g, M, (g.shape[1], g.shape[0]), flags=cv2.INTER_LINEAR)
    g = cv2.GaussianBlur(g, (3, 3), 0.6)
    return tight(g, 0.05)


def _overlap(canvas: np.ndarray, mask: np.ndarray, cx: float, cy: float, opacity: float):
    """The canvas window covered by `mask` centred at canvas px (cx, cy), clipped to the canvas, and the matching
    part of the mask (times `opacity`, with a channel axis). None when they do not overlap."""
    h, w = mask.shape
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    H, W = canvas.shape[:2]
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ax1 <= ax0 or ay1 <= ay0:
        return None
    m = mask[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0, None] * opacity
    return (slice(ay0, ay1), slice(ax0, ax1)), m


def composite(canvas: np.ndarray, mask: np.ndarray, cx: float, cy: float, bgr, opacity: float) -> None:
    """Multiply-blend `mask` (1 = ink) centred at canvas px (cx, cy)."""
    hit = _overlap(canvas, mask, cx, cy, opacity)
    if hit is None:
        return
    win, m = hit
    roi = canvas[win].astype(np.float32)
    ink = np.asarray(bgr, np.float32) / 255.0
    roi *= 1.0 - m * (1.0 - ink)
    canvas[win] = np.clip(roi, 0, 255).astype(np.uint8)


def paint(canvas: np.ndarray, mask: np.ndarray, cx: float, cy: float, bgr, opacity: float = 1.0) -> None:
    """Cover with an opaque colour (correction fluid)."""
    hit = _overlap(canvas, mask, cx, cy, opacity)
    if hit is None:
        return
    win, m = hit
    roi = canvas[win].astype(np.float32)
    roi = roi * (1 - m) + np.asarray(bgr, np.float32) * m
    canvas[win] = np.clip(roi, 0, 255).astype(np.uint8)


class PageFiller:
    def __init__(self, canvas: np.ndarray, dpmm: float, template: Template, bank: GlyphBank, writer: Writer, rng):
        self.canvas, self.dpmm, self.t, self.bank, self.w, self.rng = canvas, dpmm, template, bank, writer, rng
        self.pen_px = max(1.0, writer.pen_mm * dpmm)

    def _glyph(self, char: str, box_px: float) -> tuple[np.ndarray, str]:
        rng, w = self.rng, self.w
        target_h = box_px * w.size * rng.uniform(0.9, 1.1)
        pen_frac = self.pen_px / max(target_h, 1.0)
        if char in "X-":
            if char == "X":
                m = stroke_glyph("X", rng, int(target_h * rng.uniform(0.7, 1.0)), pen_frac)
            else:
                m = stroke_glyph("-", rng, int(target_h), pen_frac)
            return _shape(m, m.shape[0] if char == "-" else target_h * rng.uniform(0.75, 1.0), box_px * 0.85, self.pen_px,
                          rng.normal(0, 4), 0), "stroke"
        src = w.source if rng.random() > 0.1 else str(rng.choice(self.bank.sources))
        m, used = self.bank.digit(rng, char, src, w.font_index, int(target_h), pen_frac)
        max_w = box_px * 0.85
        return _shape(m, target_h, max_w, self.pen_px, rng.normal(0, 5), w.slant_deg), used

    def _place(self, mask: np.ndarray, bx: float, by: float, bw: float, bh: float, cross: bool) -> None:
        rng = self.rng
        cx = bx + bw / 2 + rng.normal(0, 0.05) * bw
        cy = by + bh / 2 + rng.normal(0, 0.05) * bh
        if cross:
            # over the line: pushed towards one side, or simply too big for the box
            side = int(rng.integers(4))
            amt = rng.uniform(0.18, 0.32)
            cx += (amt * bw) * (1 if side == 0 else -1 if side == 1 else 0)
            cy += (amt * bh) * (1 if side == 2 else -1 if side == 3 else 0)
        composite(self.canvas, mask, cx, cy, self.w.ink_bgr, self.w.opacity)

    def write_box(self, box: Rect, char: str, guided: bool, digital: bool) -> BoxTruth:
        rng, w = self.rng, self.w
        bx, by, bw, bh = _rect_px(box, self.dpmm)
        box_px = min(bw, bh)
        if char == "_":
            return BoxTruth(index=0, char="_", source="none")
        cross = bool(rng.random() < w.cross_rate)
        correction = None
        if char.isdigit() and rng.random() < w.correction_rate:
            correction = str(rng.choice(["strike", "overwrite", "fluid"], p=[0.5, 0.3, 0.2]))
        if correction == "strike":
            wrong = str((int(char) + int(rng.integers(1, 10))) % 10)
            m, _ = self._glyph(wrong, box_px * 0.8)
            cx, cy = bx + bw * 0.35, by + bh * 0.4
            composite(self.canvas, m, cx, cy, w.ink_bgr, w.opacity)
            # the strike: one or two lines through the wrong digit
            sh = m.shape
            strike = stroke_glyph("-", rng, int(sh[1] * 1.3), 0.1)
            strike = _shape(strike, strike.shape[0], sh[1] * 1.4, self.pen_px * 0.8, rng.uniform(-35, 35), 0)
            composite(self.canvas, strike, cx, cy, w.ink_bgr, w.opacity)
            m2, used = self._glyph(char, box_px * 0.75)
            composite(self.canvas, m2, bx + bw * 0.68, by + bh * 0.62, w.ink_bgr, w.opacity)
            return BoxTruth(index=0, char=char, source=used, corrected=True, correction="strike")
        if correction == "overwrite":
            wrong = str((int(char) + int(rng.integers(1, 10))) % 10)
            m, _ = self._glyph(wrong, box_px)
            self._place(m, bx, by, bw, bh, False)
            self.pen_px *= 1.4
            m2, used = self._glyph(char, box_px)
            self.pen_px /= 1.4
            self._place(m2, bx, by, bw, bh, False)
            return BoxTruth(index=0, char=char, source=used, corrected=True, correction="overwrite")
        if correction == "fluid":
            wrong = str((int(char) + int(rng.integers(1, 10))) % 10)
            m, _ = self._glyph(wrong, box_px)
            self._place(m, bx, by, bw, bh, False)
            ph, pw = int(bh * rng.uniform(0.7, 0.95)), int(bw * rng.uniform(0.7, 0.95))
            patch = np.zeros((ph, pw), np.float32)
            cv2.ellipse(patch, (pw // 2, ph // 2), (pw // 2 - 1, ph // 2 - 1), 0, 0, 360, 1.0, -1)
            patch = cv2.GaussianBlur(patch, (5, 5), 1.5)
            paint(self.canvas, patch, bx + bw / 2, by + bh / 2, (236, 242, 244), 0.97)
        if digital and char.isdigit():
            gw, gh = bw * 0.30 * rng.uniform(0.9, 1.1), bh * 0.62 * rng.uniform(0.92, 1.05)
            m = seven_segment_glyph(char, max(4, int(gw)), max(6, int(gh)), self.pen_px * 0.8, rng)
            cx = bx + bw * 0.47 + rng.normal(0, 0.02) * bw
            cy = by + bh * 0.47 + rng.normal(0, 0.02) * bh
            composite(self.canvas, m, cx, cy, w.ink_bgr, w.opacity)
            return BoxTruth(index=0, char=char, source="seven_segment", corrected=correction is not None,
                            correction=correction)
        m, used = self._glyph(char, box_px)
        self._place(m, bx, by, bw, bh, cross)
        return BoxTruth(index=0, char=char, source=used, corrected=correction is not None, correction=correction,
                        crosses_border=cross)

    def fill_omr(self, f: FieldSpec, chars: str) -> list[OmrColumnTruth]:
        rng, w = self.rng, self.w
        out = []
        skip_leading = rng.random() < 0.35  # some KPPS leave the columns of leading fillers blank
        for col, ch in zip(f.omr or [], chars):
            if ch.isdigit():
                intended = int(ch)
            else:
                intended = None if skip_leading else 0
            if intended is None or intended not in col.values:
                out.append(OmrColumnTruth(intended=None, filled=[], quality="blank"))
                continue
            b = col.bubbles[col.values.index(intended)]
            quality = "clean"
            r = rng.random()
            if r < w.omr_sloppy_rate:
                quality = "partial"
            elif r < w.omr_sloppy_rate * 1.5:
                quality = "stray"
            self._bubble(b.cx, b.cy, b.r, partial=quality == "partial")
            filled = [intended]
            if quality == "stray":
                others = [v for v in col.values if v != intended]
                v = others[int(rng.integers(len(others)))]
                ob = col.bubbles[col.values.index(v)]
                self._stray(ob.cx, ob.cy, ob.r)
                filled = sorted([intended, v])
            out.append(OmrColumnTruth(intended=intended, filled=filled, quality=quality))
        return out

    def _bubble(self, cx_mm: float, cy_mm: float, r_mm: float, partial: bool) -> None:
        rng, d = self.rng, self.dpmm
        r = r_mm * d
        size = int(2 * r * 1.4) + 4
        m = np.zeros((size, size), np.float32)
        c = size / 2
        if partial:
            ax = (int(r * rng.uniform(0.4, 0.7)), int(r * rng.uniform(0.3, 0.6)))
            off = rng.normal(0, 0.25 * r, 2)
        else:
            ax = (int(r * rng.uniform(0.85, 1.12)), int(r * rng.uniform(0.85, 1.12)))
            off = rng.normal(0, 0.08 * r, 2)
        cv2.ellipse(m, (int(c + off[0]), int(c + off[1])), ax, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        # marker scribble texture: a few lighter streaks
        tex = 1.0 - 0.25 * (rng.random((size, size)) < 0.08)
        m = cv2.GaussianBlur(m * tex.astype(np.float32), (3, 3), 0.8)
        composite(self.canvas, m, cx_mm * d, cy_mm * d, self.w.ink_bgr, self.w.opacity)

    def _stray(self, cx_mm: float, cy_mm: float, r_mm: float) -> None:
        d = self.dpmm
        m = stroke_glyph("-", self.rng, int(r_mm * d * 1.2), 0.12)
        m = _shape(m, m.shape[0], r_mm * d * 1.6, self.pen_px * 0.8, self.rng.uniform(-40, 40), 0)
        composite(self.canvas, m, cx_mm * d, cy_mm * d, self.w.ink_bgr, self.w.opacity)

    def write_field(self, f: FieldSpec, value: int) -> FieldTruth:
        text = field_chars(value, len(f.boxes), f.kind, self.w.convention, self.rng)
        digital = f.guide == "seven_segment" and self.rng.random() < self.w.digital_rate
        boxes = []
        for i, (box, ch) in enumerate(zip(f.boxes, text)):
            bt = self.write_box(box, ch, f.guide == "seven_segment", digital)
            boxes.append(bt.model_copy(update={"index": i}))
        omr = self.fill_omr(f, text) if f.omr else None
        return FieldTruth(
            id=f.id,
            value=chars_value(text),
            text=text,
            boxes=boxes,
            omr=omr,
            corrected=any(b.corrected for b in boxes),
        )

    def tally_field(self, f: FieldSpec, votes: int, blank_empty_rows: bool) -> list[RowTotalTruth]:
        """Tally `votes` in the field's grid and write each row's total (an empty row: blank, or 0 per convention)."""
        assert f.tally is not None and f.row_totals
        per_row = tally_rows(votes, f.tally)
        self._strokes(f.tally, per_row)
        digits = len(str(f.tally.row_max))
        rows = []
        for boxes, v in zip(f.row_totals, per_row):
            if f.row_totals_boxed:
                slots, text = boxes, field_chars(v, len(boxes), "count", self.w.convention, self.rng)
            else:  # one wide cell (2019 plano): the number alone, right-aligned, a digit per equal part of the cell
                slots, text = _split_cell(boxes[0], digits), str(v).rjust(digits, "_")
            if v == 0 and blank_empty_rows:
                text = "_" * len(slots)
            written = [self.write_box(b, ch, False, False).model_copy(update={"index": i})
                       for i, (b, ch) in enumerate(zip(slots, text))]
            rows.append(RowTotalTruth(value=chars_value(text), text=text, boxes=written))
        return rows

    def _strokes(self, grid: TallyGrid, per_row: list[int]) -> None:
        """Every tally group of a grid drawn into one mask and composited once: hundreds of strokes stay cheap."""
        d = self.dpmm
        g = grid.rect
        ox, oy = int(np.floor(g.x * d)), int(np.floor(g.y * d))
        mask = np.zeros((int(np.ceil((g.y + g.h) * d)) - oy, int(np.ceil((g.x + g.w) * d)) - ox), np.uint8)
        cw, ch = g.w * d / grid.cols, g.h * d / grid.rows
        thick = max(1, int(round(self.pen_px * 0.6)))  # tallies are quick thin strokes, not drawn digits
        for r, votes in enumerate(per_row):
            for c in range(-(-votes // TALLY_MARKS_PER_CELL)):
                n = min(TALLY_MARKS_PER_CELL, votes - c * TALLY_MARKS_PER_CELL)
                self._group(mask, g.x * d - ox + c * cw, g.y * d - oy + r * ch, cw, ch, n, thick)
        x, y, w, h = cv2.boundingRect(mask)  # composite only where there is ink (most grids are mostly empty)
        if w and h:
            ink = mask[y : y + h, x : x + w].astype(np.float32) / 255.0
            composite(self.canvas, ink, ox + x + w / 2, oy + y + h / 2, self.w.ink_bgr, self.w.opacity)

    def _group(self, mask: np.ndarray, x: float, y: float, cw: float, ch: float, n: int, thick: int) -> None:
        """`n` strokes of one tally group in the cell at mask px (x, y): up to four uprights, the fifth across."""
        rng = self.rng
        top, bottom = y + ch * rng.uniform(0.12, 0.25), y + ch * rng.uniform(0.75, 0.88)
        left, step = x + cw * rng.uniform(0.18, 0.3), cw * rng.uniform(0.12, 0.16)
        lean = np.tan(np.radians(self.w.slant_deg)) * (bottom - top)
        for i in range(min(n, 4)):
            sx = left + i * step + rng.normal(0, 0.015 * cw)
            y0, y1 = top + rng.normal(0, 0.03 * ch), bottom + rng.normal(0, 0.03 * ch)
            _line(mask, (sx + lean / 2, y0), (sx - lean / 2, y1), thick)
        if n == TALLY_MARKS_PER_CELL:
            _line(mask, (left - 0.1 * cw, bottom - rng.uniform(0.05, 0.2) * ch),
                  (left + 3 * step + 0.1 * cw, top + rng.uniform(0.05, 0.2) * ch), thick)


def _line(mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], thick: int) -> None:
    """An anti-aliased line at sub-pixel precision (cv2 takes fixed-point points: 2 fractional bits)."""
    q0 = (int(round(p0[0] * 4)), int(round(p0[1] * 4)))
    q1 = (int(round(p1[0] * 4)), int(round(p1[1] * 4)))
    cv2.line(mask, q0, q1, 255, thick, cv2.LINE_AA, shift=2)


def fill_page(
    canvas: np.ndarray,
    dpmm: float,
    template: Template,
    values: dict[str, int],
    bank: GlyphBank,
    writer: Writer,
    rng: np.random.Generator,
    intended: dict[str, int] | None = None,
) -> list[FieldTruth]:
    """Write every field's value (keys: field ids of this page) into `canvas`; returns the per-field truth.

    A field with a tally grid and row totals also gets its tally strokes and row totals. They count `intended` (the
    consistent values, when `values` carry a KPPS mistake; default `values`): the strokes are what was counted, the
    mistake is in the field's total, which is what R14 catches. They are drawn after every field with a generator
    spawned from `rng` (spawning draws nothing from it), so the boxes and the photo get the same random numbers as
    on a generator version without tallies.
    """
    filler = PageFiller(canvas, dpmm, template, bank, writer, rng)
    fields = [filler.write_field(f, values[f.id]) for f in template.fields]
    tallied = [i for i, f in enumerate(template.fields) if f.tally is not None and f.row_totals]
    if not tallied:
        return fields
    counter = PageFiller(canvas, dpmm, template, bank, writer, rng.spawn(1)[0])
    blank_empty_rows = bool(counter.rng.random() < 0.5)  # a habit of the writer: many leave unused rows empty
    counts = intended or values
    for i in tallied:
        f = template.fields[i]
        rows = counter.tally_field(f, counts[f.id], blank_empty_rows)
        fields[i] = fields[i].model_copy(update={"row_totals": rows})
    return fields
