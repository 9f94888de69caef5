"""Ground truth of one synthetic photo: what was drawn, where the page is, and what a reader should answer.

Written next to every generated image as `<name>.json`; the benchmark and the tests read it back with
`PageTruth.model_validate_json`. Box characters use the reader's vocabulary: a digit, "X", "-" (dash filler) or "_"
(nothing written).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

GENERATOR_VERSION = "1.1.0"  # 1.1: tally strokes and row totals on fields with a tally grid

BoxChar = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "X", "-", "_"]
GlyphSource = Literal["mnist", "usps", "font", "stroke", "seven_segment", "none"]
Correction = Literal["strike", "overwrite", "fluid"]
MistakeKind = Literal["wrong_sum", "transposed", "off_by_one_row"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BoxTruth(_Model):
    index: int  # box position within the field, left to right
    char: BoxChar  # what a careful human reads in the box (after any correction)
    source: GlyphSource  # where the handwriting came from ("none" for an empty box)
    corrected: bool = False  # the box shows a struck-out / overwritten / whited-out first attempt
    correction: Correction | None = None
    crosses_border: bool = False  # the glyph was drawn over the printed box line
    covered: bool = False  # a finger or object covers part of the box in the photo


class OmrColumnTruth(_Model):
    """One bubble column under a digit box (PPWP 2024 page 2)."""

    intended: int | None  # the digit the column should show (leading filler -> 0), None if left blank
    filled: list[int]  # digit values of the bubbles that carry ink (what a careful human sees)
    quality: Literal["clean", "partial", "stray", "blank"]  # partial: sloppy under-fill; stray: extra mark


class RowTotalTruth(_Model):
    """A tally row's total ("Jumlah tiap baris") as written; the row's strokes in the grid count the same votes."""

    value: int
    text: str  # one BoxChar per written slot: the row's boxes, or equal parts of a single wide cell (2019 plano)
    boxes: list[BoxTruth]  # index: the slot


class FieldTruth(_Model):
    id: str
    value: int  # the number as written (what a careful human reads), mistakes included
    text: str  # one BoxChar per box, e.g. "X86"
    boxes: list[BoxTruth]
    omr: list[OmrColumnTruth] | None = None
    corrected: bool = False  # any box of the field was corrected
    # Per tally row, top to bottom, for fields with a tally grid. They sum to the votes tallied: the intended count
    # when the field carries a KPPS mistake (see ocr.synth.fill.fill_page), less any votes beyond the grid's room.
    row_totals: list[RowTotalTruth] | None = None


class ConstraintTruth(_Model):
    name: str
    rule: str
    severity: Literal["hard", "soft", "cross_check"]
    holds: bool


class MistakeTruth(_Model):
    """A real KPPS arithmetic mistake written on the form (not a reading error)."""

    kind: MistakeKind
    field: str  # qualified "<page>:<field id>"
    intended: int  # the value a consistent form would carry
    written: int


class FormTruth(_Model):
    """The tally of the whole form set this page belongs to (all pages of one TPS share it)."""

    form_set: str
    consistent: bool  # every constraint (page and cross-page, all severities) holds for the written numbers
    broken: list[str]  # names of the constraints that fail
    mistake: MistakeTruth | None = None
    values: dict[str, int]  # qualified "<page>:<field id>" -> written value, for every page of the set


class PhotoTruth(_Model):
    width: int
    height: int
    jpeg_quality: int
    orientation: Literal[0, 90, 180, 270]  # clockwise rotation of the page's "up" in the photo
    roll_deg: float  # small in-plane rotation on top of the orientation
    tilt_deg: float  # angle between the camera axis and the page normal
    homography: list[list[float]]  # 3x3, page mm -> photo px (the flat-page model; see nonplanar_max_px)
    page_corners_px: list[tuple[float, float]]  # tl, tr, br, bl of the sheet
    frame_points_px: list[tuple[float, float]]  # the template's registration points
    frame_points_inside: list[bool]
    box_px: float  # median side of a digit box in photo pixels
    nonplanar_max_px: float  # how far curl/fold moves any page point from the homography's prediction
    effects: list[str]  # camera and scene effects applied, e.g. ["curl", "shadow", "motion_blur"]
    occluder: Literal["finger", "pen", "paper"] | None = None


class PageTruth(_Model):
    generator_version: str = GENERATOR_VERSION
    seed: int
    index: int
    image: str  # file name of the photo, next to this JSON
    template_id: str  # the page actually photographed
    template_version: str
    template_hash: str
    expected_template: str  # the slot this photo was uploaded for; differs from template_id for a wrong page
    unreadable_reason: str | None  # ocr.errors.UnreadableReason value a reader should give, or None if usable
    leading_convention: Literal["X", "-", "0", "_", "mixed"]
    ink: Literal["blue", "black"]
    fields: list[FieldTruth]
    form: FormTruth
    photo: PhotoTruth
    notes: list[str] = Field(default_factory=list)

    @property
    def wrong_page(self) -> bool:
        return self.expected_template != self.template_id

    def field(self, field_id: str) -> FieldTruth:
        for f in self.fields:
            if f.id == field_id:
                return f
        raise KeyError(field_id)
