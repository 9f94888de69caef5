"""Tesseract as a weak second vote on digit boxes, one process per page.

Tesseract is built for printed text lines; on handwritten digits it is a weak vote, never the sole reader
(docs/anchors.md lesson 1). It is driven like OCRmyPDF drives it (lesson 13): the version is probed once with a clear
`MissingDependency` when absent, every call has a timeout, stderr is mapped to log levels, `OMP_THREAD_LIMIT=1`.

Batching (lesson 12): one process per page, never one per box (~160 ms each) and never a mosaic (glyphs merge and
drop). Tesseract accepts a text file listing image paths and treats each image as a page; with the `tsv` renderer
every image yields one level-1 row carrying its `page_num` (1-based, in list order), *also when nothing is
recognised*, so results map back to cells by page number, not by counting form feeds. The mapping is checked: if the
page numbers are not exactly 1..N the batch is retried in chunks, and a chunk that still does not map gives
per-cell errors. A crash or timeout gives per-cell errors. Nothing is ever assigned by position alone.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ocr.cells import SPECK_FRACTION, PreparedCell
from ocr.errors import MissingDependency
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES, X_INDEX, CellPrediction, empty_prediction

log = logging.getLogger(__name__)

INSTALL_HINT = "install tesseract-ocr: apt-get install -y tesseract-ocr (Debian/Ubuntu)"
WHITELIST = "0123456789Xx-"
PSM_SINGLE_CHAR = 10
VERSION_TIMEOUT_S = 10.0
DEFAULT_TIMEOUT_S = 20.0
RETRY_CHUNK = 16  # cells per process when a whole-page batch did not map back cleanly

# Image handed to tesseract: the box interior at canonical resolution (the glyph ~35-45 px tall, which tesseract's
# LSTM handles well), binarised, specks and border remnants removed, black on white with a white margin. Measured on
# printed digits in 4 fonts (psm 10): this scored 45/48 against 36/48 for the 32x32 classifier glyph scaled up (its
# downsampling blurs the strokes) and 33/48 for the interior scaled 2x.
PAD_PX = 16
RIM_PX = 2  # interior rim cleared: leftovers of the printed box line

# How a recognised character turns into probabilities: tesseract's confidence is over-confident on shapes it was
# never trained on, so it is clipped; the rest of the mass is spread over the other classes.
MIN_P = 0.05
MAX_P = 0.9
# Nothing recognised: with little ink the box is probably a stray mark or a faint dash ("_"), otherwise we know
# nothing (a flat vector is neutral in the ensemble's log-linear pool).
LOW_INK_FRACTION = 0.03
NOTHING_LOW_INK_BLANK_P = 0.6

# stderr lines tesseract prints in normal operation (list-file progress, DPI guesses): debug, not warnings.
_STDERR_DEBUG = [
    re.compile(p)
    for p in (
        r"^Page \d+ : ",
        r"^Estimating resolution as \d+",
        r"^Detected \d+ diacritics",
        r"^Empty page!*",
        r"^Warning: Invalid resolution 0 dpi",
        r"^Too few characters",
        # Empty-page statistics dumps of the layout analysis ("Bottom=0, top=160", "Median=0.00", ...).
        r"^(Bottom|Total count|Min|Lower quartile|Median|Upper quartile|Max|Range|Mean|SD)\s*=",
    )
]


class TesseractFailure(Exception):
    """A tesseract run failed as a whole (crash, timeout, unparseable or unmappable output)."""


@dataclass(frozen=True)
class TesseractChar:
    """What tesseract said about one image: the recognised text ("" when nothing) and its confidence 0..100."""

    text: str
    conf: float


def _tesseract_cmd(cmd: str | None = None) -> str:
    return cmd or os.environ.get("C1OCR_TESSERACT") or "tesseract"


def tesseract_version(cmd: str | None = None) -> str:
    """The installed tesseract version ("5.3.0"), probed once per command; MissingDependency when unusable.

    The command is `cmd`, else $C1OCR_TESSERACT, else "tesseract" on PATH.
    """
    return _probe_version(_tesseract_cmd(cmd))


@lru_cache(maxsize=8)
def _probe_version(exe: str) -> str:
    if shutil.which(exe) is None:
        raise MissingDependency(f"tesseract not found ({exe!r} is not on PATH): {INSTALL_HINT}")
    try:
        proc = subprocess.run(
            [exe, "--version"], capture_output=True, text=True, timeout=VERSION_TIMEOUT_S, env=_env(), check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MissingDependency(f"tesseract ({exe}) cannot be run: {e}; {INSTALL_HINT}") from None
    out = (proc.stdout or "") + (proc.stderr or "")
    m = re.search(r"tesseract\s+v?(\d+\.\d+(?:\.\d+)?)", out)
    if proc.returncode != 0 or not m:
        raise MissingDependency(f"tesseract ({exe}) did not report a version: {out.strip()[:200]!r}; {INSTALL_HINT}")
    version = m.group(1)
    if int(version.split(".")[0]) < 4:
        raise MissingDependency(f"tesseract {version} is too old (need >= 4, the LSTM engine); {INSTALL_HINT}")
    return version


def has_tesseract(cmd: str | None = None) -> bool:
    try:
        tesseract_version(cmd)
        return True
    except MissingDependency:
        return False


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # Tesseract's OpenMP threads fight over the cores; parallelism belongs across pages (OCRmyPDF does the same).
    env["OMP_THREAD_LIMIT"] = "1"
    return env


def _log_stderr(stderr: str) -> None:
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        if any(p.search(line) for p in _STDERR_DEBUG):
            log.debug("tesseract: %s", line)
        elif line.lower().startswith(("error", "failed", "cannot", "can't")):
            log.error("tesseract: %s", line)
        else:
            log.warning("tesseract: %s", line)


def cell_image(cell: PreparedCell) -> np.ndarray:
    """A prepared cell as a black-on-white uint8 image for tesseract (see PAD_PX for why the interior is used)."""
    src = cell.interior if cell.interior is not None and np.size(cell.interior) else cell.input
    ink = np.nan_to_num(np.asarray(src, dtype=np.float32)) > 0.5
    if min(ink.shape) > 4 * RIM_PX:
        ink[:RIM_PX, :] = ink[-RIM_PX:, :] = False
        ink[:, :RIM_PX] = ink[:, -RIM_PX:] = False
    ink8 = ink.astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(ink8, connectivity=8)
    keep = np.zeros(n, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= max(2.0, SPECK_FRACTION * ink8.size)
    img = np.where(keep[lab], 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(img, PAD_PX, PAD_PX, PAD_PX, PAD_PX, cv2.BORDER_CONSTANT, value=255)


def parse_tsv(tsv: str, n_images: int) -> list[TesseractChar]:
    """Tesseract TSV of a list-file run -> one TesseractChar per image, by page number.

    Raises TesseractFailure when the pages present are not exactly 1..n_images (the results cannot be mapped back).
    """
    pages: dict[int, list[tuple[str, float]]] = {}
    reader = csv.reader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if not header or header[:2] != ["level", "page_num"] or "text" not in header or "conf" not in header:
        raise TesseractFailure(f"unexpected tsv header: {header!r}")
    i_text, i_conf = header.index("text"), header.index("conf")
    for row in reader:
        if len(row) < len(header) - 1:
            continue
        try:
            level, page = int(row[0]), int(row[1])
        except ValueError:
            raise TesseractFailure(f"unparseable tsv row: {row!r}") from None
        if level == 1:
            if page in pages:
                raise TesseractFailure(f"page {page} reported twice")
            pages[page] = []
        elif level == 5:
            text = row[i_text] if len(row) > i_text else ""
            try:
                conf = float(row[i_conf])
            except ValueError:
                conf = -1.0
            if text.strip():
                pages.setdefault(page, []).append((text.strip(), conf))
    if sorted(pages) != list(range(1, n_images + 1)):
        raise TesseractFailure(f"expected pages 1..{n_images}, got {len(pages)} pages ({sorted(pages)[:5]}...)")
    out = []
    for p in range(1, n_images + 1):
        words = pages[p]
        if not words:
            out.append(TesseractChar("", 0.0))
        else:
            # psm 10 gives at most one word; if it ever gives more, keep the most confident one.
            text, conf = max(words, key=lambda w: w[1])
            out.append(TesseractChar(text, max(conf, 0.0)))
    return out


def run_tesseract_batch(
    images: Sequence[np.ndarray], *, timeout_s: float = DEFAULT_TIMEOUT_S, cmd: str | None = None
) -> list[TesseractChar]:
    """One tesseract process for all images (a list file, psm 10, whitelist, tsv). Raises TesseractFailure."""
    if not images:
        return []
    exe = _tesseract_cmd(cmd)
    with tempfile.TemporaryDirectory(prefix="c1ocr-tess-") as tmp:
        d = Path(tmp)
        paths = []
        for i, img in enumerate(images):
            p = d / f"cell{i:04d}.png"
            if not cv2.imwrite(str(p), img):
                raise TesseractFailure(f"cannot write {p}")
            paths.append(p)
        listfile = d / "cells.txt"
        listfile.write_text("".join(f"{p}\n" for p in paths), encoding="utf-8")
        outbase = d / "out"
        args = [
            exe,
            str(listfile),
            str(outbase),
            "--psm",
            str(PSM_SINGLE_CHAR),
            "-c",
            f"tessedit_char_whitelist={WHITELIST}",
            # Our images are always black on white: skip the retry on an inverted image that tesseract 5 makes for
            # low-confidence lines (it cost ~30% of the per-cell time here, for nothing).
            "-c",
            "tessedit_do_invert=0",
            "tsv",
        ]
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, env=_env(), check=False)
        except subprocess.TimeoutExpired:
            raise TesseractFailure(f"tesseract timed out after {timeout_s:.0f} s") from None
        except OSError as e:
            raise TesseractFailure(f"tesseract could not start: {e}") from None
        _log_stderr(proc.stderr or "")
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [""]
            raise TesseractFailure(f"tesseract exited with {proc.returncode}: {tail[0][:200]}")
        tsv_path = outbase.with_suffix(".tsv")
        if not tsv_path.exists():
            raise TesseractFailure("tesseract wrote no tsv output")
        return parse_tsv(tsv_path.read_text(encoding="utf-8", errors="replace"), len(images))


def char_probs(ch: TesseractChar, ink_fraction: float) -> np.ndarray:
    """Turn tesseract's answer for one cell into probabilities over CLASSES."""
    p = np.zeros(N_CLASSES, dtype=np.float64)
    classes = []
    for c in ch.text:
        if c.isdigit():
            classes.append(CLASSES.index(c))
        elif c in "Xx":
            classes.append(X_INDEX)
        elif c == "-":
            classes.append(BLANK_INDEX)
    if not classes:
        if ink_fraction < LOW_INK_FRACTION:
            p[:] = (1.0 - NOTHING_LOW_INK_BLANK_P) / (N_CLASSES - 1)
            p[BLANK_INDEX] = NOTHING_LOW_INK_BLANK_P
        else:
            p[:] = 1.0 / N_CLASSES
        return p
    conf = float(np.clip(ch.conf / 100.0, MIN_P, MAX_P))
    if len(classes) > 1:
        conf /= 2.0  # several characters in one box: tesseract split the glyph, trust it less
    hit = sorted(set(classes))
    rest = [i for i in range(N_CLASSES) if i not in hit]
    p[hit] = conf / len(hit)
    p[rest] = (1.0 - conf) / len(rest)
    return p


class TesseractReader:
    """DigitReader over tesseract: one process per `read` call (a page), empty cells skipped."""

    name = "tesseract"

    def __init__(self, *, timeout_s: float | None = None, cmd: str | None = None, retry_chunk: int = RETRY_CHUNK):
        self.cmd = cmd
        self.version = tesseract_version(cmd)  # fail fast with a clear MissingDependency
        if timeout_s is None:
            from ocr.config import get_settings

            timeout_s = get_settings().reader.tesseract_timeout_s
        self.timeout_s = float(timeout_s)
        self.retry_chunk = max(1, int(retry_chunk))

    def _batch(self, images: list[np.ndarray]) -> list[TesseractChar | str]:
        """Results for images; a string is a per-image error. Retries in chunks when the batch did not map back."""
        try:
            return list(run_tesseract_batch(images, timeout_s=self.timeout_s, cmd=self.cmd))
        except TesseractFailure as e:
            if "timed out" in str(e) or len(images) <= self.retry_chunk:
                # A hang is not retried (it would only cost another timeout); a small batch has nothing to split.
                log.warning("tesseract failed on %d cells: %s", len(images), e)
                return [f"tesseract: {e}"] * len(images)
            log.warning("tesseract batch of %d cells failed (%s); retrying in chunks of %d", len(images), e,
                        self.retry_chunk)
        out: list[TesseractChar | str] = []
        for i in range(0, len(images), self.retry_chunk):
            chunk = images[i : i + self.retry_chunk]
            try:
                out.extend(run_tesseract_batch(chunk, timeout_s=self.timeout_s, cmd=self.cmd))
            except TesseractFailure as e:
                log.warning("tesseract failed on a chunk of %d cells: %s", len(chunk), e)
                out.extend([f"tesseract: {e}"] * len(chunk))
        return out

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        preds: list[CellPrediction | None] = [None] * len(cells)
        todo: list[int] = []
        images: list[np.ndarray] = []
        for i, cell in enumerate(cells):
            if cell.empty:
                preds[i] = empty_prediction()
                continue
            try:
                images.append(cell_image(cell))
                todo.append(i)
            except Exception as e:  # one bad box never fails the page
                preds[i] = CellPrediction(None, error=f"tesseract: bad cell image: {e}")
        if images:
            for i, res in zip(todo, self._batch(images)):
                if isinstance(res, str):
                    preds[i] = CellPrediction(None, error=res)
                else:
                    preds[i] = CellPrediction(char_probs(res, float(cells[i].ink_fraction)))
        return [p if p is not None else CellPrediction(None, error="tesseract: no result") for p in preds]
