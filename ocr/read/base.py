"""The `DigitReader` interface every engine implements, and the 12 cell classes.

A reader gets the prepared cells of a page (see ocr/cells.py) in one call, so an engine can batch them (one
Tesseract process per page, one cv2.dnn forward pass per page), and returns one prediction per cell. A reader never
raises for a bad cell: a crash or timeout becomes a per-cell `error`, so one bad box never fails a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ocr.cells import PreparedCell

# Class order of every probability vector. "_" is "no digit": an empty box or a dash filler; the cells stage tells
# them apart by ink (a dash has ink, an empty box has none).
CLASSES: tuple[str, ...] = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "X", "_")
N_CLASSES = len(CLASSES)
X_INDEX = 10
BLANK_INDEX = 11


@dataclass
class CellPrediction:
    """Probabilities over CLASSES (sums to 1), or an error string when the engine failed on this cell."""

    probs: np.ndarray | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.probs is not None

    def topk(self, k: int = 3) -> list[tuple[str, float]]:
        if self.probs is None:
            return []
        idx = np.argsort(-self.probs)[:k]
        return [(CLASSES[i], float(self.probs[i])) for i in idx]


@runtime_checkable
class DigitReader(Protocol):
    name: str

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        """One prediction per cell, in order. Must not raise for a bad cell."""
        ...


def empty_prediction() -> CellPrediction:
    """What any engine says about a box with no ink at all."""
    p = np.full(N_CLASSES, 1e-4, dtype=np.float64)
    p[BLANK_INDEX] = 1.0
    return CellPrediction(p / p.sum())
