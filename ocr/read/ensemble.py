"""Engine selection, the fault fence around every engine, and the default `ensemble` reader.

- `make_reader(name)`: "ensemble" (default) | "cnn" | "tesseract".
- `safe_read(reader, cells, timeout_s)`: runs any DigitReader so that an exception, a hang, a wrong-length or NaN /
  negative output becomes per-cell errors, never an exception or a hung page (anchors lesson 13, 15d). A hung engine
  runs in a daemon thread that is abandoned, not joined forever.
- `EnsembleReader`: the CNN is the main vote and Tesseract a weak one (ReaderSettings.tesseract_weight), combined as
  a weighted log-linear pool  log p = log p_cnn + w * log p_tess  (renormalised). A pool of logs lets a confident CNN
  stand while a flat Tesseract answer ("nothing recognised") changes nothing. Without Tesseract (not installed, or
  failed on the page or on a cell) the CNN alone decides and the prediction records it. Without the CNN there is no
  ensemble: Tesseract alone scores 20-60% on handwriting and must never be the sole reader.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ocr.cells import PreparedCell
from ocr.errors import C1Error, ExitCode, MissingDependency
from ocr.read.base import N_CLASSES, CellPrediction, DigitReader

log = logging.getLogger(__name__)

ENGINES = ("ensemble", "cnn", "tesseract")
DEFAULT_CNN_TIMEOUT_S = 10.0
PROB_FLOOR = 1e-4  # no engine is ever certain: keeps the log pool finite and lets the other engine be heard
# Tesseract only sees the cells where the CNN is below this. Why that loses nothing that matters: Tesseract's vector
# is at most 0.9 on one class and 0.1/11 on each other (ocr/read/tesseract.py MAX_P), so with weight w = 0.15 it can
# shift the odds between two classes by at most exp(0.15 * ln(0.9 / 0.0091)) ~ 2x. A CNN at >= 0.995 has odds of
# >= 199:1 over any other class, so its answer cannot flip and its confidence can drop by at most ~0.005 (the other
# classes' mass, doubled); skipping those cells saves the tesseract process (~100 ms start + ~1.3 ms per cell) on
# pages the CNN reads cleanly.
TESSERACT_SKIP_ABOVE = 0.995


class UnknownEngine(C1Error):
    code = "unknown_engine"
    exit_code = ExitCode.BAD_ARGUMENTS
    http_status = 422


# --- the fault fence ---------------------------------------------------------------------------------------------


def _errors(n: int, message: str) -> list[CellPrediction]:
    return [CellPrediction(None, error=message) for _ in range(n)]


def check_prediction(pred: object, engine: str) -> CellPrediction:
    """One engine output -> a valid CellPrediction (probabilities renormalised) or a per-cell error."""
    if not isinstance(pred, CellPrediction):
        return CellPrediction(None, error=f"{engine}: returned {type(pred).__name__}, not a CellPrediction")
    if pred.probs is None:
        return CellPrediction(None, error=pred.error or f"{engine}: no prediction")
    try:
        p = np.asarray(pred.probs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return CellPrediction(None, error=f"{engine}: probabilities are not numeric")
    if p.shape != (N_CLASSES,):
        return CellPrediction(None, error=f"{engine}: {p.size} probabilities, expected {N_CLASSES}")
    if not np.all(np.isfinite(p)):
        return CellPrediction(None, error=f"{engine}: non-finite probabilities")
    if np.any(p < 0):
        return CellPrediction(None, error=f"{engine}: negative probabilities")
    total = float(p.sum())
    if total <= 0:
        return CellPrediction(None, error=f"{engine}: probabilities sum to zero")
    return CellPrediction(p / total, error=None)


def _engine_name(reader: object) -> str:
    return str(getattr(reader, "name", type(reader).__name__))


class PendingRead:
    """A reader call running in a daemon thread; `result(timeout_s)` never raises and never waits past the timeout.

    A daemon thread (not a ThreadPoolExecutor, whose workers are joined at interpreter exit) so that an engine that
    hangs forever is abandoned: it cannot block the page, the batch, or the process exit.
    """

    def __init__(self, reader: DigitReader, cells: Sequence[PreparedCell]):
        self.engine = _engine_name(reader)
        self.n = len(cells)
        self._out: list | None = None
        self._exc: BaseException | None = None
        self._done = threading.Event()
        cells = list(cells)

        def run() -> None:
            try:
                self._out = reader.read(cells)
            except BaseException as e:  # noqa: BLE001 - any engine failure becomes per-cell errors
                self._exc = e
            finally:
                self._done.set()

        self._thread = threading.Thread(target=run, name=f"c1ocr-read-{self.engine}", daemon=True)
        self._thread.start()

    def result(self, timeout_s: float) -> list[CellPrediction]:
        if not self._done.wait(timeout_s):
            log.warning("%s: no answer after %.1f s; abandoning it for this page", self.engine, timeout_s)
            return _errors(self.n, f"{self.engine}: timed out after {timeout_s:g} s")
        if self._exc is not None:
            log.warning("%s failed on a page of %d cells: %r", self.engine, self.n, self._exc)
            return _errors(self.n, f"{self.engine}: {type(self._exc).__name__}: {self._exc}"[:300])
        out = self._out
        try:
            out = list(out)  # type: ignore[arg-type]
        except TypeError:
            return _errors(self.n, f"{self.engine}: returned {type(out).__name__}, not a list")
        if len(out) != self.n:
            # Cannot tell which prediction belongs to which cell: never mis-assign.
            return _errors(self.n, f"{self.engine}: {len(out)} predictions for {self.n} cells")
        return [check_prediction(p, self.engine) for p in out]


def start_read(reader: DigitReader, cells: Sequence[PreparedCell]) -> PendingRead:
    return PendingRead(reader, cells)


def safe_read(reader: DigitReader, cells: Sequence[PreparedCell], timeout_s: float) -> list[CellPrediction]:
    """reader.read(cells) fenced: exceptions, hangs past timeout_s and bad output become per-cell errors."""
    if not cells:
        return []
    return start_read(reader, cells).result(timeout_s)


# --- the ensemble ------------------------------------------------------------------------------------------------


@dataclass
class EnsemblePrediction:
    """The combined prediction of one cell plus what each engine said (for BoxReading.engines and the benchmark)."""

    combined: CellPrediction
    engines: dict[str, CellPrediction] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. "tesseract_unavailable", "tesseract_failed"


def log_linear_pool(preds: Sequence[tuple[np.ndarray, float]]) -> np.ndarray:
    """Weighted geometric mean of probability vectors (renormalised); each vector is floored at PROB_FLOOR."""
    logp = np.zeros(N_CLASSES, dtype=np.float64)
    for p, w in preds:
        logp += w * np.log(np.maximum(np.asarray(p, dtype=np.float64), PROB_FLOOR))
    logp -= logp.max()
    out = np.exp(logp)
    return out / out.sum()


class EnsembleReader:
    """Default reader: CNN main vote + Tesseract weak vote (see the module docstring)."""

    name = "ensemble"

    def __init__(
        self,
        cnn: DigitReader,
        tesseract: DigitReader | None,
        *,
        tesseract_weight: float | None = None,
        cnn_timeout_s: float = DEFAULT_CNN_TIMEOUT_S,
        tesseract_timeout_s: float | None = None,
        tesseract_unavailable: str | None = None,
        tesseract_skip_above: float | None = TESSERACT_SKIP_ABOVE,
    ):
        from ocr.config import get_settings

        rs = get_settings().reader
        self.cnn = cnn
        self.tesseract = tesseract
        self.tesseract_weight = float(rs.tesseract_weight if tesseract_weight is None else tesseract_weight)
        self.cnn_timeout_s = float(cnn_timeout_s)
        # The fence sits a little beyond tesseract's own per-process timeout, so that tesseract's own (cleaner)
        # error wins when the process hangs, and a hang of the wrapper itself is still caught.
        self.tesseract_timeout_s = float(
            (rs.tesseract_timeout_s * 2 + 5) if tesseract_timeout_s is None else tesseract_timeout_s
        )
        self.tesseract_unavailable = tesseract_unavailable
        self.tesseract_skip_above = tesseract_skip_above  # None: Tesseract reads every cell

    def read_detailed(self, cells: Sequence[PreparedCell]) -> list[EnsemblePrediction]:
        cells = list(cells)
        if not cells:
            return []
        tess_preds: list[CellPrediction | None] | None = None
        if self.tesseract is None:
            cnn_preds = start_read(self.cnn, cells).result(self.cnn_timeout_s)
        elif self.tesseract_skip_above is None:
            # Tesseract is a subprocess: start it first so it runs while the CNN computes.
            pending_t = start_read(self.tesseract, cells)
            cnn_preds = start_read(self.cnn, cells).result(self.cnn_timeout_s)
            tess_preds = list(pending_t.result(self.tesseract_timeout_s))
        else:
            cnn_preds = start_read(self.cnn, cells).result(self.cnn_timeout_s)
            unsure = [i for i, c in enumerate(cnn_preds) if not c.ok or float(np.max(c.probs)) < self.tesseract_skip_above]
            tess_preds = [None] * len(cells)
            if unsure:
                got = start_read(self.tesseract, [cells[i] for i in unsure]).result(self.tesseract_timeout_s)
                for i, t in zip(unsure, got):
                    tess_preds[i] = t
        cnn_name = _engine_name(self.cnn)
        tess_name = _engine_name(self.tesseract) if self.tesseract is not None else "tesseract"
        out = []
        for i, c in enumerate(cnn_preds):
            engines = {cnn_name: c}
            notes: list[str] = []
            t = tess_preds[i] if tess_preds is not None else None
            if tess_preds is None:
                notes.append("tesseract_unavailable")
            elif t is None:
                notes.append("tesseract_skipped")  # the CNN was sure enough (see TESSERACT_SKIP_ABOVE)
            else:
                engines[tess_name] = t
                if not t.ok:
                    notes.append("tesseract_failed")
            if not c.ok:
                # No main vote: an error, not a Tesseract-only guess.
                combined = CellPrediction(None, error=c.error or f"{cnn_name}: no prediction")
            elif t is not None and t.ok and self.tesseract_weight > 0:
                combined = CellPrediction(log_linear_pool([(c.probs, 1.0), (t.probs, self.tesseract_weight)]))
            else:
                combined = CellPrediction(np.asarray(c.probs, dtype=np.float64).copy())
            out.append(EnsemblePrediction(combined=combined, engines=engines, notes=notes))
        return out

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        return [p.combined for p in self.read_detailed(cells)]


def read_cells(reader: DigitReader, cells: Sequence[PreparedCell], timeout_s: float) -> list[EnsemblePrediction]:
    """What the pipeline calls: per-cell combined prediction plus per-engine predictions, for any reader, fenced.

    The ensemble fences each of its engines itself (with their own timeouts); any other reader is run through
    `safe_read` with `timeout_s` and reported as its own single engine.
    """
    cells = list(cells)
    if not cells:
        return []
    if isinstance(reader, EnsembleReader):
        try:
            return reader.read_detailed(cells)
        except Exception as e:  # noqa: BLE001 - a bug in pooling must not fail the page
            log.exception("ensemble failed on a page")
            return [EnsemblePrediction(CellPrediction(None, error=f"ensemble: {type(e).__name__}: {e}"))
                    for _ in cells]
    name = _engine_name(reader)
    return [EnsemblePrediction(combined=p, engines={name: p}) for p in safe_read(reader, cells, timeout_s)]


# --- construction ------------------------------------------------------------------------------------------------


def _make_cnn() -> DigitReader:
    try:
        from ocr.read.cnn import CnnReader
    except ImportError as e:
        raise MissingDependency(
            f"the CNN digit reader cannot be loaded ({e}); reinstall c1ocr (pip install -e .) or use --engine tesseract"
        ) from None
    from ocr.config import get_settings

    reader = CnnReader(get_settings().reader.model_path)
    reader.model_info()  # loads the model: a missing or corrupt one is an installation error, said now, not per box
    return reader


def _make_tesseract() -> DigitReader:
    from ocr.read.tesseract import TesseractReader

    return TesseractReader()


def make_reader(name: str) -> DigitReader:
    """The reader for an engine name; UnknownEngine for a name not in ENGINES, MissingDependency when unusable."""
    key = (name or "").strip().lower()
    if key == "tesseract":
        return _make_tesseract()
    if key == "cnn":
        return _make_cnn()
    if key == "ensemble":
        cnn = _make_cnn()
        try:
            tess: DigitReader | None = _make_tesseract()
            why = None
        except MissingDependency as e:
            log.warning("ensemble without tesseract: %s", e.message)
            tess, why = None, e.message
        return EnsembleReader(cnn, tess, tesseract_unavailable=why)
    raise UnknownEngine(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")
