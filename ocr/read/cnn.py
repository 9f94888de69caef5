"""`cnn` engine: the project's digit CNN (ocr/read/models/digits.onnx) run with OpenCV's dnn module.

torch is a training-only dependency (ocr/read/train.py); at run time the ONNX graph, which ends in a softmax, is run
by `cv2.dnn` with one forward pass per page. The net is loaded once, lazily, on first use. A cv2.dnn Net is not safe
to run from several threads at once, so forward passes are serialised by a lock (one page batch takes a few ms).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ocr.cells import CELL_PX, PreparedCell
from ocr.errors import MissingDependency
from ocr.read.base import CLASSES, N_CLASSES, CellPrediction, empty_prediction

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT_MODEL = MODELS_DIR / "digits.onnx"

_RETRAIN_HINT = "Reinstall c1ocr, or retrain it with `c1ocr train` (needs `pip install -e .[train]`; see ocr/read/TRAINING.md)."


def model_card_path(model_path: Path) -> Path:
    """The provenance JSON written next to a model (digits.onnx -> digits.json)."""
    return model_path.with_suffix(".json")


def read_model_card(model_path: Path) -> dict | None:
    """The model's card (None when it has none); a card that cannot be read is a broken installation."""
    card = model_card_path(model_path)
    if not card.is_file():
        return None
    try:
        return json.loads(card.read_text())
    except (OSError, ValueError) as e:
        raise MissingDependency(f"Model card {card} is unreadable ({e}). {_RETRAIN_HINT}", code="model_corrupt") from e


def input_planes(card: dict) -> int:
    """How many input planes a model takes, from its card's input shape ([planes, 32, 32]; a card without it, or an
    older [32, 32] one, means the glyph alone)."""
    shape = (card.get("input") or {}).get("shape") or []
    return int(shape[0]) if len(shape) == 3 else 1


class CnnReader:
    """DigitReader over the ONNX digit model. `read` never raises for a bad cell; a broken model raises
    MissingDependency on first use (an installation problem, not a photo problem)."""

    name = "cnn"

    def __init__(self, model_path: str | Path | None = None):
        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        self._net: cv2.dnn.Net | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._sha256: str | None = None
        self._planes = 1  # input planes (PreparedCell.channels), from the model card
        self._card: dict | None = None

    # -- loading --------------------------------------------------------------------------------------------------

    def _load(self) -> cv2.dnn.Net:
        if self._net is not None:
            return self._net
        with self._load_lock:
            if self._net is not None:
                return self._net
            path = self.model_path
            if not path.is_file():
                raise MissingDependency(f"Digit model not found at {path}. {_RETRAIN_HINT}", code="model_missing")
            data = path.read_bytes()
            card_data = read_model_card(path) or {}
            planes = input_planes(card_data)
            if planes not in (1, 2):
                raise MissingDependency(
                    f"Digit model {path} takes {planes} input planes; this reader gives 1 or 2. {_RETRAIN_HINT}",
                    code="model_corrupt",
                )
            try:
                net = cv2.dnn.readNetFromONNX(str(path))
                # One probe forward: a file that parses but is not our 12-class net (or not the input its card
                # states) fails here, not mid-page.
                net.setInput(np.zeros((1, planes, CELL_PX, CELL_PX), np.float32))
                out = net.forward()
            except cv2.error as e:
                raise MissingDependency(
                    f"Digit model {path} is corrupt or unreadable by OpenCV {cv2.__version__} "
                    f"({str(e).strip().splitlines()[-1][:200]}). {_RETRAIN_HINT}",
                    code="model_corrupt",
                ) from e
            if out.shape != (1, N_CLASSES):
                raise MissingDependency(
                    f"Digit model {path} outputs shape {tuple(out.shape)}, expected (1, {N_CLASSES}). {_RETRAIN_HINT}",
                    code="model_corrupt",
                )
            if card_data:
                classes = tuple(card_data.get("classes", CLASSES))
                if classes != CLASSES:
                    raise MissingDependency(
                        f"Digit model {path} was trained for classes {classes}, this reader expects {CLASSES}. "
                        f"{_RETRAIN_HINT}",
                        code="model_corrupt",
                    )
            self._sha256 = hashlib.sha256(data).hexdigest()
            self._planes = planes
            self._card = card_data or None
            self._net = net
            return net

    def model_info(self) -> dict:
        """Provenance of the model in use: path, sha256, and the training card (digits.json) when present."""
        self._load()
        info: dict = {"engine": self.name, "path": str(self.model_path), "sha256": self._sha256}
        if self._card is not None:
            info["card"] = self._card
        return info

    # -- reading --------------------------------------------------------------------------------------------------

    def predict_inputs(self, inputs: np.ndarray) -> np.ndarray:
        """Raw batch forward: (n, planes, 32, 32) float32 inputs (1 = ink; see PreparedCell.channels) -> (n, 12)
        probabilities. A one-plane model also takes (n, 32, 32) glyphs."""
        net = self._load()
        blob = np.ascontiguousarray(inputs, dtype=np.float32).reshape(-1, self._planes, CELL_PX, CELL_PX)
        with self._run_lock:
            net.setInput(blob)
            out = net.forward()
        return np.asarray(out, dtype=np.float64).reshape(-1, N_CLASSES)

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        self._load()  # a broken installation is an error for the caller, not a per-cell failure
        preds: list[CellPrediction | None] = [None] * len(cells)
        batch_idx: list[int] = []
        batch: list[np.ndarray] = []
        for i, cell in enumerate(cells):
            try:
                if cell.empty:
                    preds[i] = empty_prediction()
                    continue
                x = cell.channels(self._planes)
                if x.shape != (self._planes, CELL_PX, CELL_PX) or not np.isfinite(x).all():
                    preds[i] = CellPrediction(None, error=f"bad cell input shape {x.shape} or non-finite values")
                    continue
                batch_idx.append(i)
                batch.append(x)
            except Exception as e:  # a malformed cell object must not fail the page
                preds[i] = CellPrediction(None, error=f"bad cell: {type(e).__name__}: {e}")
        if batch:
            try:
                probs = self.predict_inputs(np.stack(batch))
                for i, p in zip(batch_idx, probs):
                    s = float(p.sum())
                    if not np.isfinite(s) or s <= 0:
                        preds[i] = CellPrediction(None, error="model produced invalid probabilities")
                    else:
                        preds[i] = CellPrediction(p / s)
            except Exception as e:  # cv2.error or worse: every cell of this batch fails, the page does not
                for i in batch_idx:
                    preds[i] = CellPrediction(None, error=f"cnn forward failed: {type(e).__name__}: {e}")
        return [p if p is not None else CellPrediction(None, error="not processed") for p in preds]
