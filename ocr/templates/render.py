"""Blank-page images of a template: drawn from its geometry alone, or the committed reference rendering.

    from ocr.templates.render import blank_page, render_page
    img = blank_page(get_template("kwk-2024-p2-3"), dpmm=4.0)   # uint8 grayscale, white paper, read-only

`render_page` draws everything the reader relies on (frame fiducials, AprilTag, digit boxes with their printed
border, seven-segment guides, OMR bubbles, tally grids, row totals) plus the human text (title, section titles, field
labels), so a drawn page is both printable and a faithful synthetic background. `blank_page` prefers the template's
reference image (the official form, rasterised) when there is one, because that is what real photos show.

Pixel convention: page point (x mm, y mm) is pixel (x * dpmm, y * dpmm) measured from the image's top-left *corner*
(not pixel centre), so a rect [x, x+w) covers pixels round(x*dpmm) .. round((x+w)*dpmm) - 1.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ocr.templates import reference_path
from ocr.templates.schema import FieldSpec, Rect, Template

# Debian's fonts-dejavu-core; any of these paths is fine, else Pillow's built-in font.
_FONT_CANDIDATES = {
    False: [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "DejaVuSans.ttf",
    ],
    True: [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf",
        "DejaVuSans-Bold.ttf",
    ],
}

# Printed section titles (2024 plano wording; KWK uses the same section numbering, see domain.md §1.4).
SECTION_TITLES: dict[str, str] = {
    "I": "I. DATA PEMILIH DAN PENGGUNA HAK PILIH",
    "II": "II. DATA PENGGUNAAN SURAT SUARA",
    "III": "III. DATA PEMILIH DISABILITAS",
    "IV": "IV. RINCIAN PEROLEHAN SUARA",
    "V": "V. DATA SUARA SAH DAN TIDAK SAH",
    "penetapan": "Ditetapkan pada",
}

INK = 0  # black
GUIDE_INK = 170  # the faint dotted seven-segment guide and bubble digits
TEXT_INK = 30


@lru_cache(maxsize=64)
def _font(size_px: int, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    size_px = max(int(size_px), 6)
    for path in _FONT_CANDIDATES[bold]:
        try:
            return ImageFont.truetype(path, size_px)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow < 10.1 has a single fixed-size bitmap font
        return ImageFont.load_default()


class _Canvas:
    """A Pillow grayscale page with mm-based drawing helpers."""

    def __init__(self, width_mm: float, height_mm: float, dpmm: float):
        self.dpmm = float(dpmm)
        self.size = (int(round(width_mm * dpmm)), int(round(height_mm * dpmm)))
        self.img = Image.new("L", self.size, 255)
        self.draw = ImageDraw.Draw(self.img)

    def px(self, v_mm: float) -> float:
        return v_mm * self.dpmm

    def fill_rect(self, x: float, y: float, w: float, h: float, ink: int = INK) -> None:
        # Pillow's rectangle includes its end pixel: [x0, x1] inclusive.
        x0, y0 = round(self.px(x)), round(self.px(y))
        x1, y1 = round(self.px(x + w)) - 1, round(self.px(y + h)) - 1
        if x1 >= x0 and y1 >= y0:
            self.draw.rectangle([x0, y0, x1, y1], fill=ink)

    def frame_rect(self, r: Rect, line_mm: float, ink: int = INK) -> None:
        """A rectangle outline whose line is centred on r's edges (the template convention for box borders)."""
        half = line_mm / 2
        ox, oy, ow, oh = r.x - half, r.y - half, r.w + line_mm, r.h + line_mm
        self.fill_rect(ox, oy, ow, line_mm, ink)  # top
        self.fill_rect(ox, r.y + r.h - half, ow, line_mm, ink)  # bottom
        self.fill_rect(ox, oy, line_mm, oh, ink)  # left
        self.fill_rect(r.x + r.w - half, oy, line_mm, oh, ink)  # right

    def line(self, x0: float, y0: float, x1: float, y1: float, line_mm: float, ink: int = INK) -> None:
        w = max(1, round(self.px(line_mm)))
        self.draw.line([(self.px(x0), self.px(y0)), (self.px(x1), self.px(y1))], fill=ink, width=w)

    def circle(self, cx: float, cy: float, r: float, line_mm: float, ink: int = INK) -> None:
        w = max(1, round(self.px(line_mm)))
        R = self.px(r + line_mm / 2)
        self.draw.ellipse([self.px(cx) - R, self.px(cy) - R, self.px(cx) + R, self.px(cy) + R], outline=ink, width=w)

    def dot(self, cx: float, cy: float, r: float, ink: int) -> None:
        R = max(self.px(r), 0.5)
        self.draw.ellipse([self.px(cx) - R, self.px(cy) - R, self.px(cx) + R, self.px(cy) + R], fill=ink)

    def text(
        self,
        x: float,
        y: float,
        s: str,
        size_mm: float,
        *,
        anchor: str = "la",
        bold: bool = False,
        ink: int = TEXT_INK,
        max_w_mm: float | None = None,
    ) -> None:
        """Text at (x, y) mm; `anchor` is Pillow's (e.g. "lm" = left/middle). Shrinks to fit `max_w_mm`."""
        size_px = max(round(self.px(size_mm)), 6)
        font = _font(size_px, bold)
        if max_w_mm is not None:
            while size_px > 6 and self.draw.textlength(s, font=font) > self.px(max_w_mm):
                size_px = max(int(size_px * 0.9), 6)
                font = _font(size_px, bold)
        try:
            self.draw.text((self.px(x), self.px(y)), s, fill=ink, font=font, anchor=anchor)
        except ValueError:  # the bitmap fallback font does not support anchors
            self.draw.text((self.px(x), self.px(y)), s, fill=ink, font=font)

    def wrapped(self, x: float, y_mid: float, s: str, size_mm: float, max_w_mm: float, ink: int = TEXT_INK) -> None:
        """Left-aligned text wrapped into at most 3 lines of max_w_mm, vertically centred on y_mid."""
        if max_w_mm <= 2:
            return
        font = _font(round(self.px(size_mm)))
        words, lines, cur = s.split(), [], ""
        for w in words:
            trial = f"{cur} {w}".strip()
            if cur and self.draw.textlength(trial, font=font) > self.px(max_w_mm):
                lines.append(cur)
                cur = w
            else:
                cur = trial
        if cur:
            lines.append(cur)
        if len(lines) > 3:  # too long for the space: shrink once and retry
            return self.wrapped(x, y_mid, s, size_mm * 0.8, max_w_mm, ink)
        step = size_mm * 1.25
        top = y_mid - step * (len(lines) - 1) / 2
        for i, ln in enumerate(lines):
            self.text(x, top + i * step, ln, size_mm, anchor="lm", ink=ink)

    def paste(self, arr: np.ndarray, x: float, y: float) -> None:
        self.img.paste(Image.fromarray(arr), (round(self.px(x)), round(self.px(y))))

    def to_array(self) -> np.ndarray:
        return np.asarray(self.img, dtype=np.uint8).copy()


# --- frame and marker -------------------------------------------------------------------------------------------


def _draw_frame(c: _Canvas, t: Template) -> None:
    f = t.frame
    if f.kind == "checker_fiducials":
        s = f.square_mm or 7.2
        # As on the 2024 plano: at every corner the top-left and bottom-right squares of a 2x2 checker are black,
        # touching at the frame point.
        for x, y in f.points:
            c.fill_rect(x - s, y - s, s, s)
            c.fill_rect(x, y, s, s)
    elif f.kind == "corner_squares":
        s = f.square_mm or 5.0
        for x, y in f.points:
            c.fill_rect(x - s / 2, y - s / 2, s, s)
    # page_edges: the sheet itself is the frame; nothing to draw.


@lru_cache(maxsize=32)
def _apriltag_cells(marker_id: int) -> np.ndarray:
    """The tag as an 8x8 array of 0/255 cells (1-cell black border + 6x6 code)."""
    d = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h10)
    return cv2.aruco.generateImageMarker(d, marker_id, 8, borderBits=1)


def _draw_marker(c: _Canvas, t: Template) -> None:
    m = t.marker
    if m is None:
        return
    cells = _apriltag_cells(m.id)
    # np.rot90 turns counter-clockwise; rotation_deg is how far the printed tag is turned clockwise.
    cells = np.rot90(cells, k=(-m.rotation_deg // 90) % 4)
    w, h = round(c.px(m.rect.w)), round(c.px(m.rect.h))
    img = cv2.resize(np.ascontiguousarray(cells), (w, h), interpolation=cv2.INTER_NEAREST)
    c.paste(img, m.rect.x, m.rect.y)
    # The id is printed beside the tag (left of it, as on the 2024 plano) so people can read it too.
    c.text(m.rect.x - 2.0, m.rect.y + m.rect.h / 2, str(m.id), min(m.rect.h * 0.22, 7.0), anchor="rm", bold=True)
    c.text(m.rect.x + m.rect.w / 2, m.rect.y - 2.0, f"Halaman {t.page}", min(m.rect.h * 0.18, 6.0), anchor="md", bold=True)


# --- fields -----------------------------------------------------------------------------------------------------


def _seven_segment_guide(c: _Canvas, r: Rect) -> None:
    """The faint dotted "8" printed inside PPWP 2024 page-2 boxes."""
    mx, my = r.w * 0.25, r.h * 0.15
    x0, x1 = r.x + mx, r.x + r.w - mx
    y0, y1, ym = r.y + my, r.y + r.h - my, r.y + r.h / 2
    segs = [((x0, y0), (x1, y0)), ((x0, ym), (x1, ym)), ((x0, y1), (x1, y1)),
            ((x0, y0), (x0, ym)), ((x1, y0), (x1, ym)), ((x0, ym), (x0, y1)), ((x1, ym), (x1, y1))]
    pitch = max(r.w / 20, 0.6)
    dot_r = max(r.w / 80, 0.15)
    for (ax, ay), (bx, by) in segs:
        n = max(int(np.hypot(bx - ax, by - ay) / pitch), 1)
        for i in range(n + 1):
            c.dot(ax + (bx - ax) * i / n, ay + (by - ay) * i / n, dot_r, GUIDE_INK)


def _draw_boxes(c: _Canvas, boxes: list[Rect], border_mm: float, guide: str) -> None:
    for b in boxes:
        if guide == "seven_segment":
            _seven_segment_guide(c, b)
        c.frame_rect(b, border_mm)


def _draw_field(c: _Canvas, f: FieldSpec, border_mm: float) -> None:
    _draw_boxes(c, f.boxes, border_mm, f.guide)
    thin = max(border_mm * 0.5, 0.25)
    for col in f.omr or []:
        for b, v in zip(col.bubbles, col.values):
            c.circle(b.cx, b.cy, b.r, thin)
            c.text(b.cx, b.cy, str(v), b.r * 1.1, anchor="mm", ink=GUIDE_INK)
    if f.tally is not None:
        g = f.tally.rect
        c.frame_rect(g, thin)
        for i in range(1, f.tally.cols):
            x = g.x + g.w * i / f.tally.cols
            c.line(x, g.y, x, g.y + g.h, thin * 0.6)
        for j in range(1, f.tally.rows):
            y = g.y + g.h * j / f.tally.rows
            c.line(g.x, y, g.x + g.w, y, thin * 0.6)
    for row in f.row_totals or []:
        _draw_boxes(c, row, thin, "none")
    if f.words is not None:
        w = f.words
        c.frame_rect(w, thin)
        c.text(w.x + 1.5, w.y + 1.0, "Terbilang (huruf):", min(w.h * 0.25, 4.0), anchor="la", ink=GUIDE_INK)


def _split_label(label: str) -> tuple[str, str]:
    """'Jumlah pemilih ... - Laki-laki (L)' -> (row label, column label)."""
    if " - " in label:
        row, col = label.rsplit(" - ", 1)
        return row, col
    return label, ""


def _draw_labels(c: _Canvas, t: Template) -> None:
    """Row labels left of each row of boxes, column headers above each column, section titles above sections.

    Fields whose first boxes share a y form one printed row (e.g. L / P / L+P); the row label is printed once.
    """
    left = min(p[0] for p in t.frame.points) + (t.frame.square_mm or 0) + 3.0
    rows: dict[tuple[str, float], list[FieldSpec]] = {}
    for f in t.fields:
        rows.setdefault((f.section, round(f.boxes[0].y, 0)), []).append(f)
    seen_cols: set[tuple[str, float]] = set()
    seen_sections: set[str] = set()
    for (section, _), fs in sorted(rows.items(), key=lambda kv: kv[0][1]):
        fs.sort(key=lambda f: f.boxes[0].x)
        first = fs[0]
        b0 = first.boxes[0]
        size = min(max(b0.h * 0.28, 2.5), 6.0)
        row_label, _ = _split_label(first.label)
        if first.kind.startswith("date"):
            for f in fs:
                c.text(f.boxes[0].x, f.boxes[0].y - 1.5, f.label, size * 0.8, anchor="ld")
        else:
            max_w = b0.x - 4.0 - left
            c.wrapped(left, b0.y + b0.h / 2, row_label, size, max_w)
        for f in fs:
            _, col_label = _split_label(f.label)
            key = (section, round(f.boxes[0].x, 0))
            if col_label and key not in seen_cols:
                seen_cols.add(key)
                x_mid = (f.boxes[0].x + f.boxes[-1].x + f.boxes[-1].w) / 2
                span = f.boxes[-1].x + f.boxes[-1].w - f.boxes[0].x
                c.text(x_mid, f.boxes[0].y - 1.5, col_label, size * 0.8, anchor="md", max_w_mm=span + 2)
        if section and section not in seen_sections:
            seen_sections.add(section)
            title = SECTION_TITLES.get(section, section)
            has_cols = any(_split_label(f.label)[1] for f in fs)
            dy = 3.0 + (size * 1.3 if has_cols else 0.0)
            c.text(left, b0.y - dy, title, min(size * 1.15, 7.0), anchor="ld", bold=True)


def _draw_title(c: _Canvas, t: Template) -> None:
    ys = [p[1] for p in t.frame.points]
    xs = [p[0] for p in t.frame.points]
    top = min(ys) + (t.frame.square_mm or 0) + 2.0
    if t.frame.kind == "page_edges":
        top = 8.0
    width = max(xs) - min(xs)
    size = min(max(width / 60, 3.0), 9.0)
    cx = (min(xs) + max(xs)) / 2
    c.text(cx, top, f"MODEL {t.form}", size, anchor="ma", bold=True, max_w_mm=width * 0.6)
    c.text(cx, top + size * 1.4, t.title, size * 0.6, anchor="ma", max_w_mm=width * 0.75)


def render_page(template: Template, dpmm: float = 4.0) -> np.ndarray:
    """Draw the blank page from the template alone: grayscale uint8, white paper, (H, W) = page size * dpmm."""
    if dpmm <= 0:
        raise ValueError("dpmm must be positive")
    c = _Canvas(template.page_size.width_mm, template.page_size.height_mm, dpmm)
    _draw_title(c, template)
    _draw_labels(c, template)
    for f in template.fields:
        _draw_field(c, f, template.box_border_mm)
    _draw_frame(c, template)
    _draw_marker(c, template)
    return c.to_array()


# --- best available blank ---------------------------------------------------------------------------------------


def page_shape(template: Template, dpmm: float) -> tuple[int, int]:
    """(height, width) in pixels of a page image at dpmm."""
    return (int(round(template.page_size.height_mm * dpmm)), int(round(template.page_size.width_mm * dpmm)))


def load_reference(template: Template, dpmm: float) -> np.ndarray | None:
    """The committed reference image resampled to dpmm, or None when the template has none (or it is missing)."""
    path: Path | None = reference_path(template)
    if path is None or not path.exists():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        return None
    h, w = page_shape(template, dpmm)
    if img.shape != (h, w):
        down = w < img.shape[1]
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_CUBIC)
    return img


_CACHE: OrderedDict[tuple[str, str, float], np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 16


def blank_page(template: Template, dpmm: float = 4.0) -> np.ndarray:
    """The best blank page image: the reference rendering (resampled) when the template has one, else render_page.

    Cached per (template hash, dpmm). The array is read-only: callers that draw on it take a `.copy()`.
    """
    key = (template.id, template.content_hash, round(float(dpmm), 4))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    img = load_reference(template, dpmm)
    if img is None:
        img = render_page(template, dpmm)
    img.setflags(write=False)
    with _CACHE_LOCK:
        _CACHE[key] = img
        while len(_CACHE) > _CACHE_MAX:
            _CACHE.popitem(last=False)
    return img
