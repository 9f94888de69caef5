"""Configuration: election parameters and reader thresholds.

Everything tunable lives here, not in code paths: election parameters (max voters per TPS, reserve ballots) come from
an *election profile* named by each template; thresholds of the gate and of routing are settings. Values can be
overridden by environment variables (prefix `C1OCR_`, nested with `__`, e.g. `C1OCR_GATE__MIN_BOX_PX=30`) or by a
JSON file named in `C1OCR_CONFIG`.
"""

from __future__ import annotations

import json
import os
from datetime import date
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ElectionProfile(BaseModel):
    """Parameters of one election that the consistency rules need."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    max_voters_per_tps: int = Field(gt=0, description="DPT cap per TPS (300 Pemilu 2024, 500 Pilkada 2020, ...)")
    reserve_ballot_pct: float = Field(ge=0, le=0.1, description="reserve ballots as a fraction of DPT (0.02, 0.025)")
    voter_rows: tuple[str, ...] = ("DPT", "DPTb", "DPK")
    polling_day: date | None = Field(
        default=None, description="voting day: the forms are dated that day or the next (counting past midnight)"
    )


DEFAULT_PROFILES: dict[str, ElectionProfile] = {
    p.name: p
    for p in [
        ElectionProfile(
            name="pemilu_2014", max_voters_per_tps=500, reserve_ballot_pct=0.02, polling_day=date(2014, 7, 9)
        ),
        ElectionProfile(
            name="pemilu_2019", max_voters_per_tps=300, reserve_ballot_pct=0.02, polling_day=date(2019, 4, 17)
        ),
        ElectionProfile(
            name="pemilu_2024", max_voters_per_tps=300, reserve_ballot_pct=0.02, polling_day=date(2024, 2, 14)
        ),
        ElectionProfile(
            name="pilkada_2020", max_voters_per_tps=500, reserve_ballot_pct=0.025, voter_rows=("DPT", "DPPh", "DPTb"),
            polling_day=date(2020, 12, 9),
        ),
        ElectionProfile(
            name="pilkada_2024", max_voters_per_tps=600, reserve_ballot_pct=0.025, voter_rows=("DPT", "DPPh", "DPTb"),
            polling_day=date(2024, 11, 27),
        ),
    ]
}


class LoadLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000  # decompression-bomb guard (a 48 MP phone photo still passes)
    # Photos are decoded at reduced scale when their long side exceeds this; boxes stay large enough to read.
    work_long_side_px: int = 4000


class GateThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_box_px: float = 18.0  # a digit box must span at least this many photo pixels (MNIST digits are 20)
    min_photo_edge: float = 1.8  # when no form is found: below this the photo is called blurry (see gate.py)
    max_blur_mm: float = 1.2  # box borders may look at most this much wider than printed (see gate.py)
    max_glare_fraction: float = 0.3  # a box whose border is invisible and this much of it saturated is glare
    min_mean_luma: float = 45.0
    min_line_contrast: float = 50.0  # on an overexposed page the printed box lines must still stand out this much
    max_mean_luma: float = 245.0
    max_reprojection_mm: float = 3.0
    max_tilt_deg: float = 50.0  # angle between camera axis and page normal implied by the homography
    max_cut_off_fraction: float = 0.0  # fraction of digit boxes allowed outside the photo
    max_occluded_boxes: int = 0
    min_layout_score: float = 0.35  # the digit-box rows must be found where the homography puts them


class ReaderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    engine: str = "ensemble"
    model_path: str | None = None  # digit model (ONNX); None = the shipped ocr/read/models/digits.onnx
    tesseract_timeout_s: float = 20.0
    tesseract_weight: float = 0.15  # Tesseract is a weak vote on handwriting
    topk: int = 3


class RoutingThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    accept_confidence: float = 0.98
    # A value the rules chose over the field's own best reading (`corrected_by_rules`) is accepted only at this
    # posterior confidence or above, stricter than a plain reading: the form's arithmetic, not the image, decided it.
    accept_corrected_confidence: float = 0.995
    audit_sample_rate: float = 0.02


class DecodeSettings(BaseModel):
    """Constrained decoding and confidence (owned by ocr/decode.py; see its docstring)."""

    model_config = ConfigDict(extra="forbid")

    box_floor: float = 0.02  # a box class below this probability is not considered as an alternative
    max_classes_per_box: int = 4
    max_values_per_field: int = 8  # candidate values kept per field for the joint search
    # Weight of an assignment that breaks a hard rule, relative to one that satisfies it: the prior odds that the KPPS
    # wrote inconsistent numbers (common: over 40% of tallies in Mexico) rather than the reader erring.
    form_error_weight: float = 0.05
    # A broken sum weighs form_error_weight x the probability of its discrepancy under a KPPS mistake (ocr/decode.py,
    # FormErrorModel): slips (share, mean size) and anything else, uniform over +-spread; spread 0: every broken sum
    # weighs form_error_weight, whatever it is off by.
    form_error_slip_share: float = Field(0.5, ge=0, le=1)
    form_error_slip_scale: float = Field(3.0, gt=0)
    form_error_spread: int = Field(1000, ge=0)
    # Table entries the exact sums over one group may touch (ocr/decode.py); a costlier group is enumerated instead.
    exact_cost_limit: float = 2e6
    exact_values_per_field: int = 12  # values listed per uncertain field in the exact sums (more: tighter, costlier)
    search_node_limit: int = 20000  # joint search budget per connected group of uncertain fields
    prune_ratio: float = 1e-6  # joint assignments this much less likely than the best reading are not enumerated
    omr_min_confidence: float = 0.9  # an OMR reading below this is ignored as evidence
    # A reading at this confidence or more is never changed, even when it alone breaks the form's sums (it is then
    # only `misread_suspected`). Under it, a reading whose misread explains every sum it breaks better than a KPPS
    # mistake or any other field's misread is taken as misread: it goes to review with the value the sums ask for,
    # and the other fields of those sums are no longer held by it (ocr/decode.py, `_misreads_taken`).
    sure_reading_confidence: float = Field(0.995, ge=0, le=1)
    calibration_file: str | None = None  # None: the shipped ocr/read/models/calibration.json


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="C1OCR_", env_nested_delimiter="__", extra="forbid")

    profiles: dict[str, ElectionProfile] = Field(default_factory=lambda: dict(DEFAULT_PROFILES))
    load: LoadLimits = Field(default_factory=LoadLimits)
    gate: GateThresholds = Field(default_factory=GateThresholds)
    reader: ReaderSettings = Field(default_factory=ReaderSettings)
    routing: RoutingThresholds = Field(default_factory=RoutingThresholds)
    decode: DecodeSettings = Field(default_factory=DecodeSettings)

    def profile(self, name: str) -> ElectionProfile:
        try:
            return self.profiles[name]
        except KeyError:
            raise KeyError(f"unknown election profile {name!r}; known: {sorted(self.profiles)}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, plus the JSON file named by C1OCR_CONFIG when set."""
    path = os.environ.get("C1OCR_CONFIG")
    if path:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Settings(**data)
    return Settings()
