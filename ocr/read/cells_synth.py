"""Synthetic training cells for the digit CNN.

Each sample is a canonical 96x96 "darkness" box crop (see ocr/cells.py: box border middle at [16, 80), 0 = paper,
255 = darkest ink) with a printed border, paper noise, sometimes neighbouring-box lines and the PPWP 2024 dotted
seven-segment guide, and a mark drawn inside: a handwritten digit (MNIST / USPS training writers, handwriting fonts,
stroke-drawn and seven-segment digits), an X, or a "no digit" mark (dash, dot, smudge, border fragment). The crop then
goes through `ocr.cells.prepare_cell`, so the classifier is trained on exactly what the reader will give it.

Writer split (so that the synthetic-form benchmark measures unseen writers): only MNIST 0-49999 and USPS 0-5999 are
ever used here; the form generator uses MNIST 50000-59999 and USPS 6000+. Inside that range MNIST 45000-49999 and
USPS 5400-5999 are kept for the held-out validation split.

Every sample is drawn from a numpy Generator seeded by (seed, chunk index), so a dataset is reproducible whatever
the number of worker processes.
"""

from __future__ import annotations

import glob
import gzip
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ocr.cells import BOX_PX, CELL_PX, CROP_PX, MARGIN_PX, prepare_cell
from ocr.read.base import BLANK_INDEX, CLASSES, X_INDEX
from ocr.synth.camera import motion_kernel

MNIST_TRAIN = (0, 45000)  # training writers
MNIST_VAL = (45000, 50000)  # held-out writers, still inside the range reserved for the CNN
USPS_TRAIN = (0, 5400)
USPS_VAL = (5400, 6000)

# Share of each class family in a dataset. Digits dominate; X and "no digit" are common on real forms (leading boxes).
P_X = 0.11
P_BLANK = 0.13
# Shares of digit samples written the ways a KPPS corrects or misplaces a digit (ocr/synth/fill.py draws the same on
# whole pages): an old digit struck out under the final one; the final digit written over a wrong one with a heavier
# pen; a digit pushed over the box line, which the cell stage cuts.
P_STRIKE = 0.03
P_OVERWRITE = 0.02
P_CROSS = 0.06
# Share of crops smeared by hand shake, and the smear's length as a share of the box. The pages' camera
# (ocr/synth/camera.py) shakes 15% of usable photos by up to ~0.14 of a box; v7's nets saw that only in the page
# cells, and read shaken cells far worse (`python -m bench.motion_blur_cells`: 94.5% of held-out synthetic digits
# sharp, 88.3% with a 0.15-box smear); the cells here reach a little past the pages' smear.
P_MOTION = 0.2
MOTION_BOX_SHARE = (0.06, 0.2)
LOST_INK_RATIO = 0.6  # a digit whose prepared ink is below this share of the drawn ink is redrawn
KEPT_LINE_RATIO = 1.6  # ... and one with much more ink than drawn (the cell stage kept a box line) too


def default_data_dir() -> Path:
    """../shared/data relative to the repository root, unless C1OCR_SHARED_DATA says otherwise."""
    env = os.environ.get("C1OCR_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


# --------------------------------------------------------------------------------------------------------------------
# Glyph sources. A glyph is a float32 ink image in [0, 1] (1 = ink), cropped to its ink.


def _load_idx(path: Path) -> np.ndarray:
    b = gzip.open(path).read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4 : 4 + 4 * nd])
    return np.frombuffer(b[4 + 4 * nd :], np.uint8).reshape(dims)


def _crop_ink(ink: np.ndarray, thr: float = 0.1) -> np.ndarray:
    ys, xs = np.nonzero(ink > thr)
    if ys.size == 0:
        return ink
    return ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def _font_paths(data_dir: Path) -> list[str]:
    d = data_dir / "fonts"
    return sorted(glob.glob(str(d / "npm_fontsource" / "*" / "*.woff"))) + sorted(
        glob.glob(str(d / "debian" / "*" / "*.[ot]tf"))
    )


def _render_font_glyphs(paths: list[str], chars: str) -> dict[str, list[np.ndarray]]:
    """Render each character of each font once, at a size large enough to be downscaled into a box."""
    from PIL import Image, ImageDraw, ImageFont

    out: dict[str, list[np.ndarray]] = {c: [] for c in chars}
    for p in paths:
        try:
            font = ImageFont.truetype(p, 72)
        except OSError:
            continue
        for c in chars:
            l, t, r, b = font.getbbox(c)
            if r - l < 2 or b - t < 2:
                continue
            img = Image.new("L", (r - l + 8, b - t + 8), 0)
            ImageDraw.Draw(img).text((4 - l, 4 - t), c, font=font, fill=255)
            g = _crop_ink(np.asarray(img, np.float32) / 255.0)
            if g.size:
                out[c].append(g)
    return out


@dataclass
class GlyphBank:
    """Handwritten glyphs available for rendering; any source may be empty (then procedural glyphs stand in)."""

    mnist: np.ndarray = field(default_factory=lambda: np.zeros((0, 28, 28), np.uint8))
    mnist_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    usps: np.ndarray = field(default_factory=lambda: np.zeros((0, 16, 16), np.uint8))
    usps_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    fonts: dict[str, list[np.ndarray]] = field(default_factory=dict)  # char -> glyphs ("0".."9", "X", "x", "-")
    sources: list[str] = field(default_factory=list)  # what was loaded, for provenance

    @classmethod
    def load(cls, data_dir: Path | None, split: str = "train", use_fonts: bool = True) -> "GlyphBank":
        bank = cls()
        if data_dir is None or not Path(data_dir).is_dir():
            bank.sources.append("procedural only (no shared data)")
            return bank
        data_dir = Path(data_dir)
        m_lo, m_hi = MNIST_TRAIN if split == "train" else MNIST_VAL
        u_lo, u_hi = USPS_TRAIN if split == "train" else USPS_VAL
        mdir = data_dir / "mnist"
        parts = [mdir / f"train-images-idx3-ubyte.part{k}of3.reconstructed.gz" for k in range(3)]
        if all(p.exists() for p in parts) and (mdir / "train-labels-idx1-ubyte.gz").exists():
            # Parts hold 20000 images each; read only those covering the wanted range.
            imgs = []
            for k, p in enumerate(parts):
                if k * 20000 < m_hi and (k + 1) * 20000 > m_lo:
                    imgs.append((k * 20000, _load_idx(p)))
            allimg = np.concatenate([a for _, a in imgs])
            base = imgs[0][0]
            bank.mnist = allimg[m_lo - base : m_hi - base].copy()
            bank.mnist_labels = _load_idx(mdir / "train-labels-idx1-ubyte.gz")[m_lo:m_hi].astype(np.int64)
            bank.sources.append(f"mnist[{m_lo}:{m_hi}]")
        upath = data_dir / "usps" / "zip.train.gz"
        if upath.exists():
            a = np.loadtxt(gzip.open(upath))[u_lo:u_hi]
            bank.usps_labels = a[:, 0].astype(np.int64)
            bank.usps = ((a[:, 1:].reshape(-1, 16, 16) + 1) * 127.5).clip(0, 255).astype(np.uint8)
            bank.sources.append(f"usps[{u_lo}:{u_hi}]")
        if use_fonts:
            paths = _font_paths(data_dir)
            if paths:
                bank.fonts = _render_font_glyphs(paths, "0123456789Xx-")
                bank.sources.append(f"fonts x{len(paths)}")
        return bank


# --------------------------------------------------------------------------------------------------------------------
# Procedural glyphs (always available): stroke-drawn digits, seven-segment digits, X, dashes.

# Seven segments as (x0, y0, x1, y1) on a unit cell 1 wide, 2 high: a top, b top-right, c bottom-right, d bottom,
# e bottom-left, f top-left, g middle.
_SEG = {
    "a": (0, 0, 1, 0),
    "b": (1, 0, 1, 1),
    "c": (1, 1, 1, 2),
    "d": (0, 2, 1, 2),
    "e": (0, 1, 0, 2),
    "f": (0, 0, 0, 1),
    "g": (0, 1, 1, 1),
}
_DIGIT_SEGS = {
    0: "abcdef",
    1: "bc",
    2: "abged",
    3: "abgcd",
    4: "fgbc",
    5: "afgcd",
    6: "afgedc",
    7: "abc",
    8: "abcdefg",
    9: "abcdfg",
}

# Stroke skeletons of print digits on a unit cell (x in [0, 1], y in [0, 1.6]); each a list of polylines.
_STROKES: dict[int, list[list[list[tuple[float, float]]]]] = {
    1: [
        [[(0.5, 0.0), (0.5, 1.6)]],  # plain bar
        [[(0.15, 0.35), (0.5, 0.0), (0.5, 1.6)]],  # with the "hat"
        [[(0.15, 0.35), (0.5, 0.0), (0.5, 1.6)], [(0.2, 1.6), (0.8, 1.6)]],  # hat and shoes
        # a foot curving right, as many KPPS write it (an "l"); MNIST has few
        [[(0.4, 0.0), (0.4, 1.3), (0.5, 1.52), (0.85, 1.48)]],
        [[(0.1, 0.35), (0.4, 0.0), (0.4, 1.3), (0.5, 1.52), (0.85, 1.48)]],  # hat and foot
    ],
    4: [
        [[(0.7, 1.6), (0.7, 0.0), (0.0, 1.1), (1.0, 1.1)]],  # closed 4
        [[(0.15, 0.0), (0.05, 1.0), (1.0, 1.0)], [(0.75, 0.2), (0.75, 1.6)]],  # open 4
    ],
    # a "9" whose tail hooks back left, like a "g" (the 2019 forms' year); MNIST's 9s mostly end in a straight stem
    9: [
        [[(0.9, 0.35), (0.75, 0.05), (0.45, 0.0), (0.15, 0.15), (0.1, 0.45), (0.35, 0.7), (0.7, 0.65), (0.9, 0.4),
          (0.9, 1.2), (0.75, 1.5), (0.45, 1.6), (0.15, 1.4)]],
        [[(0.85, 0.2), (0.5, 0.0), (0.15, 0.2), (0.15, 0.55), (0.5, 0.7), (0.85, 0.5), (0.85, 0.2), (0.8, 1.1),
          (0.6, 1.55), (0.25, 1.55), (0.1, 1.3)]],
    ],
    7: [
        [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.6)]],
        [[(0.0, 0.0), (1.0, 0.0), (0.35, 1.6)], [(0.35, 0.8), (0.95, 0.8)]],  # crossbar
        [[(0.0, 0.25), (0.0, 0.0), (1.0, 0.0), (0.5, 1.6)]],
    ],
}


def _draw_polylines(
    rng: np.random.Generator, lines: list[list[tuple[float, float]]], w: float, h: float, thick: int, jitter: float
) -> np.ndarray:
    """Polylines on a unit cell scaled to (w, h) px, with per-point jitter, as a cropped ink image. Points may lie
    beyond the unit cell (digit skeletons run down to y = 1.6): the canvas covers them all."""
    pad = thick + 4
    x_max = max(x for line in lines for x, _ in line)
    y_max = max(y for line in lines for _, y in line)
    img = np.zeros((int(max(1.0, y_max) * h + 2 * pad), int(max(1.0, x_max) * w + 2 * pad)), np.uint8)
    for line in lines:
        pts = np.array([(pad + x * w, pad + y * h) for x, y in line], np.float64)
        pts += rng.normal(0, jitter, pts.shape)
        cv2.polylines(img, [np.round(pts * 4).astype(np.int32)], False, 255, thick, cv2.LINE_AA, shift=2)
    return _crop_ink(img.astype(np.float32) / 255.0)


def seven_segment_glyph(rng: np.random.Generator, digit: int) -> np.ndarray:
    """A digit written as seven-segment strokes ("angka digital"), as some KPPS did on the dotted guides."""
    w, h = rng.uniform(22, 34), rng.uniform(44, 60)
    lines = []
    for s in _DIGIT_SEGS[digit]:
        x0, y0, x1, y1 = _SEG[s]
        lines.append([(x0, y0 / 2 * 1.6), (x1, y1 / 2 * 1.6)])
    return _draw_polylines(rng, lines, w, h / 1.6, int(rng.integers(3, 7)), jitter=1.2)


def stroke_glyph(rng: np.random.Generator, digit: int) -> np.ndarray | None:
    """Print-style 1 / 4 / 7 variants (serifs, open or closed 4, crossed 7) drawn as strokes; None for others."""
    if digit not in _STROKES:
        return None
    variants = _STROKES[digit]
    lines = variants[int(rng.integers(len(variants)))]
    w, h = rng.uniform(22, 34), rng.uniform(44, 60)
    return _draw_polylines(rng, lines, w, h / 1.6, int(rng.integers(3, 7)), jitter=1.0)


_HERSHEY = [
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_SCRIPT_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
]


def hershey_glyph(rng: np.random.Generator, char: str) -> np.ndarray:
    font = _HERSHEY[int(rng.integers(len(_HERSHEY)))]
    thick = int(rng.integers(2, 7))
    img = np.zeros((110, 110), np.uint8)
    cv2.putText(img, char, (20, 85), font, 2.4, 255, thick, cv2.LINE_AA)
    return _crop_ink(img.astype(np.float32) / 255.0)


def cross_glyph(rng: np.random.Generator) -> np.ndarray:
    """An X: two strokes, varied angle, length, curvature and where they cross."""
    w, h = rng.uniform(24, 64), rng.uniform(30, 64)
    thick = int(rng.integers(2, 8))
    c = (rng.uniform(0.35, 0.65), rng.uniform(0.35, 0.65))

    def stroke(p0, p1):
        n = int(rng.integers(2, 5))
        t = np.linspace(0, 1, n + 1)[:, None]
        pts = np.array(p0) * (1 - t) + np.array(p1) * t
        bend = rng.normal(0, 0.04)
        pts[:, 0] += bend * np.sin(np.pi * t[:, 0])
        return [tuple(p) for p in pts]

    j = lambda: rng.normal(0, 0.06)  # noqa: E731
    a = stroke((0 + j(), 0 + j()), (1 + j(), 1 + j()))
    b = stroke((1 + j(), 0 + j()), (0 + j(), 1 + j()))
    # Move the crossing point off-centre by shearing both strokes towards c.
    a = [(x + (c[0] - 0.5) * (1 - abs(2 * y - 1)), y) for x, y in a]
    b = [(x + (c[0] - 0.5) * (1 - abs(2 * y - 1)), y) for x, y in b]
    return _draw_polylines(rng, [a, b], w, h, thick, jitter=0.8)


def blank_mark_glyph(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A mark that is not a digit: dash, double dash, dot, smudge, tick, wavy line. Returns (ink, kind)."""
    kind = rng.choice(["dash", "dash", "dash", "dash", "double", "dot", "smudge", "wave"])
    thick = int(rng.integers(2, 8))
    if kind == "dash":
        w = rng.uniform(10, 55)
        slope = rng.normal(0, 0.12)
        return _draw_polylines(rng, [[(0, 0.5), (1, 0.5 + slope)]], w, w * 0.4, thick, jitter=0.6), kind
    if kind == "double":
        w = rng.uniform(12, 40)
        g = rng.uniform(0.2, 0.45)
        return _draw_polylines(rng, [[(0, 0.5 - g), (1, 0.5 - g)], [(0, 0.5 + g), (1, 0.5 + g)]], w, w * 0.5, thick, 0.6), kind
    if kind == "dot":
        r = rng.uniform(2, 6)
        img = np.zeros((20, 20), np.float32)
        cv2.circle(img, (10, 10), int(round(r)), 1.0, -1, cv2.LINE_AA)
        return _crop_ink(img), kind
    if kind == "smudge":
        img = np.zeros((40, 40), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            # An elongated smudge, or a row of blobs, lies near horizontal: stood upright it is a thick "1" once
            # normalised, and labelled "no digit" it would pull real thick 1s towards a dash.
            cx, cy = rng.uniform(10, 30), rng.uniform(17, 23)
            a, b = rng.uniform(3, 10), rng.uniform(2, 6)
            angle = rng.uniform(-35, 35) if a > 1.5 * b else rng.uniform(0, 180)
            cv2.ellipse(img, (int(cx), int(cy)), (int(a), int(b)), float(angle), 0, 360, float(rng.uniform(0.5, 1.0)),
                        -1, cv2.LINE_AA)
        return _crop_ink(cv2.GaussianBlur(img, (0, 0), rng.uniform(0.8, 2.0))), kind
    # wave: a tilde-like filler
    w = rng.uniform(20, 50)
    xs = np.linspace(0, 1, 9)
    ph = rng.uniform(0, np.pi)
    pts = [(x, 0.5 + 0.25 * np.sin(ph + 2 * np.pi * x)) for x in xs]
    return _draw_polylines(rng, [pts], w, w * 0.35, thick, jitter=0.4), kind


def add_crossbar(rng: np.random.Generator, ink: np.ndarray) -> np.ndarray:
    """A continental 7: a short bar across the stem at mid height."""
    h, w = ink.shape
    y = int(h * rng.uniform(0.45, 0.6))
    cols = np.nonzero(ink[y] > 0.3)[0]
    if cols.size == 0:
        return ink
    cx = cols.mean()
    half = w * rng.uniform(0.25, 0.4)
    out = ink.copy()
    thick = max(2, int(round(max(h, w) * 0.06)))
    cv2.line(out, (int(cx - half), y), (int(cx + half), y + int(rng.integers(-2, 3))), 1.0, thick, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Picking a glyph for a class.


def digit_glyph(rng: np.random.Generator, bank: GlyphBank, digit: int) -> np.ndarray:
    """A glyph of `digit` from one of the available sources, weighted towards real handwriting."""
    options: list[tuple[float, str]] = []
    if len(bank.mnist):
        options.append((0.42, "mnist"))
    if len(bank.usps):
        options.append((0.14, "usps"))
    if bank.fonts.get(str(digit)):
        options.append((0.24, "font"))
    options.append((0.07, "seven"))
    if digit in _STROKES:
        options.append((0.08, "stroke"))
    options.append((0.05 if len(options) > 2 else 0.4, "hershey"))
    p = np.array([o[0] for o in options])
    src = options[int(rng.choice(len(options), p=p / p.sum()))][1]
    if src == "mnist":
        idx = np.nonzero(bank.mnist_labels == digit)[0]
        g = _crop_ink(bank.mnist[int(rng.choice(idx))].astype(np.float32) / 255.0)
    elif src == "usps":
        idx = np.nonzero(bank.usps_labels == digit)[0]
        g = _crop_ink(bank.usps[int(rng.choice(idx))].astype(np.float32) / 255.0, thr=0.25)
    elif src == "font":
        fl = bank.fonts[str(digit)]
        g = fl[int(rng.integers(len(fl)))]
    elif src == "seven":
        g = seven_segment_glyph(rng, digit)
    elif src == "stroke":
        g = stroke_glyph(rng, digit)
    else:
        g = hershey_glyph(rng, str(digit))
    if digit == 7 and src in ("font", "hershey", "mnist") and rng.random() < 0.2:
        g = add_crossbar(rng, g)
    return g


def x_glyph(rng: np.random.Generator, bank: GlyphBank) -> np.ndarray:
    r = rng.random()
    fx = bank.fonts.get("X", []) + bank.fonts.get("x", [])
    if fx and r < 0.3:
        return fx[int(rng.integers(len(fx)))]
    if r < 0.38:
        return hershey_glyph(rng, "X" if rng.random() < 0.6 else "x")
    return cross_glyph(rng)


# --------------------------------------------------------------------------------------------------------------------
# The box crop.


def _warp_glyph(rng: np.random.Generator, g: np.ndarray, target_h: float, cx: float, cy: float) -> np.ndarray:
    """Place a glyph into a CROP_PX canvas: scale to `target_h`, rotate, shear, centre at (cx, cy)."""
    gh, gw = g.shape
    s = target_h / max(gh, 1)
    # Very wide glyphs (dashes, Xs) must still fit a box; keep the aspect ratio.
    s = min(s, (BOX_PX * rng.uniform(0.6, 1.15)) / max(gw, 1)) if gw * s > BOX_PX * 1.1 else s
    ang = math.radians(rng.normal(0, 6))
    shear = rng.normal(0, 0.12)
    sx = s * rng.uniform(0.85, 1.15)
    A = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]]) @ np.array(
        [[sx, shear * s], [0, s]]
    )
    c_src = np.array([gw / 2, gh / 2])
    t = np.array([cx, cy]) - A @ c_src
    M = np.hstack([A, t[:, None]]).astype(np.float32)
    return cv2.warpAffine(g, M, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR, borderValue=0)


def _stroke_weight(rng: np.random.Generator, ink: np.ndarray) -> np.ndarray:
    """Thin pens and fat markers."""
    r = rng.random()
    if r < 0.2:
        k = int(rng.integers(2, 4))
        return cv2.dilate(ink, np.ones((k, k), np.uint8))
    if r < 0.35:
        return cv2.erode(ink, np.ones((2, 2), np.uint8))
    return ink


def _dotted_guide(rng: np.random.Generator) -> np.ndarray:
    """The faint dotted seven-segment "8" printed inside the PPWP 2024 page 2 boxes."""
    img = np.zeros((CROP_PX, CROP_PX), np.float32)
    w, h = BOX_PX * rng.uniform(0.4, 0.55), BOX_PX * rng.uniform(0.6, 0.75)
    x0 = CROP_PX / 2 - w / 2 + rng.normal(0, 1.5)
    y0 = CROP_PX / 2 - h / 2 + rng.normal(0, 1.5)
    r = rng.uniform(0.8, 1.8)
    step = rng.uniform(3.0, 5.0)
    for s in "abcdefg":
        sx0, sy0, sx1, sy1 = _SEG[s]
        p0 = np.array([x0 + sx0 * w, y0 + sy0 / 2 * h])
        p1 = np.array([x0 + sx1 * w, y0 + sy1 / 2 * h])
        n = max(2, int(np.linalg.norm(p1 - p0) / step))
        for t in np.linspace(0.1, 0.9, n):
            p = p0 * (1 - t) + p1 * t
            cv2.circle(img, (int(round(p[0] * 4)), int(round(p[1] * 4))), int(round(r * 4)), 1.0, -1, cv2.LINE_AA, 2)
    return img


def _box_frame(rng: np.random.Generator, border: float) -> np.ndarray:
    """Printed box lines (1 = printed), with small offsets and rotation, and sometimes neighbouring boxes."""
    img = np.zeros((CROP_PX, CROP_PX), np.float32)
    sh = 4  # sub-pixel positions (shift=2); thickness is in whole pixels
    t = max(1, int(round(border)))

    def rect(x0, y0, x1, y1):
        cv2.rectangle(img, (int(x0 * sh), int(y0 * sh)), (int(x1 * sh), int(y1 * sh)), 1.0, t, cv2.LINE_AA, 2)

    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    rect(a, a, b, b)
    if rng.random() < 0.5:  # neighbouring boxes left/right (a row of 3 boxes)
        gap = rng.choice([0.0, rng.uniform(8, 20)])
        if rng.random() < 0.7:
            rect(b + gap, a, b + gap + BOX_PX, b)
        if rng.random() < 0.7:
            rect(a - gap - BOX_PX, a, a - gap, b)
    if rng.random() < 0.2:  # a table line above or below
        y = a - rng.uniform(6, 15) if rng.random() < 0.5 else b + rng.uniform(6, 15)
        cv2.line(img, (0, int(y * sh)), (CROP_PX * sh, int(y * sh)), 1.0, t, cv2.LINE_AA, 2)
    ang = rng.normal(0, 1.0)
    M = cv2.getRotationMatrix2D((CROP_PX / 2, CROP_PX / 2), ang, 1.0)
    M[:, 2] += rng.uniform(-4, 4, 2)
    return cv2.warpAffine(img, M, (CROP_PX, CROP_PX), flags=cv2.INTER_LINEAR)


@dataclass
class RenderedCrop:
    crop: np.ndarray  # uint8 CROP_PX square darkness image
    border_px: float
    mark_fraction: float  # area of the drawn mark inside the box interior / interior area (before the camera)


def render_crop(rng: np.random.Generator, bank: GlyphBank, label: int) -> RenderedCrop:
    """One canonical darkness crop of class `label`."""
    border = float(rng.uniform(2.0, 5.0))
    paper = rng.uniform(0, 35)
    # Paper: a level, a slow gradient (shadow across the box), grain.
    yy, xx = np.mgrid[0:CROP_PX, 0:CROP_PX].astype(np.float32) / CROP_PX
    gx, gy = rng.normal(0, 12, 2)
    dark = paper + gx * (xx - 0.5) + gy * (yy - 0.5)
    dark = dark + rng.normal(0, rng.uniform(0, 6), dark.shape)

    frame = _box_frame(rng, border) * rng.uniform(150, 255)
    dark = np.maximum(dark, frame)
    if rng.random() < 0.25:
        dark = np.maximum(dark, _dotted_guide(rng) * rng.uniform(30, 140))

    ink_level = rng.uniform(160, 255) if rng.random() < 0.9 else rng.uniform(120, 160)  # low-contrast pens
    box_c = CROP_PX / 2
    ink = np.zeros((CROP_PX, CROP_PX), np.float32)

    if label == BLANK_INDEX:
        r = rng.random()
        if r < 0.12:
            pass  # only the printed guide / noise: kept if prepare_cell still sees ink in it
        elif r < 0.24:
            # A leftover fragment of a box line just inside the box (misregistered border). Vertical fragments stay
            # short: after normalisation a long vertical bar is indistinguishable from a "1".
            side = int(rng.integers(4))
            off = rng.uniform(4, 10)
            ln = rng.uniform(25, 60) if side % 2 == 1 else rng.uniform(8, 16)
            p = rng.uniform(MARGIN_PX, MARGIN_PX + BOX_PX - ln)
            th = max(1, int(round(border)))
            a = MARGIN_PX + off if side < 2 else MARGIN_PX + BOX_PX - off
            if side % 2 == 0:
                cv2.line(ink, (int(a), int(p)), (int(a), int(p + ln)), 1.0, th, cv2.LINE_AA)
            else:
                cv2.line(ink, (int(p), int(a)), (int(p + ln), int(a)), 1.0, th, cv2.LINE_AA)
        else:
            g, kind = blank_mark_glyph(rng)
            gh, gw = g.shape
            target = gh * rng.uniform(0.8, 1.3)
            ink = _warp_glyph(rng, g, target, box_c + rng.normal(0, 6), box_c + rng.normal(0, 6))
    else:
        if label == X_INDEX:
            g = x_glyph(rng, bank)
            frac = rng.uniform(0.4, 1.1)
        else:
            g = digit_glyph(rng, bank, label)
            # Some KPPS write small, the date above all: a "1" a fifth of the box tall comes out of the cell stage as a
            # short bar (it is not magnified past 40% of the box), which a net that never saw a digit under 40% of
            # its box can only call a dash.
            size = rng.random()
            if size < 0.73:
                frac = rng.uniform(0.4, 1.1)
            elif size < 0.85:
                frac = rng.uniform(0.2, 0.4)  # small
            else:
                frac = rng.uniform(0.85, 1.15)  # large, some crossing the border
        g = _stroke_weight(rng, g)
        target_h = BOX_PX * frac
        off = BOX_PX * (0.5 - 0.5 * min(frac, 0.95)) * 0.9
        cx = box_c + rng.uniform(-off, off) * 0.8 + rng.normal(0, 1.5)
        cy = box_c + rng.uniform(-off, off) * 0.8 + rng.normal(0, 1.5)
        style = rng.random() if label < 10 else 1.0
        if style < P_STRIKE:
            # Struck out: an old digit, struck through, under a larger, darker final digit (the label).
            old = digit_glyph(rng, bank, int(rng.integers(10)))
            old_ink = _warp_glyph(rng, old, BOX_PX * rng.uniform(0.4, 0.6), box_c + rng.normal(0, 4), box_c)
            ys, xs = np.nonzero(old_ink > 0.3)
            if ys.size:
                y = int(ys.mean() + rng.normal(0, 3))
                cv2.line(old_ink, (int(xs.min()) - 2, y - 3), (int(xs.max()) + 2, y + 3), 1.0, 2, cv2.LINE_AA)
            ink = np.maximum(ink, old_ink * 0.75)
            target_h = BOX_PX * rng.uniform(0.8, 1.05)
            cx, cy = box_c + rng.normal(0, 3), box_c + rng.normal(0, 3)
        elif style < P_STRIKE + P_OVERWRITE:
            # Overwritten: the final digit (the label) written over a wrong one of about the same size and place; only
            # its heavier strokes tell which is which, as a person reading the form would see.
            # Small ones are left out: two small digits on top of each other are a blob nobody can read.
            target_h = BOX_PX * max(frac, rng.uniform(0.6, 0.9))
            old = digit_glyph(rng, bank, (label + int(rng.integers(1, 10))) % 10)
            old_h, old_cx, old_cy = target_h * rng.uniform(0.9, 1.1), cx + rng.normal(0, 2), cy + rng.normal(0, 2)
            old_ink = _warp_glyph(rng, old, old_h, old_cx, old_cy)
            ink = np.maximum(ink, cv2.erode(old_ink, np.ones((2, 2), np.uint8)))
            final = _warp_glyph(rng, g, target_h, cx, cy)
            ink = np.maximum(ink, cv2.dilate(final, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))))
        elif style < P_STRIKE + P_OVERWRITE + P_CROSS:
            # Over the line: pushed towards one side of the box, part of it beyond the line (the cell stage cuts it
            # there, or keeps it joined to the line).
            target_h = BOX_PX * max(frac, rng.uniform(0.6, 0.9))
            side = int(rng.integers(4))
            amt = BOX_PX * rng.uniform(0.18, 0.32)
            cx = box_c + amt * (1 if side == 0 else -1 if side == 1 else 0) + rng.normal(0, 2)
            cy = box_c + amt * (1 if side == 2 else -1 if side == 3 else 0) + rng.normal(0, 2)
        if not P_STRIKE <= style < P_STRIKE + P_OVERWRITE:
            ink = np.maximum(ink, _warp_glyph(rng, g, target_h, cx, cy))
    dark = np.maximum(dark, np.clip(ink, 0, 1) * ink_level)
    a, b = MARGIN_PX + int(border), MARGIN_PX + BOX_PX - int(border)
    mark_fraction = float((ink[a:b, a:b] > 0.5).mean())

    # Camera: defocus, low resolution (a small box in the photo warped up), sensor noise.
    if rng.random() < 0.6:
        dark = cv2.GaussianBlur(dark, (0, 0), rng.uniform(0.4, 1.6))
    if rng.random() < P_MOTION:
        dark = cv2.filter2D(dark, -1, motion_kernel(rng, BOX_PX * rng.uniform(*MOTION_BOX_SHARE)))
    if rng.random() < 0.3:
        small = int(rng.uniform(28, 60))
        dark = cv2.resize(cv2.resize(dark, (small, small), interpolation=cv2.INTER_AREA), (CROP_PX, CROP_PX))
    dark = dark + rng.normal(0, rng.uniform(0, 8), dark.shape)
    return RenderedCrop(np.clip(dark, 0, 255).astype(np.uint8), border, mark_fraction)


def sample_label(rng: np.random.Generator) -> int:
    r = rng.random()
    if r < P_X:
        return X_INDEX
    if r < P_X + P_BLANK:
        return BLANK_INDEX
    return int(rng.integers(10))


def make_cells(bank: GlyphBank, n: int, seed: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """n prepared cells (uint8, n x 2 x 32 x 32: glyph and placement planes, 255 = ink; see PreparedCell.channels)
    and labels, from the generator seeded by (seed, chunk).

    Crops that `prepare_cell` marks empty never reach the CNN, so they are redrawn rather than kept. So are digits and
    Xs that the cell stage mostly lost (a faint pen after blur) or merged with a box line it failed to remove: their
    prepared glyph no longer shows the label, and training on them would only teach the net to guess.
    """
    rng = np.random.default_rng([seed, chunk])
    X = np.zeros((n, 2, CELL_PX, CELL_PX), np.uint8)
    y = np.zeros(n, np.int64)
    i = 0
    while i < n:
        label = sample_label(rng)
        r = render_crop(rng, bank, label)
        cell = prepare_cell(r.crop, r.border_px)
        if cell.empty:
            continue
        if label != BLANK_INDEX and not (
            LOST_INK_RATIO * r.mark_fraction <= cell.ink_fraction <= KEPT_LINE_RATIO * r.mark_fraction + 0.02
        ):
            continue
        X[i] = np.round(cell.channels(2) * 255).astype(np.uint8)
        y[i] = label
        i += 1
    return X, y


def class_names() -> tuple[str, ...]:
    return CLASSES
