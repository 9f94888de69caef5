"""The pages of one TPS read together: slots (R16), cross-page rules (R6/R7/R9 from the FormSet) and joint decoding.

    from ocr.tps import read_tps
    tps = read_tps([page1, page2, page3])            # PageReadings of one form set, any order
    tps.status        # "accepted" | "needs_review" | "unreadable" | "pending" (a page is not in yet)
    tps.fields["2:IV.1"].value

Each page's fields are decoded again, jointly across the pages, from the per-box top-k probabilities recorded in the
PageReadings (already calibrated, so no temperature is applied twice), under the page rules plus the form set's
cross-page constraints (field ids "<page>:<field id>"). A rule that needs a page not read yet is `pending`; so is
the TPS. Pages are put in slots by their template (never by a fixed id list): a page of another form set or a second
photo of a filled slot fails R16 and is listed in `extra`.

Not checked yet: that all pages carry the same handwritten TPS header (no header reader exists).
"""

from __future__ import annotations

from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field

from ocr.calibration import Calibration
from ocr.config import ElectionProfile, Settings, get_settings
from ocr.decode import BoxEvidence, FieldInput, PageDecode, decode_fields, probs_from_topk
from ocr.errors import UnknownTemplate
from ocr.results import FieldReading, OmrReading, PageReading, RuleResult
from ocr.rules import Rule, bind_constraint, page_rules, structural_result
from ocr.templates import get_form_set, get_template
from ocr.templates.schema import FormSet

TpsStatus = Literal["accepted", "needs_review", "unreadable", "pending"]

# Page-level findings the joint decode cannot recompute from a PageReading (row-total boxes are not recorded in it).
CARRIED_REASONS = ("row_totals_disagree",)
# Probabilities in a PageReading are calibrated already.
_IDENTITY = Calibration(temperature=1.0, fitted_on="identity: PageReading top-k is calibrated already")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PageSlot(_Model):
    page: int
    template: str
    status: Literal["present", "missing"]
    image: str | None = None
    page_status: str | None = None  # the page's own status when read alone


class ExtraPage(_Model):
    """A photo that fills no slot: unreadable, of another form, or a second photo of a filled slot."""

    image: str
    template: str | None
    reason: Literal["unreadable", "wrong_form", "duplicate_page"]


class TpsReading(_Model):
    form_set: str | None
    form_set_version: str | None = None
    status: TpsStatus
    reasons: list[str] = Field(default_factory=list)
    pages: dict[str, PageSlot] = Field(default_factory=dict)  # by slot (page number as a string)
    missing: list[int] = Field(default_factory=list)
    extra: list[ExtraPage] = Field(default_factory=list)
    fields: dict[str, FieldReading] = Field(default_factory=dict)  # "<page>:<field id>", decoded across pages
    rules: list[RuleResult] = Field(default_factory=list)  # page rules (qualified), cross-page rules and R16


def _evidence(reading: FieldReading) -> list[BoxEvidence] | None:
    if not reading.boxes:
        return None
    out = []
    for b in reading.boxes:
        failed = b.char == "?" or not b.topk
        out.append(
            BoxEvidence(
                probs=None if failed else probs_from_topk([(c.char, c.p) for c in b.topk]),
                engines={name: [(c.char, c.p) for c in cands] for name, cands in b.engines.items()},
                ink=b.ink,
                empty=b.char == "_",
                touches_border=b.touches_border,
                error=b.error,
            )
        )
    return out


def form_set_rules(form_set: FormSet, profile: ElectionProfile, pages: Iterable[int] | None = None) -> list[Rule]:
    """Every rule of a form set over "<page>:<field id>": each page's (of `pages`, default all), then the form set's
    own constraints across pages."""
    wanted = None if pages is None else set(pages)
    rules: list[Rule] = []
    for ref in form_set.pages:
        if wanted is None or ref.page in wanted:
            rules.extend(page_rules(get_template(ref.template), profile, qualify=f"{ref.page}:"))
    rules.extend(bind_constraint(c, profile) for c in form_set.constraints)
    return rules


def form_set_inputs(
    form_set: FormSet,
    evidence: dict[int, dict[str, list[BoxEvidence] | None]],
    omr: dict[int, dict[str, OmrReading]],
    profile: ElectionProfile,
) -> tuple[list[FieldInput], list[Rule]]:
    """The fields ("<page>:<field id>") and rules (each page's, then the form set's constraints) of the pages that
    have evidence, for one joint `decode_fields`."""
    inputs: list[FieldInput] = []
    for ref in form_set.pages:
        page = evidence.get(ref.page)
        if page is None:
            continue
        q = f"{ref.page}:"
        for f in get_template(ref.template).fields:
            inputs.append(FieldInput(qid=q + f.id, spec=f, boxes=page.get(f.id), omr=omr.get(ref.page, {}).get(f.id)))
    return inputs, form_set_rules(form_set, profile, pages=[p for p, e in evidence.items() if e is not None])


def decode_tps(
    form_set: FormSet,
    slots: dict[int, PageReading],
    *,
    settings: Settings,
    form_id: str | None = None,
) -> PageDecode:
    """Joint decode of the pages present, under page rules and the form set's constraints."""
    evidence = {
        page: {fid: _evidence(fr) for fid, fr in reading.fields.items()} for page, reading in slots.items()
    }
    omr = {
        page: {fid: fr.omr for fid, fr in reading.fields.items() if fr.omr is not None}
        for page, reading in slots.items()
    }
    inputs, rules = form_set_inputs(form_set, evidence, omr, settings.profile(form_set.election))
    decoded = decode_fields(inputs, rules, settings=settings, form_id=form_id, calibration=_IDENTITY)

    for ref in form_set.pages:
        reading = slots.get(ref.page)
        if reading is None:
            continue
        for fid, fr in reading.fields.items():
            out = decoded.fields.get(f"{ref.page}:{fid}")
            carried = [r for r in fr.reasons if r in CARRIED_REASONS]
            if out is None or not carried:
                continue
            out.reasons = list(dict.fromkeys([*out.reasons, *carried]))
            if out.status == "accepted":
                out.status = "needs_review"
    return decoded


def read_tps(
    pages: list[PageReading],
    form_set_id: str | None = None,
    *,
    settings: Settings | None = None,
    form_id: str | None = None,
) -> TpsReading:
    """Put the page readings of one TPS in their slots and decode them together (see the module docstring)."""
    settings = settings or get_settings()
    readable = [p for p in pages if p.status == "read" and p.template]
    if form_set_id is None:
        for p in readable:
            try:
                form_set_id = get_template(p.template).form_set  # type: ignore[arg-type]
                break
            except UnknownTemplate:
                continue
    if form_set_id is None:
        return TpsReading(
            form_set=None,
            status="unreadable",
            reasons=["no_readable_page"],
            extra=[ExtraPage(image=p.image, template=p.template, reason="unreadable") for p in pages],
        )
    fs = get_form_set(form_set_id)
    slot_of = {ref.template: ref.page for ref in fs.pages}

    slots: dict[int, PageReading] = {}
    extra: list[ExtraPage] = []
    for p in pages:
        if p.status != "read" or not p.template:
            extra.append(ExtraPage(image=p.image, template=p.template, reason="unreadable"))
        elif p.template not in slot_of:
            extra.append(ExtraPage(image=p.image, template=p.template, reason="wrong_form"))
        elif slot_of[p.template] in slots:
            extra.append(ExtraPage(image=p.image, template=p.template, reason="duplicate_page"))
        else:
            slots[slot_of[p.template]] = p

    page_slots: dict[str, PageSlot] = {}
    missing: list[int] = []
    for ref in fs.pages:
        got = slots.get(ref.page)
        if got is None:
            missing.append(ref.page)
            page_slots[str(ref.page)] = PageSlot(page=ref.page, template=ref.template, status="missing")
        else:
            page_slots[str(ref.page)] = PageSlot(
                page=ref.page, template=ref.template, status="present", image=got.image, page_status=got.page_status
            )

    wrong = [e for e in extra if e.reason != "unreadable"]
    r16_ok: bool | None = False if wrong else (None if missing else True)
    msg = []
    if missing:
        msg.append(f"waiting for page(s) {', '.join(map(str, missing))}")
    for e in wrong:
        msg.append(f"{e.image}: {e.reason.replace('_', ' ')} ({e.template})")
    r16 = structural_result(
        f"R16_pages:{fs.id}", "R16", ok=r16_ok, fields=[f"page:{ref.page}" for ref in fs.pages],
        message="; ".join(msg) or "all pages present, each in its slot",
    )

    reasons: list[str] = []
    if not slots:
        return TpsReading(
            form_set=fs.id, form_set_version=fs.version, status="unreadable" if not missing else "pending",
            reasons=["no_readable_page", *(["pages_missing"] if missing else [])], pages=page_slots,
            missing=missing, extra=extra, rules=[r16],
        )
    decoded = decode_tps(fs, slots, settings=settings, form_id=form_id)
    reasons.extend(decoded.reasons)
    if missing:
        reasons.append("pages_missing")
    reasons.extend(sorted({e.reason for e in wrong}))
    if decoded.status == "unreadable":
        status: TpsStatus = "unreadable"
    elif missing:
        status = "pending"
    elif wrong or decoded.status == "needs_review":
        status = "needs_review"
    else:
        status = "accepted"
    return TpsReading(
        form_set=fs.id,
        form_set_version=fs.version,
        status=status,
        reasons=list(dict.fromkeys(reasons)),
        pages=page_slots,
        missing=missing,
        extra=extra,
        fields=decoded.fields,
        rules=[*decoded.rules, r16],
    )
