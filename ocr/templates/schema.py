"""The template schema: one JSON document per (form, page), validated with unknown keys rejected.

All coordinates are millimetres in *page* coordinates: x to the right, y down, origin at the top-left corner of the
printed sheet. The `frame` names the registration points the locate stage finds in a photo (the four corner fiducials
of the 2024 plano, the printed corner squares of the 2019 C1, or the page edges of older forms).

A page template carries the page's own consistency constraints; constraints across the pages of one form set (R6,
R9, R16) live in a `FormSet` document beside the pages.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rect(_Strict):
    """An axis-aligned rectangle in page millimetres (x, y = top-left)."""

    x: float
    y: float
    w: Annotated[float, Field(gt=0)]
    h: Annotated[float, Field(gt=0)]

    @property
    def center(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h / 2)

    def corners(self) -> list[tuple[float, float]]:
        """tl, tr, br, bl."""
        return [(self.x, self.y), (self.x + self.w, self.y), (self.x + self.w, self.y + self.h), (self.x, self.y + self.h)]


class Circle(_Strict):
    cx: float
    cy: float
    r: Annotated[float, Field(gt=0)]


class PageSize(_Strict):
    width_mm: Annotated[float, Field(gt=0)]
    height_mm: Annotated[float, Field(gt=0)]


class Marker(_Strict):
    """A fiducial tag that names the page (AprilTag 36h10 on the 2024 plano)."""

    family: Literal["apriltag_36h10"]
    id: Annotated[int, Field(ge=0)]
    rect: Rect  # the tag's black outer square
    rotation_deg: Literal[0, 90, 180, 270] = 0  # how the tag is printed relative to the page


class Frame(_Strict):
    """Registration points: four points in page mm, in the order top-left, top-right, bottom-right, bottom-left.

    kind:
      checker_fiducials  two touching black squares at each corner (2024 plano); points are the touch points
      corner_squares     a solid black square at each corner (2019 C1); points are the square centres
      page_edges         the corners of the sheet itself (older forms with no marks)
    """

    kind: Literal["checker_fiducials", "corner_squares", "page_edges"]
    points: Annotated[list[tuple[float, float]], Field(min_length=4, max_length=4)]
    square_mm: float | None = None  # side of each fiducial square, when the kind has squares

    @model_validator(mode="after")
    def _squares_need_size(self) -> "Frame":
        if self.kind in ("checker_fiducials", "corner_squares") and not self.square_mm:
            raise ValueError(f"frame.square_mm is required for frame kind {self.kind!r}")
        return self


class Reference(_Strict):
    """A rendering of the blank page used for feature alignment and as the background of synthetic photos."""

    image: str  # path relative to ocr/templates/reference/
    dpmm: Annotated[float, Field(gt=0)]
    source: str  # provenance: "rasterised from the official blank PDF ..." or "drawn from this template's geometry"


class OmrColumn(_Strict):
    """One column of bubbles under a digit box; bubble i means digit `values[i]`."""

    bubbles: Annotated[list[Circle], Field(min_length=2)]
    values: list[int] = Field(default_factory=lambda: list(range(10)))

    @model_validator(mode="after")
    def _same_length(self) -> "OmrColumn":
        if len(self.values) != len(self.bubbles):
            raise ValueError("omr column: values and bubbles must have the same length")
        return self


TALLY_MARKS_PER_CELL = 5  # a KPPS tallies in groups of four strokes crossed by a fifth, one group per cell


class TallyGrid(_Strict):
    """The tally-mark grid of a candidate ("Rincian perolehan suara"), cols x rows cells."""

    rect: Rect
    cols: Annotated[int, Field(gt=0)]
    rows: Annotated[int, Field(gt=0)]

    @property
    def row_max(self) -> int:
        """The most votes one row of the grid holds."""
        return self.cols * TALLY_MARKS_PER_CELL


FieldKind = Literal["count", "date_day", "date_month", "date_year"]
BOX_COUNT: dict[str, int] = {"count": 3, "date_day": 2, "date_month": 2, "date_year": 4}


class FieldSpec(_Strict):
    """One handwritten number: a row of digit boxes, optionally with OMR bubbles and tally-row totals."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")]
    label: str  # as printed on the form (Indonesian)
    kind: FieldKind
    section: str = ""
    boxes: list[Rect]
    guide: Literal["none", "seven_segment"] = "none"  # dotted "8" printed inside the boxes (PPWP 2024 page 2)
    omr: list[OmrColumn] | None = None  # one column per box
    row_totals: list[list[Rect]] | None = None  # "Jumlah tiap baris": per tally row, its digit boxes
    tally: TallyGrid | None = None
    words: Rect | None = None  # where the number is written out in words
    min: int = 0
    max: int = 999
    cap_param: str | None = None  # election-profile parameter that caps the value (e.g. "max_voters_per_tps")
    # The cap grows by this election-profile fraction of itself, rounded up: a count of ballots, or of the voters who
    # use them, may reach the TPS cap plus the reserve ballots ("reserve_ballot_pct"); the DPT may not.
    cap_plus_fraction_param: str | None = None

    @model_validator(mode="after")
    def _check_boxes(self) -> "FieldSpec":
        want = BOX_COUNT[self.kind]
        if len(self.boxes) != want:
            raise ValueError(f"field {self.id!r}: kind {self.kind!r} needs {want} boxes, got {len(self.boxes)}")
        if self.omr is not None and len(self.omr) != len(self.boxes):
            raise ValueError(f"field {self.id!r}: omr needs one column per box")
        if self.max < self.min:
            raise ValueError(f"field {self.id!r}: max < min")
        if self.cap_plus_fraction_param is not None and self.cap_param is None:
            raise ValueError(f"field {self.id!r}: cap_plus_fraction_param grows a cap: give cap_param too")
        if self.row_totals is not None and self.tally is not None and len(self.row_totals) != self.tally.rows:
            raise ValueError(f"field {self.id!r}: row_totals needs one row per tally row")
        return self

    @property
    def row_totals_boxed(self) -> bool:
        """Every tally row has a box per digit of the most a row holds (2024 plano: 2 boxes for up to 60). The 2019
        plano has one wide cell per row instead, holding the whole number."""
        if not self.row_totals or self.tally is None:
            return False
        return all(len(row) >= len(str(self.tally.row_max)) for row in self.row_totals)

    def row_total_id(self, row: int) -> str:
        """The id of a tally row's total among the page's readings ("IV.1#row0"): never a field id (ids have no #)."""
        return f"{self.id}#row{row}"


Severity = Literal["hard", "soft", "cross_check"]


class Constraint(_Strict):
    """`sum(lhs) OP sum(rhs)` over field ids, or over an election-profile parameter (`rhs_param`).

    `rule` names the consistency rule of domain.md §4 (R1..R16) it implements.
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$")]
    rule: Annotated[str, Field(pattern=r"^R\d{1,2}$")]
    severity: Severity
    lhs: Annotated[list[str], Field(min_length=1)]
    op: Literal["==", "<=", ">="]
    rhs: list[str] = Field(default_factory=list)
    rhs_param: str | None = None  # e.g. "max_voters_per_tps"
    # The rhs grows by this election-profile fraction, rounded up: "received <= DPT + 2% reserve" is
    # rhs=["I.A.LP"], rhs_plus_fraction_param="reserve_ballot_pct"; with rhs_param it grows the parameter ("voters <=
    # TPS cap + reserve").
    rhs_plus_fraction_param: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _one_rhs(self) -> "Constraint":
        if bool(self.rhs) == bool(self.rhs_param):
            raise ValueError(f"constraint {self.name!r}: give exactly one of rhs (field ids) or rhs_param")
        return self


class Template(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    form: str  # official form name, e.g. "C.HASIL-PPWP"
    title: str
    election: str  # election profile name (ocr.config.ElectionProfile)
    contest: Literal["ppwp", "dpr", "dpd", "dprd_prov", "dprd_kabko", "kwk"]
    form_set: str  # id of the FormSet this page belongs to
    page: Annotated[int, Field(ge=1)]
    page_size: PageSize
    marker: Marker | None = None
    frame: Frame
    box_border_mm: float = Field(default=1.0, gt=0)  # printed line width of the digit boxes
    reference: Reference | None = None
    fields: Annotated[list[FieldSpec], Field(min_length=1)]
    constraints: list[Constraint] = Field(default_factory=list)
    notes: str = ""

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, v: list[FieldSpec]) -> list[FieldSpec]:
        ids = [f.id for f in v]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate field ids: {sorted(dup)}")
        return v

    @model_validator(mode="after")
    def _constraints_refer_to_fields(self) -> "Template":
        known = {f.id for f in self.fields}
        for c in self.constraints:
            for fid in [*c.lhs, *c.rhs]:
                if fid not in known:
                    raise ValueError(f"constraint {c.name!r} refers to unknown field {fid!r}")
        return self

    def field(self, field_id: str) -> FieldSpec:
        for f in self.fields:
            if f.id == field_id:
                return f
        raise KeyError(field_id)

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of this template; every reading records it."""
        return content_hash(self.model_dump(mode="json"))


class PageRef(_Strict):
    page: Annotated[int, Field(ge=1)]
    template: str


class FormSet(_Strict):
    """The pages of one form (e.g. the 3 pages of C.HASIL-PPWP) and the rules that span them."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    version: Annotated[str, Field(pattern=r"^\d+\.\d+\.\d+$")]
    title: str
    election: str
    pages: Annotated[list[PageRef], Field(min_length=1)]
    # Field ids in cross-page constraints are qualified as "<page number>:<field id>", e.g. "1:II.2".
    constraints: list[Constraint] = Field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))


def content_hash(doc: dict) -> str:
    canon = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canon.encode("utf-8")).hexdigest()
