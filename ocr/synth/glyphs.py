"""Handwritten glyph sources: real handwriting (MNIST, USPS, handwriting fonts) and a procedural stroke fallback.

Every source returns a tight float32 ink mask (1 = ink, 0 = paper) of any size; `fill.py` scales and places it.

Disjoint slices keep the synthetic benchmark honest: the digit CNN trains on MNIST 0-49999 and USPS 0-5999, so the
generator draws only from MNIST 50000-59999 and USPS 6000-7290 by default ("benchmark" writers). The digit model's
training pages (`ocr/read/page_cells.py`) ask for the "training" writers instead: the same slices the CNN's own cell
generator uses (MNIST 0-44999, USPS 0-5399), so no benchmark writer ever reaches training. Fonts are shared by both.

Decoded arrays are cached in memory per process (and MNIST's slice on disk under ~/.cache/c1ocr, optional), so a
worker pays the decode once.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ocr.read.cells_synth import MNIST_TRAIN, USPS_TRAIN

MNIST_SYNTH_SLICE = (50000, 60000)
USPS_SYNTH_SLICE = (6000, 7291)
WRITER_SLICES = {
    "benchmark": (MNIST_SYNTH_SLICE, USPS_SYNTH_SLICE),
    "training": (MNIST_TRAIN, USPS_TRAIN),
}

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> Path:
    """`$C1OCR_SHARED_DATA`, else `../shared/data` relative to the repository root."""
    env = os.environ.get("C1OCR_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


# --- procedural strokes (no data needed) -------------------------------------------------------------------------
# Digits as polylines in a unit box (x right, y down), roughly how people print them.
_STROKES: dict[str, list[list[tuple[float, float]]]] = {
    "0": [[(0.5, 0.0), (0.15, 0.2), (0.08, 0.5), (0.15, 0.82), (0.5, 1.0), (0.85, 0.82), (0.92, 0.5), (0.85, 0.18), (0.5, 0.0)]],
    "1": [[(0.3, 0.2), (0.55, 0.0), (0.55, 1.0)]],
    "2": [[(0.1, 0.25), (0.3, 0.03), (0.65, 0.0), (0.88, 0.22), (0.8, 0.45), (0.1, 1.0), (0.92, 1.0)]],
    "3": [[(0.1, 0.1), (0.5, 0.0), (0.85, 0.18), (0.75, 0.4), (0.4, 0.5), (0.8, 0.6), (0.9, 0.82), (0.55, 1.0), (0.1, 0.9)]],
    "4": [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.7), (0.95, 0.7)]],
    "5": [[(0.85, 0.0), (0.2, 0.0), (0.15, 0.45), (0.55, 0.38), (0.88, 0.6), (0.82, 0.88), (0.5, 1.0), (0.1, 0.9)]],
    "6": [[(0.75, 0.02), (0.35, 0.2), (0.12, 0.6), (0.25, 0.95), (0.6, 1.0), (0.85, 0.75), (0.7, 0.5), (0.35, 0.5), (0.14, 0.65)]],
    "7": [[(0.05, 0.05), (0.95, 0.0), (0.4, 1.0)]],
    "8": [[(0.5, 0.48), (0.15, 0.3), (0.2, 0.06), (0.5, 0.0), (0.8, 0.08), (0.82, 0.3), (0.5, 0.48), (0.12, 0.72), (0.25, 0.97), (0.6, 1.0), (0.88, 0.75), (0.5, 0.48)]],
    "9": [[(0.85, 0.35), (0.55, 0.5), (0.2, 0.42), (0.15, 0.15), (0.45, 0.0), (0.8, 0.1), (0.85, 0.35), (0.8, 1.0)]],
    "X": [[(0.05, 0.05), (0.95, 0.95)], [(0.95, 0.05), (0.05, 0.95)]],
    "-": [[(0.05, 0.5), (0.95, 0.5)]],
}
# Unit-box aspect (width / height) of each stroke glyph.
_ASPECT = {"1": 0.45, "X": 0.9, "-": 3.0}

# Seven-segment ("angka digital") segments in the unit box and which segments each digit lights.
_SEGMENTS = {
    "a": [(0.0, 0.0), (1.0, 0.0)],
    "b": [(1.0, 0.0), (1.0, 0.5)],
    "c": [(1.0, 0.5), (1.0, 1.0)],
    "d": [(0.0, 1.0), (1.0, 1.0)],
    "e": [(0.0, 0.5), (0.0, 1.0)],
    "f": [(0.0, 0.0), (0.0, 0.5)],
    "g": [(0.0, 0.5), (1.0, 0.5)],
}
SEVEN_SEGMENT_DIGITS = {
    "0": "abcdef", "1": "bc", "2": "abged", "3": "abgcd", "4": "fgbc",
    "5": "afgcd", "6": "afgedc", "7": "abc", "8": "abcdefg", "9": "abcdfg",
}


def _polyline_mask(
    strokes: list[list[tuple[float, float]]], w: int, h: int, width_px: float, rng: np.random.Generator, jitter: float
) -> np.ndarray:
    """Draw unit-box polylines into a w x h mask with per-point jitter (anti-aliased, supersampled 4x)."""
    ss = 4
    pad = int(np.ceil(width_px)) + 2
    W, H = (w + 2 * pad) * ss, (h + 2 * pad) * ss
    img = np.zeros((H, W), np.uint8)
    thick = max(1, int(round(width_px * ss)))
    for line in strokes:
        pts = np.array(line, np.float64)
        pts = pts + rng.normal(0, jitter, pts.shape)
        px = np.stack([(pad + pts[:, 0] * (w - 1)) * ss, (pad + pts[:, 1] * (h - 1)) * ss], axis=1)
        cv2.polylines(img, [np.round(px).astype(np.int32)], False, 255, thick, cv2.LINE_AA)
    img = cv2.resize(img, (w + 2 * pad, h + 2 * pad), interpolation=cv2.INTER_AREA)
    return img.astype(np.float32) / 255.0


def stroke_glyph(char: str, rng: np.random.Generator, height_px: int = 48, width_frac: float = 0.1) -> np.ndarray:
    h = max(8, int(height_px))
    aspect = _ASPECT.get(char, 0.62) * rng.uniform(0.8, 1.2)
    if char == "-":
        h = max(4, int(h * 0.12))
        w = int(height_px * rng.uniform(0.6, 1.0))
        return _polyline_mask(_STROKES["-"], w, h, height_px * width_frac, rng, 0.03)
    w = max(4, int(h * aspect))
    return _polyline_mask(_STROKES[char], w, h, height_px * width_frac, rng, 0.035)


def seven_segment_glyph(digit: str, w: int, h: int, width_px: float, rng: np.random.Generator) -> np.ndarray:
    """A digit traced along the dotted "8" guide: straight segments, small gaps or overshoots at the joints."""
    strokes = []
    for s in SEVEN_SEGMENT_DIGITS[digit]:
        (x0, y0), (x1, y1) = _SEGMENTS[s]
        over = rng.uniform(-0.06, 0.08)
        if x0 == x1:
            strokes.append([(x0, y0 - over), (x1, y1 + over)])
        else:
            strokes.append([(x0 - over, y0), (x1 + over, y1)])
    return _polyline_mask(strokes, w, h, width_px, rng, 0.025)


# --- real handwriting --------------------------------------------------------------------------------------------


def _load_idx(path: Path) -> np.ndarray:
    b = gzip.open(path).read()
    nd = b[3]
    dims = struct.unpack(">" + "I" * nd, b[4 : 4 + 4 * nd])
    return np.frombuffer(b[4 + 4 * nd :], np.uint8).reshape(dims)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / "c1ocr"


def load_mnist_slice(data_dir: Path, lo: int = MNIST_SYNTH_SLICE[0], hi: int = MNIST_SYNTH_SLICE[1]):
    """(images ink-bright uint8 N x 28 x 28, labels) for MNIST train indices [lo, hi), or None when absent."""
    d = data_dir / "mnist"
    labels_path = d / "train-labels-idx1-ubyte.gz"
    if not labels_path.exists():
        return None
    cache = _cache_dir() / f"mnist-{lo}-{hi}.npz"
    try:
        if cache.exists():
            z = np.load(cache)
            return z["x"], z["y"]
    except Exception:  # a broken cache is rebuilt
        pass
    labels = _load_idx(labels_path)
    parts = []
    for k in range(3):
        a, b = k * 20000, (k + 1) * 20000
        if b <= lo or a >= hi:
            continue
        p = d / f"train-images-idx3-ubyte.part{k}of3.reconstructed.gz"
        if not p.exists():
            return None
        imgs = _load_idx(p)
        parts.append(imgs[max(lo, a) - a : min(hi, b) - a])
    x, y = np.concatenate(parts), labels[lo:hi].copy()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    except OSError:  # a read-only home is fine, the cache is only a speed-up
        pass
    return x, y


def load_usps_slice(data_dir: Path, lo: int = USPS_SYNTH_SLICE[0], hi: int = USPS_SYNTH_SLICE[1]):
    p = data_dir / "usps" / "zip.train.gz"
    if not p.exists():
        return None
    rows = gzip.open(p, "rt").read().splitlines()[lo:hi]
    a = np.array([[float(v) for v in r.split()] for r in rows], np.float32)
    y = a[:, 0].astype(np.int64)
    x = ((a[:, 1:].reshape(-1, 16, 16) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    return x, y


def font_paths(data_dir: Path) -> list[Path]:
    d = data_dir / "fonts"
    if not d.exists():
        return []
    exts = {".woff", ".otf", ".ttf"}
    return sorted(p for p in d.rglob("*") if p.suffix.lower() in exts)


def _render_font_glyph(path: Path, char: str, size: int = 96) -> np.ndarray | None:
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(path), size)
    except OSError:
        return None
    box = font.getbbox(char)
    w, h = box[2] - box[0], box[3] - box[1]
    if w <= 1 or h <= 1:
        return None
    img = Image.new("L", (w + 8, h + 8), 0)
    ImageDraw.Draw(img).text((4 - box[0], 4 - box[1]), char, fill=255, font=font)
    return tight(np.asarray(img, np.float32) / 255.0)


def tight(mask: np.ndarray, thr: float = 0.15) -> np.ndarray:
    ys, xs = np.nonzero(mask > thr)
    if ys.size == 0:
        return mask
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


@dataclass
class GlyphBank:
    """All glyph sources available on this machine; sources missing from the data folder are simply absent."""

    mnist: dict[int, np.ndarray] = field(default_factory=dict)  # digit -> N x 28 x 28 ink-bright
    usps: dict[int, np.ndarray] = field(default_factory=dict)
    fonts: list[Path] = field(default_factory=list)
    _font_cache: dict = field(default_factory=dict, repr=False)

    @property
    def sources(self) -> list[str]:
        s = []
        if self.mnist:
            s.append("mnist")
        if self.usps:
            s.append("usps")
        if self.fonts:
            s.append("font")
        return s + ["stroke"]

    def font_glyph(self, font_index: int, char: str) -> np.ndarray | None:
        key = (font_index, char)
        if key not in self._font_cache:
            self._font_cache[key] = _render_font_glyph(self.fonts[font_index], char)
        return self._font_cache[key]

    def digit(
        self, rng: np.random.Generator, char: str, source: str, font_index: int = 0, height_px: int = 48,
        pen_frac: float | None = None,
    ):
        """A tight ink mask of `char` from `source`; falls back to strokes. Returns (mask, source used)."""
        if char.isdigit():
            d = int(char)
            if source == "mnist" and d in self.mnist:
                arr = self.mnist[d]
                return tight(arr[int(rng.integers(len(arr)))].astype(np.float32) / 255.0), "mnist"
            if source == "usps" and d in self.usps:
                arr = self.usps[d]
                g = tight(arr[int(rng.integers(len(arr)))].astype(np.float32) / 255.0, 0.3)
                # USPS digits were stretched to fill 16x16; give back a handwriting-like aspect ratio.
                h, w = g.shape
                target_w = max(2, int(round(h * (0.3 if d == 1 else rng.uniform(0.6, 0.8)))))
                if w > target_w:
                    g = cv2.resize(g, (target_w, h), interpolation=cv2.INTER_AREA)
                return g, "usps"
            if source == "font" and self.fonts:
                g = self.font_glyph(font_index % len(self.fonts), char)
                if g is not None:
                    return g, "font"
        return stroke_glyph(char, rng, height_px, pen_frac or rng.uniform(0.08, 0.14)), "stroke"


@lru_cache(maxsize=4)
def glyph_bank(data_dir: str | None = None, use_shared_data: bool = True, writers: str = "benchmark") -> GlyphBank:
    """The process-wide glyph bank for a data folder and writer split (decoded once)."""
    bank = GlyphBank()
    if not use_shared_data:
        return bank
    if writers not in WRITER_SLICES:
        raise ValueError(f"unknown writer split {writers!r}; expected one of {sorted(WRITER_SLICES)}")
    (m_lo, m_hi), (u_lo, u_hi) = WRITER_SLICES[writers]
    d = Path(data_dir) if data_dir else default_data_dir()
    m = load_mnist_slice(d, m_lo, m_hi)
    if m is not None:
        x, y = m
        bank.mnist = {k: x[y == k] for k in range(10)}
    u = load_usps_slice(d, u_lo, u_hi)
    if u is not None:
        x, y = u
        bank.usps = {k: x[y == k] for k in range(10)}
    bank.fonts = font_paths(d)
    return bank
