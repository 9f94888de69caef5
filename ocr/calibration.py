"""Confidence calibration: temperature scaling of the box probabilities (placeholder, being written)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SHIPPED_PATH = Path(__file__).parent / "read" / "models" / "calibration.json"


class Calibration(BaseModel):
    """What the reader loads: box probabilities p become p ** (1 / temperature), renormalised."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    method: str = "temperature"
    temperature: float = Field(default=1.0, gt=0)
    fitted_on: str = "identity (not fitted)"
    report: dict = Field(default_factory=dict)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logp -= logp.max()
    q = np.exp(logp)
    return q / q.sum()


@lru_cache(maxsize=8)
def load_calibration(path: str | None = None) -> Calibration:
    p = Path(path) if path else SHIPPED_PATH
    if not p.exists():
        return Calibration()
    return Calibration.model_validate_json(p.read_text(encoding="utf-8"))
