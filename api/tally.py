"""Provisional tallies: per-TPS values with provenance, aggregated kelurahan -> kecamatan -> kab/kota -> provinsi.

A field's value is the machine's reading, unless a review item for it was resolved: then the verifier's value
(`verified` when the machine value was approved, `corrected` when it was changed). A TPS adds to a region's totals
only when every page of its form set is read and nothing is pending: its state is `machine_accepted` or `verified`.
Numbers that still need review are never summed. Every response carries the provisional notice.

Before a TPS counts, every hard rule of its form set (each page's and the ones across pages, ocr.tps) is checked
on those final values: the pages were decoded one by one, so a sum across pages (PPWP 2024: the paslon votes on
page 2 against V.A on page 3) was not checked yet, and a verifier may have entered a number the sums contradict
(the KPPS wrote it so). Such a TPS is `inconsistent`: not summed, its broken rules listed, until the pleno or a
retaken photo settles it. Impossible numbers never reach a total.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import Region, ReviewItem, Submission
from api.regions import LEVEL_LENGTH
from ocr.config import get_settings
from ocr.errors import UnknownTemplate
from ocr.results import RuleResult
from ocr.rules import Rule
from ocr.templates import get_form_set, get_template
from ocr.tps import form_set_rules

NOTICE = (
    "PROVISIONAL: machine readings of photographed C.Hasil forms, partly verified by people. "
    "Not an official result; the official result is the KPU's tiered recapitulation (pleno)."
)
COUNTED_STATES = ("machine_accepted", "verified")
TPS_STATES = (
    "machine_accepted",
    "verified",
    "pending_review",
    "processing",
    "incomplete",
    "unreadable",
    "failed",
    "not_uploaded",
    "inconsistent",
)


@dataclass
class FieldValue:
    value: int | None
    provenance: str  # machine, verified, corrected, unreadable, pending
    label: str = ""


@dataclass
class TpsTally:
    kode: str
    form_set: str
    state: str
    pages: dict[int, str] = field(default_factory=dict)  # page -> current submission id
    values: dict[str, FieldValue] = field(default_factory=dict)  # "page:field" -> value
    broken_rules: list[RuleResult] = field(default_factory=list)  # hard rules its final values break


def _form_set_pages(form_set: str) -> dict[int, str]:
    try:
        return {ref.page: ref.template for ref in get_form_set(form_set).pages}
    except UnknownTemplate:
        return {}


def tps_tallies(db: Session, *, region: str | None = None, form_set: str | None = None) -> list[TpsTally]:
    q = select(Submission).where(Submission.superseded_at.is_(None))
    if region:
        q = q.where(Submission.tps_kode.startswith(region))
    if form_set:
        q = q.where(Submission.form_set == form_set)
    subs = db.scalars(q).all()
    items_q = select(ReviewItem).where(ReviewItem.submission_id.in_([s.id for s in subs]))
    items: dict[tuple[str, str], ReviewItem] = {
        (i.submission_id, i.field_id): i for i in (db.scalars(items_q).all() if subs else [])
    }
    by_slot: dict[tuple[str, str], dict[int, Submission]] = defaultdict(dict)
    for s in subs:
        by_slot[(s.tps_kode, s.form_set)][s.page] = s
    form_sets = {form_set} if form_set else {fs for _, fs in by_slot}
    listed_q = select(Region.code).where(Region.level == "tps")
    if region:
        listed_q = listed_q.where(Region.code.startswith(region))
    for kode in db.scalars(listed_q):
        for fs in form_sets:
            by_slot.setdefault((kode, fs), {})
    return [_tally_one(kode, fs, pages, items) for (kode, fs), pages in sorted(by_slot.items())]


def _tally_one(kode: str, form_set: str, pages: dict[int, Submission], items: dict) -> TpsTally:
    t = TpsTally(kode=kode, form_set=form_set, state="machine_accepted", pages={p: s.id for p, s in pages.items()})
    expected = _form_set_pages(form_set)
    if not pages:
        t.state = "not_uploaded"
        return t
    states: set[str] = set()
    for page, sub in sorted(pages.items()):
        if sub.status == "failed":
            states.add("failed")
            continue
        if sub.status == "unreadable":
            states.add("unreadable")
            continue
        if sub.status != "read" or not sub.reading:
            states.add("processing")
            continue
        labels = {f.id: f.label for f in get_template(sub.template_id).fields}
        for field_id, f in (sub.reading.get("fields") or {}).items():
            key = f"{page}:{field_id}"
            item: ReviewItem | None = items.get((sub.id, field_id))
            if item is None:
                if f.get("value") is None:
                    states.add("unreadable")
                    t.values[key] = FieldValue(None, "unreadable", labels.get(field_id, ""))
                else:
                    t.values[key] = FieldValue(int(f["value"]), "machine", labels.get(field_id, ""))
            elif item.state != "resolved":
                states.add("pending_review")
                t.values[key] = FieldValue(None, "pending", labels.get(field_id, ""))
            elif item.final_action == "unreadable":
                states.add("unreadable")
                t.values[key] = FieldValue(None, "unreadable", labels.get(field_id, ""))
            else:
                states.add("verified")
                prov = "corrected" if item.final_action == "correct" else "verified"
                t.values[key] = FieldValue(item.final_value, prov, labels.get(field_id, ""))
    if expected and set(pages) != set(expected):
        states.add("incomplete")
    for state in ("failed", "unreadable", "processing", "incomplete", "pending_review", "verified"):
        if state in states:
            t.state = state
            break
    if t.state in COUNTED_STATES:
        t.broken_rules = broken_rules(form_set, {k: v.value for k, v in t.values.items()})
        if t.broken_rules:
            t.state = "inconsistent"
    return t


def broken_rules(form_set: str, values: dict[str, int | None]) -> list[RuleResult]:
    """The hard rules of a form set (each page's and those across pages) that a TPS's values ("<page>:<field id>")
    break."""
    return [r.result(values) for r in _hard_rules(form_set) if r.holds(values) is False]


@lru_cache(maxsize=64)
def _hard_rules(form_set: str) -> tuple[Rule, ...]:
    """A form set's hard rules, built once per form set (a tally checks every TPS)."""
    try:
        fs = get_form_set(form_set)
    except UnknownTemplate:
        return ()
    return tuple(r for r in form_set_rules(fs, get_settings().profile(fs.election)) if r.severity == "hard")


def region_tallies(
    db: Session, tallies: list[TpsTally], level: str, *, region: str | None = None
) -> list[dict[str, Any]]:
    n = LEVEL_LENGTH[level]
    names = {r.code: r.name for r in db.scalars(select(Region).where(Region.level == level))}
    groups: dict[tuple[str, str], list[TpsTally]] = defaultdict(list)
    for t in tallies:
        groups[(t.kode[:n], t.form_set)].append(t)
    out = []
    for (code, fs), members in sorted(groups.items()):
        states = Counter({s: 0 for s in TPS_STATES})
        states.update(t.state for t in members)
        totals: dict[str, dict[str, Any]] = {}
        for t in members:
            if t.state not in COUNTED_STATES:
                continue
            for key, fv in t.values.items():
                agg = totals.setdefault(
                    key, {"label": fv.label, "value": 0, "provenance": {"machine": 0, "verified": 0, "corrected": 0}}
                )
                agg["value"] += fv.value or 0
                agg["provenance"][fv.provenance] += 1
        out.append(
            {
                "code": code,
                "name": names.get(code, ""),
                "level": level,
                "form_set": fs,
                "tps_total": len(members),
                "tps_counted": states["machine_accepted"] + states["verified"],
                "tps_states": dict(states),
                "totals": dict(sorted(totals.items(), key=lambda kv: _field_order(kv[0]))),
            }
        )
    return out


def _field_order(key: str) -> tuple[int, str]:
    page, _, fid = key.partition(":")
    return (int(page), fid)


def envelope(now: datetime, **body: Any) -> dict[str, Any]:
    return {"provisional": True, "notice": NOTICE, "generated_at": now.isoformat(), **body}


def tps_json(t: TpsTally) -> dict[str, Any]:
    return {
        "kode_tps": t.kode,
        "form_set": t.form_set,
        "state": t.state,
        "pages": {str(p): sid for p, sid in sorted(t.pages.items())},
        "broken_rules": [r.model_dump(mode="json") for r in t.broken_rules],
        "values": {
            k: {"label": v.label, "value": v.value, "provenance": v.provenance}
            for k, v in sorted(t.values.items(), key=lambda kv: _field_order(kv[0]))
        },
    }


def tps_csv(tallies: list[TpsTally]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["status", "kode_tps", "form_set", "tps_state", "field", "label", "value", "provenance"])
    for t in tallies:
        if not t.values:
            w.writerow(["provisional", t.kode, t.form_set, t.state, "", "", "", ""])
        for key, v in sorted(t.values.items(), key=lambda kv: _field_order(kv[0])):
            w.writerow(["provisional", t.kode, t.form_set, t.state, key, v.label, "" if v.value is None else v.value, v.provenance])
    return buf.getvalue()


def region_csv(regions: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["status", "level", "code", "name", "form_set", "field", "label", "value", "machine", "verified", "corrected",
         "tps_counted", "tps_total", *(f"tps_{s}" for s in TPS_STATES)]
    )
    for r in regions:
        states = [r["tps_states"].get(s, 0) for s in TPS_STATES]
        rows = r["totals"].items() or [("", {"label": "", "value": "", "provenance": {}})]
        for key, agg in rows:
            p = agg["provenance"]
            w.writerow(
                ["provisional", r["level"], r["code"], r["name"], r["form_set"], key, agg["label"], agg["value"],
                 p.get("machine", ""), p.get("verified", ""), p.get("corrected", ""), r["tps_counted"], r["tps_total"],
                 *states]
            )
    return buf.getvalue()
