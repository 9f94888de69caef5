"""Typed results of reading a page: the stable JSON shape of `c1ocr read --json` and of the API.

Shape (keep it stable; later stages only add keys):

    {"image", "sha256", "status": "read" | "unreadable", "reason", "instruction", "template", "template_version",
     "template_hash", "engine", "fields": {field_id: {"value", "text", "confidence", "status", "reasons", ...}},
     "rules": [...], "location": {...}, "gate": {...}, "timings_ms": {...}}
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FieldStatus = Literal["accepted", "needs_review", "unreadable"]
PageStatus = Literal["read", "unreadable"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Candidate(_Model):
    char: str
    p: float


class BoxReading(_Model):
    """One digit box: the chosen character and the alternatives."""

    index: int
    char: str  # digit, "X", "-", "_" (empty) or "?" when no engine could read it
    topk: list[Candidate]
    ink: float  # ink fraction of the box interior
    touches_border: bool = False
    engines: dict[str, list[Candidate]] = Field(default_factory=dict)  # per-engine top-k (ensemble)
    error: str | None = None  # engine failure on this box


class OmrReading(_Model):
    """The bubble columns under the boxes (PPWP 2024 page 2): an independent reading of the same number."""

    digits: list[int | None]  # per column: the filled bubble's digit, None when no clear single mark
    value: int | None
    confidence: float
    fills: list[list[float]]  # per column, per bubble: fill ratio 0..1


class FieldReading(_Model):
    id: str
    label: str
    value: int | None  # None when the field cannot be turned into a number
    text: str  # one character per box
    confidence: float  # calibrated probability that `value` is what is written
    status: FieldStatus
    reasons: list[str] = Field(default_factory=list)
    boxes: list[BoxReading] = Field(default_factory=list)
    alternatives: list[Candidate] = Field(default_factory=list)  # other plausible values ("char" holds the value)
    omr: OmrReading | None = None


class RuleResult(_Model):
    name: str
    rule: str  # R1..R16
    severity: Literal["hard", "soft", "cross_check"]
    status: Literal["pass", "fail", "pending"]  # pending: a page it needs is not read yet
    fields: list[str]
    values: dict[str, int | None] = Field(default_factory=dict)
    message: str = ""


class Instruction(_Model):
    id: str
    en: str


class LocationInfo(_Model):
    method: str  # "apriltag", "checker_fiducials", "corner_squares", "page_edges", "features"
    marker_id: int | None = None
    page_corners_px: list[tuple[float, float]]  # the sheet's corners in the photo (tl, tr, br, bl)
    frame_points_px: list[tuple[float, float]] = Field(default_factory=list)
    reprojection_error_mm: float | None = None
    px_per_mm: float
    tilt_deg: float | None = None
    rotation_deg: int = 0  # how the photo was rotated relative to upright


class PageReading(_Model):
    image: str
    sha256: str | None = None
    status: PageStatus
    reason: str | None = None
    detail: str | None = None
    instruction: Instruction | None = None
    template: str | None = None
    template_version: str | None = None
    template_hash: str | None = None
    expected_template: str | None = None
    engine: str
    page_status: Literal["accepted", "needs_review", "unreadable"] | None = None
    page_reasons: list[str] = Field(default_factory=list)
    fields: dict[str, FieldReading] = Field(default_factory=dict)
    rules: list[RuleResult] = Field(default_factory=list)
    location: LocationInfo | None = None
    gate: dict[str, float] = Field(default_factory=dict)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    reader_version: str = ""
