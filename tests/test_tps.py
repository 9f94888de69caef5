"""The pages of one TPS read together (ocr/tps.py): slots, cross-page rules, joint decoding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocr.config import Settings
from ocr.decode import decode_page, evidence_from_record
from ocr.results import PageReading
from ocr.templates import get_template
from ocr.tps import read_tps

SETTINGS = Settings()
FIXTURES = Path(__file__).parent / "fixtures" / "probabilities"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def page_reading(template_id: str, fields: dict, image: str | None = None) -> PageReading:
    t = get_template(template_id)
    d = decode_page(t, evidence_from_record(fields), {}, profile=SETTINGS.profile(t.election), settings=SETTINGS)
    return PageReading(
        image=image or f"{template_id}.jpg", status="read", template=template_id, engine="fixture",
        page_status=d.status, page_reasons=d.reasons, fields=d.fields, rules=d.rules,
    )  # fmt: skip


def readings(doc: dict) -> list[PageReading]:
    return [page_reading(tid, fields) for tid, fields in doc["pages"].items()]


def consistent_pages() -> dict:
    """The 62 -> 941 fixture with the misread replaced by what is written: a consistent TPS."""
    doc = fixture("tps_62_read_as_941")
    doc["pages"]["ppwp-2024-plano-p2"]["IV.1"] = "X62"
    return doc


def test_consistent_tps_is_accepted_with_cross_page_rules_passing():
    tps = read_tps(list(reversed(readings(consistent_pages()))), settings=SETTINGS)
    assert tps.form_set == "ppwp-2024-plano" and tps.status == "accepted", tps.reasons
    assert tps.missing == [] and [s.status for s in tps.pages.values()] == ["present"] * 3
    rules = {r.name: r for r in tps.rules}
    assert rules["R7_valid_sum"].status == "pass" and rules["R9_total_eq_voters"].status == "pass"
    assert rules["R16_pages:ppwp-2024-plano"].status == "pass"
    assert tps.fields["2:IV.1"].value == 62


def test_sums_across_pages_correct_62_read_as_941():
    """941 is never accepted. The cross-page sum corrects it to 62; the correction is accepted only at the stricter
    correction bar. Near misses of 62 (61, 42, ...) break the sum by a slip's worth, so even the discrepancy-weighted
    model leaves it close to that bar; the flat model (every broken sum weighs 0.05) sends it to review."""
    doc = fixture("tps_62_read_as_941")
    pages = readings(doc)
    alone = next(p for p in pages if p.template == "ppwp-2024-plano-p2").fields["IV.1"]
    assert alone.value != 62  # page 2 alone cannot tell which number under the cap it is
    bar = SETTINGS.routing.accept_corrected_confidence
    flat = Settings(decode={"form_error_spread": 0})
    for settings in (SETTINGS, flat):
        tps = read_tps(pages, settings=settings)
        f = tps.fields["2:IV.1"]
        assert f.value == 62 and "corrected_by_rules" in f.reasons
        assert f.status == ("accepted" if f.confidence >= bar else "needs_review")
        assert tps.fields["3:V.A"].status == "accepted"
    assert f.status == "needs_review" and tps.status == "needs_review"  # flat


def test_overconfident_941_breaks_the_cross_page_sum_as_a_form_error():
    tps = read_tps(readings(fixture("tps_62_read_as_941_overconfident")), settings=SETTINGS)
    f = tps.fields["2:IV.1"]
    assert f.value == 941 and f.status == "needs_review"
    assert "rule_failed:R7_valid_sum" in f.reasons and "form_inconsistent" in f.reasons
    r7 = next(r for r in tps.rules if r.name == "R7_valid_sum")
    assert r7.status == "fail" and r7.values["2:IV.1"] == 941 and r7.values["3:V.A"] == 205


def test_a_misread_the_sums_of_two_pages_explain_is_taken_across_pages():
    """V.A written 205, its "0" read "8" at 0.985: page 3's own sum (R8) and the cross-page one (R7) both ask for
    205. The TPS decode takes it as misread, in review with the sums' value, and frees both sums' other fields."""
    doc = consistent_pages()
    doc["pages"]["ppwp-2024-plano-p3"]["V.A"] = [
        {"topk": [["2", 0.999]]}, {"topk": [["8", 0.985], ["0", 0.013]]}, {"topk": [["5", 0.999]]},
    ]  # fmt: skip
    tps = read_tps(readings(doc), settings=SETTINGS)
    va = tps.fields["3:V.A"]
    assert (va.value, va.status) == (205, "needs_review")
    assert "misread_suspected" in va.reasons and "corrected_by_rules" in va.reasons
    assert va.alternatives[0].char == "285"
    rules = {r.name: r for r in tps.rules}
    for name in ("R7_valid_sum", "R8_total"):
        assert rules[name].status == "pass" and "3:V.A read 285, taken as 205" in rules[name].message, name
    for fid in ("2:IV.1", "2:IV.2", "2:IV.3", "3:V.B", "3:V.C"):
        assert tps.fields[fid].status == "accepted", fid
    assert tps.status == "needs_review"


def test_missing_page_leaves_cross_page_rules_pending():
    pages = [p for p in readings(consistent_pages()) if p.template != "ppwp-2024-plano-p3"]
    tps = read_tps(pages, settings=SETTINGS)
    assert tps.status == "pending" and tps.missing == [3] and "pages_missing" in tps.reasons
    rules = {r.name: r for r in tps.rules}
    assert rules["R7_valid_sum"].status == "pending" and rules["R16_pages:ppwp-2024-plano"].status == "pending"
    assert tps.pages["3"].status == "missing"
    assert tps.fields["2:IV.1"].status == "accepted"  # what is there is still decoded


def test_duplicate_and_unreadable_pages_fill_no_slot():
    pages = readings(consistent_pages())
    dup = pages[1].model_copy(update={"image": "again.jpg"})
    bad = PageReading(image="blurry.jpg", status="unreadable", reason="blurry", engine="fixture")
    tps = read_tps([*pages, dup, bad], settings=SETTINGS)
    assert {(e.image, e.reason) for e in tps.extra} == {("again.jpg", "duplicate_page"), ("blurry.jpg", "unreadable")}
    r16 = next(r for r in tps.rules if r.rule == "R16")
    assert r16.status == "fail" and "again.jpg" in r16.message
    assert tps.status == "needs_review" and "duplicate_page" in tps.reasons


def test_no_readable_page_is_unreadable():
    bad = PageReading(image="x.jpg", status="unreadable", reason="not_found", engine="fixture")
    tps = read_tps([bad], settings=SETTINGS)
    assert tps.status == "unreadable" and tps.form_set is None


def test_engine_failed_box_stays_unreadable_across_pages():
    doc = consistent_pages()
    doc["pages"]["ppwp-2024-plano-p3"]["V.B"] = [{"topk": [], "error": "timeout"}, {"topk": [["1", 0.99]]},
                                                  {"topk": [["0", 0.99]]}]  # fmt: skip
    tps = read_tps(readings(doc), settings=SETTINGS)
    f = tps.fields["3:V.B"]
    assert f.status == "unreadable" and "engine_error" in f.reasons
    assert next(r for r in tps.rules if r.name == "R8_total").status == "pending"


def test_tps_reading_json_round_trip():
    from ocr.tps import TpsReading

    tps = read_tps(readings(consistent_pages()), settings=SETTINGS)
    assert TpsReading.model_validate_json(tps.model_dump_json()) == tps
