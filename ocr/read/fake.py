"""Test engines: a cache that makes tests independent of the exact tesseract build, fakes, and fault injection.

Modelled on OCRmyPDF's test plugins (tesseract_cache.py, tesseract_crash.py, tesseract_simulate_oom_killer.py):
tests exercise the real fault paths (`ocr.read.ensemble.safe_read`) against engines that crash, hang or return
garbage, and a `CachedReader` replays recorded predictions keyed by the cell's content.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ocr.cells import PreparedCell
from ocr.read.base import CLASSES, N_CLASSES, CellPrediction, DigitReader


def cell_key(cell: PreparedCell) -> str:
    """A stable hash of what an engine sees of a cell (the classifier's input planes, quantised to 8 bits)."""
    q = np.round(np.clip(cell.channels(2), 0, 1) * 255).astype(np.uint8)
    h = hashlib.sha256(q.tobytes())
    h.update(str(q.shape).encode())
    return h.hexdigest()[:24]


def one_hot(char: str, p: float = 0.97) -> np.ndarray:
    """A prediction putting `p` on `char` (one of CLASSES) and the rest spread evenly."""
    i = CLASSES.index(char)
    v = np.full(N_CLASSES, (1.0 - p) / (N_CLASSES - 1))
    v[i] = p
    return v


class CachedReader:
    """Replays predictions by cell hash; on a miss asks `inner` (when given) and records its answer.

    `save(path)` / `CachedReader.load(path)` keep the cache as JSON, so a test fixture can pin what tesseract said
    once and replay it on machines with another tesseract build (or none).
    """

    def __init__(self, inner: DigitReader | None = None, cache: Mapping[str, list[float] | None] | None = None,
                 name: str | None = None):
        self.inner = inner
        self.cache: dict[str, list[float] | None] = dict(cache or {})
        self.name = name or (getattr(inner, "name", None) or "cached")
        self.hits = 0
        self.misses = 0

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        keys = [cell_key(c) for c in cells]
        missing = [i for i, k in enumerate(keys) if k not in self.cache]
        self.hits += len(cells) - len(missing)
        self.misses += len(missing)
        if missing:
            if self.inner is None:
                raise KeyError(f"{len(missing)} cells not in the cache and no inner engine")
            fresh = self.inner.read([cells[i] for i in missing])
            for i, pred in zip(missing, fresh):
                if pred.ok:  # errors are not cached: they may be transient
                    self.cache[keys[i]] = [float(x) for x in pred.probs]
            fresh_by_index = dict(zip(missing, fresh))
        else:
            fresh_by_index = {}
        out = []
        for i, k in enumerate(keys):
            if i in fresh_by_index:
                out.append(fresh_by_index[i])
            else:
                v = self.cache[k]
                out.append(CellPrediction(np.asarray(v, dtype=np.float64)) if v is not None else
                           CellPrediction(None, error=f"{self.name}: cached failure"))
        return out

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"name": self.name, "cache": self.cache}, sort_keys=True), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path, inner: DigitReader | None = None) -> "CachedReader":
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(inner=inner, cache=doc["cache"], name=doc.get("name"))


class FakeReader:
    """Predictions from a function of the cell (or its index), or a fixed character sequence.

    FakeReader(lambda cell: "7")          every cell reads as 7 (a character is turned into `one_hot`)
    FakeReader(["1", "2", "_"])           cell i reads as chars[i % len(chars)]
    FakeReader(lambda cell: probs_array)  a full probability vector
    """

    def __init__(self, source: Callable[[PreparedCell], str | np.ndarray] | Sequence[str] | Mapping[int, str],
                 name: str = "fake", p: float = 0.97):
        self.source = source
        self.name = name
        self.p = p
        self.calls = 0

    def _one(self, i: int, cell: PreparedCell) -> CellPrediction:
        src = self.source
        if callable(src):
            v = src(cell)
        elif isinstance(src, Mapping):
            v = src.get(i, "_")
        else:
            v = src[i % len(src)]
        if isinstance(v, str):
            return CellPrediction(one_hot(v, self.p))
        return CellPrediction(np.asarray(v, dtype=np.float64))

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        self.calls += 1
        return [self._one(i, c) for i, c in enumerate(cells)]


class CrashingReader:
    """Raises on every call, like a segfaulting or OOM-killed engine surfaced as an exception."""

    def __init__(self, exc: BaseException | None = None, name: str = "crashing"):
        self.exc = exc or RuntimeError("simulated engine crash")
        self.name = name

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        raise self.exc


class HangingReader:
    """Sleeps `seconds` (past any sane timeout) before answering; `release()` ends the sleep early (test cleanup)."""

    def __init__(self, seconds: float = 3600.0, name: str = "hanging"):
        self.seconds = seconds
        self.name = name
        self._release = threading.Event()
        self.started = threading.Event()

    def release(self) -> None:
        self._release.set()

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        self.started.set()
        self._release.wait(self.seconds)
        return [CellPrediction(np.full(N_CLASSES, 1.0 / N_CLASSES)) for _ in cells]


class GarbageReader:
    """Returns malformed output. mode: "nan" | "negative" | "short_vector" | "wrong_length" | "zeros" | "not_a_list"
    | "wrong_type" | "unnormalised" (valid but summing to 5: the fence renormalises it)."""

    MODES = ("nan", "negative", "short_vector", "wrong_length", "zeros", "not_a_list", "wrong_type", "unnormalised")

    def __init__(self, mode: str = "nan", name: str = "garbage", every: int = 1):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}")
        self.mode = mode
        self.name = name
        self.every = max(1, every)  # only every n-th cell is garbage (the others are a valid "7")

    def read(self, cells: Sequence[PreparedCell]):  # noqa: ANN201 - deliberately not always a list
        if self.mode == "not_a_list":
            return 42
        if self.mode == "wrong_length":
            return [CellPrediction(one_hot("7")) for _ in range(len(cells) + 1)]
        out = []
        for i, _ in enumerate(cells):
            if i % self.every:
                out.append(CellPrediction(one_hot("7")))
                continue
            if self.mode == "nan":
                v = one_hot("7")
                v[3] = np.nan
                out.append(CellPrediction(v))
            elif self.mode == "negative":
                v = one_hot("7")
                v[2] = -0.5
                out.append(CellPrediction(v))
            elif self.mode == "short_vector":
                out.append(CellPrediction(np.full(N_CLASSES - 2, 0.1)))
            elif self.mode == "zeros":
                out.append(CellPrediction(np.zeros(N_CLASSES)))
            elif self.mode == "wrong_type":
                out.append("7")
            elif self.mode == "unnormalised":
                out.append(CellPrediction(one_hot("7") * 5.0))
        return out


class SlowReader:
    """Wraps a reader and sleeps first: a slow but correct engine (for timeout tests that must *not* fire)."""

    def __init__(self, inner: DigitReader, seconds: float):
        self.inner = inner
        self.seconds = seconds
        self.name = getattr(inner, "name", "slow")

    def read(self, cells: Sequence[PreparedCell]) -> list[CellPrediction]:
        time.sleep(self.seconds)
        return self.inner.read(cells)
