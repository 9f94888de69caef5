"""Field decode, filler rule, constrained decoding and routing (ocr/decode.py)."""

from __future__ import annotations

import numpy as np
import pytest

from ocr.calibration import Calibration
from ocr.config import Settings
from ocr.decode import BoxEvidence, decode_page, probs_from_topk, value_of, value_probability
from ocr.read.base import CLASSES
from ocr.templates import get_template

SETTINGS = Settings()
PROFILE = SETTINGS.profile("pemilu_2024")


def box(topk, empty: bool = False) -> BoxEvidence:
    return BoxEvidence(probs_from_topk(topk), {}, 0.0 if empty else 0.1, empty, False)


def sure(text: str) -> list[BoxEvidence]:
    """Confidently read boxes: '_' an empty box, '-' a dash, else the class."""
    return [box([(c, 0.999)], empty=(c == "_")) for c in text]


# A consistent page 1 (B4 = 215 voters, 255 ballots received = 215 + 0 + 40).
PAGE1 = {
    "I.A.L": "120", "I.A.P": "130", "I.A.LP": "250",
    "I.B1.L": "100", "I.B1.P": "110", "I.B1.LP": "210",
    "I.B2.L": "X-2", "I.B2.P": "XX3", "I.B2.LP": "XX5",
    "I.B3.L": "XX0", "I.B3.P": "XX0", "I.B3.LP": "XX0",
    "I.B4.L": "102", "I.B4.P": "113", "I.B4.LP": "215",
    "II.1": "255", "II.2": "215", "II.3": "XX0", "II.4": "X40",
    "III.L": "XX1", "III.P": "XX0", "III.LP": "XX1",
}  # fmt: skip


def decode(template_id: str, evidence, omr=None, form_id=None, settings=SETTINGS, calibration=None):
    t = get_template(template_id)
    return decode_page(
        t, evidence, omr or {}, profile=settings.profile(t.election), settings=settings, form_id=form_id,
        calibration=calibration,
    )


@pytest.mark.parametrize(
    "classes,value",
    [
        ("X62", 62), ("_62", 62), ("062", 62), ("XX0", 0), ("XXX", 0), ("___", 0), ("000", 0), ("X_5", 5),
        ("105", 105), ("6X2", None), ("62X", None), ("62_", None), ("0X5", None), ("X0X", None),
    ],
)  # fmt: skip
def test_value_of_follows_the_filler_rule(classes, value):
    assert value_of(tuple(classes)) == value


@pytest.mark.parametrize("value", [0, 7, 62, 105, 999])
def test_value_probability_matches_brute_force(value):
    rng = np.random.default_rng(value)
    boxes = [rng.dirichlet(np.ones(12)) for _ in range(3)]
    import itertools

    brute = sum(
        np.prod([boxes[i][c] for i, c in enumerate(combo)])
        for combo in itertools.product(range(12), repeat=3)
        if value_of(tuple(CLASSES[c] for c in combo)) == value
    )
    assert value_probability(boxes, value) == pytest.approx(brute, rel=1e-9)


def test_consistent_confident_page_is_accepted_with_text_and_values():
    d = decode("ppwp-2024-plano-p1", {k: sure(v) for k, v in PAGE1.items()})
    assert d.status == "accepted"
    f = d.fields["I.B2.L"]
    assert (f.value, f.text, f.status) == (2, "X-2", "accepted")
    assert d.fields["III.LP"].text == "XX1" and d.fields["III.LP"].value == 1
    assert all(r.status == "pass" for r in d.rules)


def test_empty_boxes_render_as_underscore_and_dash_when_inked():
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev["I.B3.L"] = sure("__0")
    ev["I.B3.L"][1] = box([("_", 0.999)], empty=False)  # a dash
    f = decode("ppwp-2024-plano-p1", ev).fields["I.B3.L"]
    assert f.text == "_-0" and f.value == 0


def test_x_after_a_digit_is_unreadable_never_a_number():
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev["III.LP"] = sure("0X1")
    d = decode("ppwp-2024-plano-p1", ev)
    f = d.fields["III.LP"]
    assert f.value is None and f.status == "unreadable" and "filler_misplaced" in f.reasons
    assert any(r.rule == "R15" and r.status == "fail" and r.fields == ["III.LP"] for r in d.rules)
    # the rule that needs it cannot be checked, and says so
    r2 = next(r for r in d.rules if r.name == "R2_III_L_plus_P")
    assert r2.status == "pending"
    assert d.status == "needs_review"


def test_engine_failure_on_a_box_makes_that_field_unreadable_only():
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev["II.3"][0] = BoxEvidence(None, {}, 0.0, True, False, error="timeout")
    d = decode("ppwp-2024-plano-p1", ev)
    f = d.fields["II.3"]
    assert f.status == "unreadable" and "engine_error" in f.reasons and f.text[0] == "?"
    assert d.fields["I.A.L"].status == "accepted"


def test_missing_evidence_is_not_read():
    ev = {k: sure(v) for k, v in PAGE1.items() if k != "II.4"}
    f = decode("ppwp-2024-plano-p1", ev).fields["II.4"]
    assert f.status == "unreadable" and f.reasons[0] == "not_read"


# ---------------------------------------------------------------------------------------------------------------
# Recorded top-k fixtures (tests/fixtures/probabilities/*.json). Each holds, per page template, per field either the
# boxes' recorded top-k (`{"topk": [[char, p], ...], "empty": bool}`) or, for boxes read with no doubt, a string of
# characters; `written` is what the form says; `misread` the wrong number the over-confident reader's top-1 spells.

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from ocr.decode import evidence_from_record  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "probabilities"


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


# The fixtures' probabilities are written by hand: they are decoded as written, not through the shipped model's fitted
# temperature, so retraining the digit model cannot move them across a threshold.
AS_WRITTEN = Calibration(temperature=1.0, fitted_on="identity: hand-written fixture probabilities")


def decode_fixture_pages(doc: dict, settings=SETTINGS) -> dict:
    return {
        tid: decode(tid, evidence_from_record(fields), settings=settings, calibration=AS_WRITTEN)
        for tid, fields in doc["pages"].items()
    }


CANONICAL = ["tps_62_read_as_941", "tps_62_read_as_941_overconfident", "tps_105_read_as_905",
             "page1_86_read_as_886", "page1_001_read_as_881"]  # fmt: skip


@pytest.mark.parametrize("name", CANONICAL)
def test_canonical_2024_misreads_are_never_accepted(name):
    doc = load_fixture(name)
    pages = decode_fixture_pages(doc)
    for key, wrong in doc["misread"].items():
        tid, fid = key.split(":", 1)
        f = pages[tid].fields[fid]
        # the fixture really is an over-confident misread: the boxes' top-1 classes spell the wrong number
        assert value_of(tuple("_" if b.topk[0].char == "-" else b.topk[0].char for b in f.boxes)) == wrong
        # the misread number is never accepted: the field is held, or the page's sums corrected it to what is written
        assert f.status != "accepted" or (f.value == doc["written"][key] and "corrected_by_rules" in f.reasons)


def test_form_error_discrepancies_are_a_probability_distribution():
    """A broken sum weighs the form-error weight times the probability of what it is off by: small slips likelier than
    large ones, every discrepancy in the spread summing to 1; the flat model charges every discrepancy the weight."""
    from ocr.decode import FormErrorModel

    model = FormErrorModel(0.05, slip_share=0.5, slip_scale=3.0, spread=1000)
    d = np.arange(-1000, 1001)
    d = d[d != 0]
    assert model.discrepancy_probability(d).sum() == pytest.approx(1.0, abs=1e-6)
    assert model.discrepancy_probability(1) > model.discrepancy_probability(10) > model.discrepancy_probability(800)
    assert model.discrepancy_probability(-7) == model.discrepancy_probability(7)
    # a field with no number is no slip: it weighs as the least likely discrepancy
    assert model.discrepancy_probability(np.nan) == pytest.approx(model.discrepancy_probability(1000), rel=1e-3)
    assert model.sum_penalty(1) == pytest.approx(0.05 * model.discrepancy_probability(1))
    flat = FormErrorModel(0.05)
    assert flat.flat and float(flat.sum_penalty(800)) == float(flat.sum_penalty(1)) == 0.05


def test_sums_find_a_value_the_reader_barely_saw():
    """Seen on synthetic KWK page 1: the middle 1 of a total read as 8 (75%) or 3, the true 1 at 0.001%, so it is
    not among the field's likeliest values. Three sums ask for 215; the decoder lists the value they ask for, finds
    it and accepts it as a correction. A KPPS writing 285 or 235 where three sums say 215 is far less likely."""
    ev = {f: sure(t) for f, t in PAGE1.items()}
    ev["I.B4.LP"] = [box([("2", 0.999)]), box([("8", 0.75), ("3", 0.2), ("5", 0.049), ("0", 0.0009), ("1", 0.00001)]),
                     box([("5", 0.999)])]  # fmt: skip
    res = decode("ppwp-2024-plano-p1", ev, calibration=AS_WRITTEN)
    f = res.fields["I.B4.LP"]
    assert f.value == 215
    assert f.status == "accepted" and f.reasons == ["corrected_by_rules"]
    assert f.confidence >= SETTINGS.routing.accept_corrected_confidence
    assert res.status == "accepted"
    # the same correction where the reader was sure of the middle box (8 at 98.5%; the field is unsure through its
    # first box): the rules settle ambiguous boxes, they never overrule a sure one, so it goes to review
    sure_middle = [box([("2", 0.9), ("7", 0.1)]), box([("8", 0.985), ("1", 0.00001)]), box([("5", 0.999)])]
    sure_box = {**ev, "I.B4.LP": sure_middle}
    f = decode("ppwp-2024-plano-p1", sure_box, calibration=AS_WRITTEN).fields["I.B4.LP"]
    assert f.value == 215 and f.confidence >= SETTINGS.routing.accept_corrected_confidence
    assert f.status == "needs_review" and f.reasons == ["corrected_by_rules"]
    # the same digits where the sums do not ask for 215 (a KPPS mistake in every other number): not changed
    kpps = {**ev, "I.B4.L": sure("152"), "I.B4.P": sure("133"), "II.2": sure("285"), "I.B1.LP": sure("280")}
    assert decode("ppwp-2024-plano-p1", kpps, calibration=AS_WRITTEN).fields["I.B4.LP"].value != 215


# KPPS mistakes common (0.3), every broken sum weighing the same: the sums settle a doubtful box less surely
DOUBTFUL_SUMS = Settings(decode={"form_error_spread": 0, "form_error_weight": 0.3})


@pytest.mark.parametrize("name", ["page1_86_read_as_886", "page1_001_read_as_881"])
def test_page_sums_correct_the_misread_and_accept_it_only_past_the_correction_bar(name):
    """886 for 86 breaks two sums by 800 and the cap on the field. A KPPS writing that is far less likely than an X
    read as 8, so the correction clears the stricter correction bar and is accepted, marked `corrected_by_rules`.
    Where KPPS mistakes are common and weigh the same whatever they are off by, the same correction stays under the
    bar and goes to review."""
    doc = load_fixture(name)
    bar = SETTINGS.routing.accept_corrected_confidence
    for settings, accepted in ((SETTINGS, True), (DOUBTFUL_SUMS, False)):
        pages = decode_fixture_pages(doc, settings)
        for key in doc["misread"]:
            tid, fid = key.split(":", 1)
            f = pages[tid].fields[fid]
            assert f.value == doc["written"][key]
            assert "corrected_by_rules" in f.reasons
            assert (f.confidence >= bar) == accepted
            assert f.status == ("accepted" if accepted else "needs_review")
        # every other field is read as written and accepted
        for tid, page in pages.items():
            for fid, f in page.fields.items():
                if f"{tid}:{fid}" not in doc["misread"]:
                    assert (f.value, f.status) == (doc["written"][f"{tid}:{fid}"], "accepted"), fid


def test_kpps_arithmetic_mistake_is_form_inconsistent_with_written_numbers_kept():
    doc = load_fixture("page1_kpps_arithmetic_error")
    page = decode_fixture_pages(doc)["ppwp-2024-plano-p1"]
    for fid, f in page.fields.items():
        assert f.value == doc["written"][f"ppwp-2024-plano-p1:{fid}"], fid  # nothing "fixed"
    b4 = page.fields["I.B4.LP"]
    assert b4.value == 244 and b4.status == "needs_review"
    assert "form_inconsistent" in b4.reasons and "rule_failed:R3_B4_LP" in b4.reasons
    failed = {r.name: r for r in page.rules if r.status == "fail"}
    assert set(failed) == {"R2_I.B4_L_plus_P", "R3_B4_LP", "R6_ballots_used_eq_voters"}
    r3 = failed["R3_B4_LP"]
    assert r3.values == {"I.B1.LP": 210, "I.B2.LP": 5, "I.B3.LP": 0, "I.B4.LP": 244}
    assert "215" in r3.message and "244" in r3.message
    # fields no failing rule touches stay accepted
    assert page.fields["I.A.L"].status == "accepted"
    # the written digits are clear: no misread explains the broken sums better than the KPPS's mistake
    assert not any("misread_suspected" in f.reasons for f in page.fields.values())


def test_a_misread_under_the_sure_bar_that_explains_every_broken_sum_is_taken_and_frees_the_rest():
    # I.B4.LP is written 215; its middle box is read "0" at 0.985 ("1" at 0.013): sure enough to accept on its own,
    # under the bar that keeps a reading whatever the sums say, and every sum on it asks for 215.
    assert SETTINGS.routing.accept_confidence <= 0.985 < SETTINGS.decode.sure_reading_confidence
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev["I.B4.LP"] = [box([("2", 0.999)]), box([("0", 0.985), ("1", 0.013)]), box([("5", 0.999)])]
    page = decode("ppwp-2024-plano-p1", ev)
    b4 = page.fields["I.B4.LP"]
    # taken as misread: the sums' value, never accepted on the sums' word, what was read kept as the alternative
    assert (b4.value, b4.text, b4.status) == (215, "215", "needs_review")
    assert "misread_suspected" in b4.reasons and "corrected_by_rules" in b4.reasons
    assert "form_inconsistent" not in b4.reasons and b4.confidence < SETTINGS.routing.accept_confidence
    assert b4.alternatives[0].char == "205" and b4.alternatives[0].p == pytest.approx(1 - b4.confidence, abs=1e-6)
    checked = {r.name: r for r in page.rules if r.name in ("R2_I.B4_L_plus_P", "R3_B4_LP", "R6_ballots_used_eq_voters")}
    assert len(checked) == 3
    for r in checked.values():
        assert r.status == "pass" and "I.B4.LP read 205, taken as 215 (misread suspected)" in r.message
    # the other fields of its sums are no longer held by it
    for fid in ("I.B4.L", "I.B4.P", "I.B1.LP", "I.B2.LP", "I.B3.LP", "II.2"):
        f = page.fields[fid]
        assert f.status == "accepted" and f.reasons == [], fid
    # a field that may just as well be the misread one (I.B4.P read 113, its "1" at 0.987, "0" at 0.011, makes
    # 102 + 103 = 205) is not accepted on the taken misread's account
    ev["I.B4.P"] = [box([("1", 0.999)]), box([("1", 0.987), ("0", 0.011)]), box([("3", 0.999)])]
    page = decode("ppwp-2024-plano-p1", ev)
    p = page.fields["I.B4.P"]
    assert p.value == 113 and p.status == "needs_review" and p.confidence < 0.9
    assert page.fields["I.B4.LP"].status == "needs_review"


def test_a_sure_misread_that_one_field_explains_is_suspected_not_blamed_on_the_kpps():
    # I.B4.LP is written 215; its middle box is read "0" at 0.997 ("1" at 0.0028): sure enough that the rules may
    # not change it, but every sum on it asks for 215.
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev["I.B4.LP"] = [box([("2", 0.999)]), box([("0", 0.997), ("1", 0.0028)]), box([("5", 0.999)])]
    page = decode("ppwp-2024-plano-p1", ev)
    b4 = page.fields["I.B4.LP"]
    assert b4.confidence >= SETTINGS.decode.sure_reading_confidence
    assert (b4.value, b4.status) == (205, "needs_review")  # the confident reading is kept, not corrected
    assert "misread_suspected" in b4.reasons and "form_inconsistent" not in b4.reasons
    failed = {r.name: r for r in page.rules if r.status == "fail"}
    assert set(failed) == {"R2_I.B4_L_plus_P", "R3_B4_LP", "R6_ballots_used_eq_voters"}
    for r in failed.values():
        assert "I.B4.LP may read 215" in r.message
        for fid in r.fields:  # every field of a broken rule still goes to a person, none blamed on the KPPS
            f = page.fields[fid]
            assert f.status == "needs_review" and "form_inconsistent" not in f.reasons, fid
            assert ("misread_suspected" in f.reasons) == (fid == "I.B4.LP"), fid
    # the same reading with the middle box sure ("0" at 0.999): the KPPS wrote 205, as far as the reader can tell
    ev["I.B4.LP"] = sure("205")
    page = decode("ppwp-2024-plano-p1", ev)
    b4 = page.fields["I.B4.LP"]
    assert "form_inconsistent" in b4.reasons and "misread_suspected" not in b4.reasons


def test_x_after_a_digit_fixture_is_unreadable():
    doc = load_fixture("page3_x_after_digit")
    f = decode_fixture_pages(doc)["ppwp-2024-plano-p3"].fields["V.B"]
    assert (f.value, f.text, f.status) == (None, "1X0", "unreadable")


def test_omr_agreement_raises_confidence_and_disagreement_is_flagged():
    from ocr.results import OmrReading

    ev = {"IV.1": sure("X62"), "IV.2": sure("105"), "IV.3": sure("X38")}
    ev["IV.1"][1] = box([("6", 0.85), ("8", 0.13)])  # 62 at 0.85: not enough alone
    alone = decode("ppwp-2024-plano-p2", ev).fields["IV.1"]
    assert alone.status == "needs_review" and "low_confidence" in alone.reasons

    def omr(v):
        return OmrReading(digits=[None, v // 10, v % 10], value=v, confidence=0.99, fills=[])

    agree = decode("ppwp-2024-plano-p2", ev, omr={"IV.1": omr(62)})
    f = agree.fields["IV.1"]
    assert f.value == 62 and f.confidence > alone.confidence and f.status == "accepted"
    assert any(r.name == "R14_omr:IV.1" and r.status == "pass" for r in agree.rules)

    disagree = decode("ppwp-2024-plano-p2", ev, omr={"IV.1": omr(82)})
    f = disagree.fields["IV.1"]
    assert f.status == "needs_review" and "omr_disagrees" in f.reasons
    r = next(r for r in disagree.rules if r.name == "R14_omr:IV.1")
    assert r.status == "fail" and r.severity == "cross_check" and r.values == {"digits": 62, "omr": 82}


def test_a_value_only_the_omr_proposes_is_spelled_with_the_boxes_own_filler():
    from ocr.results import OmrReading

    ev = {"IV.1": sure("-62"), "IV.2": sure("105"), "IV.3": sure("X38")}
    ev["IV.1"][1] = box([("6", 0.85), ("8", 0.13), ("7", 0.01)])  # 7 is below the box floor: not enumerated
    omr = OmrReading(digits=[None, 7, 2], value=72, confidence=0.999, fills=[])
    f = decode("ppwp-2024-plano-p2", ev, omr={"IV.1": omr}).fields["IV.1"]
    # The digits and the bubbles disagree, so a person decides; the text shows the OMR's value as these boxes
    # would spell it (the leading dash the officer wrote), not a made-up X.
    assert f.value == 72 and f.text == "-72" and f.status == "needs_review" and "omr_disagrees" in f.reasons


def test_row_totals_cross_check_the_field_without_changing_it():
    ev = {"IV.1": sure("X62"), "IV.2": sure("105"), "IV.3": sure("X38")}
    rows = {f"IV.1#row{i}": sure(text) for i, text in enumerate(["60", "X2", "__", "X0", "--"])}

    agree = decode("ppwp-2024-plano-p2", {**ev, **rows})
    r = next(r for r in agree.rules if r.name == "R14_row_totals:IV.1")
    assert r.status == "pass" and r.values == {"row0": 60, "row1": 2, "row2": 0, "row3": 0, "row4": 0, "IV.1": 62}
    assert agree.fields["IV.1"].status == "accepted" and "IV.1#row0" not in agree.fields
    assert not any(r.name == "R14_row_totals:IV.2" for r in agree.rules)  # no rows given: no check

    rows["IV.1#row1"] = sure("X5")  # 60 + 5 = 65, the boxes say 62
    disagree = decode("ppwp-2024-plano-p2", {**ev, **rows})
    r = next(r for r in disagree.rules if r.name == "R14_row_totals:IV.1")
    f = disagree.fields["IV.1"]
    assert r.status == "fail" and r.severity == "cross_check" and "65" in r.message
    assert f.value == 62 and f.status == "needs_review" and "row_totals_disagree" in f.reasons

    rows["IV.1#row1"] = [box([("X", 0.6), ("5", 0.4)]), box([("5", 0.999)])]  # unsure: no verdict, no flag
    unsure = decode("ppwp-2024-plano-p2", {**ev, **rows})
    r = next(r for r in unsure.rules if r.name == "R14_row_totals:IV.1")
    assert r.status == "pending" and unsure.fields["IV.1"].status == "accepted"

    blank = {f"IV.1#row{i}": sure("__") for i in range(5)}  # the KPPS did not total the rows at all
    r = next(r for r in decode("ppwp-2024-plano-p2", {**ev, **blank}).rules if r.name == "R14_row_totals:IV.1")
    assert r.status == "pending" and r.message == "row totals not written"


def test_audit_sample_is_deterministic_and_sends_accepted_pages_to_review():
    from ocr.decode import audit_selected

    s = Settings(routing={"accept_confidence": 0.98, "audit_sample_rate": 0.5})
    ids = [f"form-{i}" for i in range(400)]
    picked = [i for i in ids if audit_selected(i, 0.5)]
    assert picked == [i for i in ids if audit_selected(i, 0.5)]
    assert 120 < len(picked) < 280  # about half
    ev = {k: sure(v) for k, v in PAGE1.items()}
    d_in = decode("ppwp-2024-plano-p1", ev, form_id=picked[0], settings=s)
    assert d_in.status == "needs_review" and "audit_sample" in d_in.reasons
    out = next(i for i in ids if not audit_selected(i, 0.5))
    assert decode("ppwp-2024-plano-p1", ev, form_id=out, settings=s).status == "accepted"


def test_page_reading_json_round_trip():
    from ocr.results import PageReading

    d = decode_fixture_pages(load_fixture("page1_86_read_as_886"))["ppwp-2024-plano-p1"]
    pr = PageReading(image="x", status="read", engine="fixture", page_status=d.status, page_reasons=d.reasons,
                     fields=d.fields, rules=d.rules)  # fmt: skip
    back = PageReading.model_validate_json(pr.model_dump_json())
    assert back.fields["I.B1.LP"].value == 86 and back.fields["I.B1.LP"].boxes[0].topk[0].char == "8"


# ---------------------------------------------------------------------------------------------------------------
# Property: whatever the reader says, no accepted field breaks a hard rule, and values follow the filler rule.

from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st  # noqa: E402

from ocr.rules import page_rules  # noqa: E402

_CHARS = "0123456789X_"


@st.composite
def box_strategy(draw):
    kind = draw(st.sampled_from(["sure", "two", "noise"]))
    top = draw(st.sampled_from(_CHARS))
    if kind == "sure":
        return box([(top, draw(st.floats(0.97, 0.9999)))], empty=top == "_" and draw(st.booleans()))
    if kind == "two":
        second = draw(st.sampled_from(_CHARS.replace(top, "")))
        p = draw(st.floats(0.4, 0.95))
        return box([(top, p), (second, (1 - p) * 0.95)])
    seed = draw(st.integers(0, 2**32 - 1))
    p = np.random.default_rng(seed).dirichlet(np.full(12, 0.3))
    return BoxEvidence(p, {}, 0.1, False, False)


@st.composite
def page_strategy(draw, template_id):
    t = get_template(template_id)
    # mostly plausible numbers read with noise, so the rules sometimes hold and sometimes break
    return {f.id: [draw(box_strategy()) for _ in f.boxes] for f in t.fields}


@pytest.mark.parametrize("template_id", ["ppwp-2024-plano-p1", "ppwp-2024-plano-p2", "ppwp-2024-plano-p3"])
@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_accepted_field_ever_breaks_a_hard_rule(template_id, data):
    ev = data.draw(page_strategy(template_id))
    d = decode(template_id, ev)
    t = get_template(template_id)
    values = {fid: f.value for fid, f in d.fields.items()}
    for r in page_rules(t, PROFILE):
        if r.severity != "hard":
            continue
        if r.holds(values) is False:
            for fid in r.fields:
                assert d.fields[fid].status != "accepted", (r.name, fid)
    for fid, f in d.fields.items():
        classes = tuple("_" if c == "-" else c for c in f.text)
        if "?" not in classes:
            assert f.value == value_of(classes)
        if f.status == "accepted":
            assert f.value is not None and f.confidence >= SETTINGS.routing.accept_confidence
            assert t.field(fid).min <= f.value <= t.field(fid).max


@hyp_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_one_misread_digit_on_a_consistent_page_never_makes_an_accepted_field_wrong(data):
    """A consistent page with one digit box misread, however surely, and the written digit anywhere from nearly
    seen to nearly ruled out: every accepted field is as written. The misread field is corrected, taken as misread,
    suspected or blamed on the form, but never accepted wrong, and no right field is accepted on a wrong account."""
    digits = [(fid, i) for fid, text in sorted(PAGE1.items()) for i, c in enumerate(text) if c.isdigit()]
    fid, i = data.draw(st.sampled_from(digits))
    written = PAGE1[fid][i]
    wrong = data.draw(st.sampled_from([c for c in "0123456789" if c != written]))
    p = data.draw(st.floats(0.5, 0.9995))
    seen = data.draw(st.floats(0.02, 1.0))  # share of the rest of the box's mass on the written digit
    ev = {k: sure(v) for k, v in PAGE1.items()}
    ev[fid] = list(ev[fid])
    ev[fid][i] = box([(wrong, p), (written, (1 - p) * seen)])
    d = decode("ppwp-2024-plano-p1", ev)
    for f_id, f in d.fields.items():
        truth = value_of(tuple("_" if c == "-" else c for c in PAGE1[f_id]))
        if f.status == "accepted":
            assert f.value == truth, (f_id, f.value, truth, f.reasons)
    misread = d.fields[fid]
    if misread.value != value_of(tuple("_" if c == "-" else c for c in PAGE1[fid])):
        assert misread.status != "accepted"


@hyp_settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_all_sure_confident_page_keeps_every_written_digit(data):
    """Confident readings are never changed to satisfy a rule: with every box sure, values are the top-1 spelling."""
    t = get_template("ppwp-2024-plano-p1")
    texts = {f.id: "".join(data.draw(st.sampled_from("0123456789X")) for _ in f.boxes) for f in t.fields}
    d = decode("ppwp-2024-plano-p1", {k: sure(v) for k, v in texts.items()})
    for fid, text in texts.items():
        assert d.fields[fid].value == value_of(tuple(text)), fid


def test_a_group_over_the_search_budget_is_searched_again_over_fewer_candidates(monkeypatch):
    import ocr.decode as decode_mod

    ev = {f: sure(t) for f, t in PAGE1.items()}
    # Six linked fields whose last box is doubtful: each has several plausible values.
    for f in ("I.B1.L", "I.B1.P", "I.B1.LP", "I.B4.L", "I.B4.P", "I.B4.LP"):
        text = PAGE1[f]
        ev[f] = sure(text[:-1]) + [box([(text[-1], 0.6), ("1" if text[-1] != "1" else "4", 0.15), ("7", 0.13)])]
    tight = Settings(decode={"search_node_limit": 150, "exact_cost_limit": 0})  # enumerated, never summed exactly

    monkeypatch.setattr(decode_mod, "SEARCH_WIDTHS", (None,))  # one attempt at full width: over budget
    over = decode("ppwp-2024-plano-p1", ev, settings=tight)
    assert any("search_limit" in f.reasons for f in over.fields.values())

    monkeypatch.undo()
    res = decode("ppwp-2024-plano-p1", ev, settings=tight)
    assert not any("search_limit" in f.reasons for f in res.fields.values())
    for f in ev:
        assert res.fields[f].value == value_of(tuple(PAGE1[f].replace("-", "_")))
    # fewer candidates enumerated means more mass left out, which only lowers confidence
    full = decode("ppwp-2024-plano-p1", ev, settings=Settings(decode={"exact_cost_limit": 0}))
    for f in ("I.B1.L", "I.B4.LP"):
        assert res.fields[f].confidence <= full.fields[f].confidence + 1e-9


def test_a_date_misread_into_an_impossible_day_is_not_accepted():
    """Seen on synthetic 2019 C1 pages: the '7' of 17 (April 2019, polling day) read as '1' at 99.6%."""
    ev = {
        "tanggal": [box([("1", 0.999)]), box([("1", 0.996), ("7", 0.0025)])],
        "bulan": sure("04"),
        "tahun": sure("2019"),
    }
    res = decode("ppwp-2019-c1-l2", ev)
    day = res.fields["tanggal"]
    assert day.status != "accepted"
    # a confident reading is kept as read, but the "7" the reader half saw explains the date better than a KPPS slip
    assert day.value == 11 and any(r.startswith("rule_failed:R17") for r in day.reasons)
    assert "misread_suspected" in day.reasons and "form_inconsistent" not in day.reasons
    r17 = next(r for r in res.rules if r.rule == "R17")
    assert r17.message.endswith("tanggal may read 17 (misread suspected)")
    honest = decode("ppwp-2019-c1-l2", {**ev, "tanggal": sure("17")})
    assert honest.fields["tanggal"].status == "accepted"
    assert any(r.rule == "R17" and r.status == "pass" for r in honest.rules)


# ---------------------------------------------------------------------------------------------------------------
# Exact sums over a group (ocr/decode.py `_exact_group`): the confidence is a lower bound on the model's posterior


def test_value_distribution_is_every_spelling_summed():
    import itertools

    from ocr.decode import value_distribution

    rng = np.random.default_rng(3)
    boxes = [rng.dirichlet(np.ones(12) * 0.5) for _ in range(3)]
    brute = np.zeros(1001)
    for combo in itertools.product(range(12), repeat=3):
        v = value_of(tuple(CLASSES[i] for i in combo))
        brute[1000 if v is None else v] += np.prod([boxes[k][i] for k, i in enumerate(combo)])
    assert np.allclose(value_distribution(boxes), brute)
    for v in (0, 7, 62, 105):
        assert value_distribution(boxes)[v] == pytest.approx(value_probability(boxes, v))


def _range_weight(vals: np.ndarray, lo: int, hi: int, w: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.where((vals >= lo) & (vals <= hi), 1.0, w)  # "no number" (NaN) breaks a range


def _brute_posterior(fulls: dict[str, np.ndarray], form_error, c_range=None, a_range=None) -> dict[str, np.ndarray]:
    """The decoder's model by brute force for three two-box fields, the rule a + b == c and optional ranges."""
    a, b, c = (fulls[k] for k in ("a", "b", "c"))
    vals = np.arange(100, dtype=float)
    vals = np.append(vals, np.nan)  # "no number" breaks the rule
    d = vals[:, None, None] + vals[None, :, None] - vals[None, None, :]
    with np.errstate(invalid="ignore"):
        holds = d == 0
    joint = a[:, None, None] * b[None, :, None] * c[None, None, :] * np.where(holds, 1.0, form_error.sum_penalty(d))
    if c_range is not None:
        joint = joint * _range_weight(vals, *c_range, form_error.weight)[None, None, :]
    if a_range is not None:
        joint = joint * _range_weight(vals, *a_range, form_error.weight)[:, None, None]
    z = joint.sum()
    return {"a": joint.sum(axis=(1, 2)) / z, "b": joint.sum(axis=(0, 2)) / z, "c": joint.sum(axis=(0, 1)) / z}


def _noisy_field(rng, value: int, noise: float = 1.0):
    from ocr.decode import value_distribution

    boxes = []
    for d in f"{value:02d}":
        p = rng.dirichlet(np.ones(12) * 0.3) * rng.uniform(0, noise) + np.eye(12)[int(d)] * rng.uniform(0, 2)
        boxes.append(p / p.sum())
    full = value_distribution(boxes)
    order = np.argsort(-full)[:8]
    cands = [(None if i == 100 else int(i), float(full[i])) for i in order]
    return full, cands


@hyp_settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1), width=st.sampled_from([2, 4, 8]), spread=st.sampled_from([0, 100, 1000]),
    ranges=st.sampled_from(["none", "cap", "pinned", "both"]),
)  # fmt: skip
def test_exact_group_confidence_never_exceeds_the_true_posterior(seed, width, spread, ranges):
    """Under the flat form-error model (spread 0) and the discrepancy-weighted one, with a cap on the total (R10) and
    a field pinned to one value by its range (like a form's year), whose unlisted values are bounded by the range."""
    from ocr.decode import FormErrorModel, Var, solve
    from ocr.rules import LinearRule, RangeRule

    rng = np.random.default_rng(seed)
    truth = {"a": int(rng.integers(0, 50)), "b": int(rng.integers(0, 50))}
    truth["c"] = truth["a"] + truth["b"]
    fulls, variables = {}, {}
    for k, v in truth.items():
        fulls[k], cands = _noisy_field(rng, v)
        variables[k] = Var(k, cands, fixed=False, full=fulls[k])
    rules = [LinearRule("sum", "R2", "hard", ("a", "b"), "==", ("c",))]
    c_range = (0, int(rng.integers(10, 100))) if ranges in ("cap", "both") else None
    a_range = (truth["a"], truth["a"]) if ranges in ("pinned", "both") else None
    if c_range:
        rules.append(RangeRule("R10_cap:c", "R10", "hard", "c", *c_range))
    if a_range:
        rules.append(RangeRule("R1_range:a", "R1", "hard", "a", *a_range))
    form_error = FormErrorModel(0.05, spread=spread)
    sol = solve(variables, rules, form_error=form_error, node_limit=20000, prune_ratio=1e-6, exact_width=width)
    assert sol.exact == 1
    post = _brute_posterior(fulls, form_error, c_range, a_range)
    for k in truth:
        v = sol.values[k]
        true_p = post[k][100 if v is None else v]
        assert sol.confidence[k] <= true_p + 1e-9, (k, v, sol.confidence[k], true_p)


def _one_box_field(rng, value: int, noise: float = 1.0):
    from ocr.decode import value_distribution

    p = rng.dirichlet(np.ones(12) * 0.3) * rng.uniform(0, noise) + np.eye(12)[value] * rng.uniform(0, 2)
    full = value_distribution([p / p.sum()])
    order = np.argsort(-full)[:8]
    return full, [(None if i == len(full) - 1 else int(i), float(full[i])) for i in order]


@hyp_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), width=st.sampled_from([2, 4, 8]), spread=st.sampled_from([0, 1000]))
def test_exact_confidence_with_a_field_pinned_by_two_sums_never_exceeds_the_true_posterior(seed, width, spread):
    """a + b == c and c == d (like II.2 = I.B4.LP): c is pinned twice, so its unlisted values are weighed exactly in
    one sum and bounded in the other. Against brute force; a and b are one box each to keep it small."""
    from ocr.decode import FormErrorModel, Var, solve
    from ocr.rules import LinearRule

    rng = np.random.default_rng(seed)
    truth = {"a": int(rng.integers(0, 10)), "b": int(rng.integers(0, 10))}
    truth["c"] = truth["d"] = truth["a"] + truth["b"]
    fulls, variables = {}, {}
    for k, v in truth.items():
        fulls[k], cands = _one_box_field(rng, v) if k in "ab" else _noisy_field(rng, v)
        variables[k] = Var(k, cands, fixed=False, full=fulls[k])
    rules = [LinearRule("sum", "R2", "hard", ("a", "b"), "==", ("c",)),
             LinearRule("copy", "R6", "hard", ("c",), "==", ("d",))]  # fmt: skip
    form_error = FormErrorModel(0.05, spread=spread)
    sol = solve(variables, rules, form_error=form_error, node_limit=20000, prune_ratio=1e-6, exact_width=width)
    assert sol.exact == 1
    small = np.append(np.arange(10, dtype=float), np.nan)
    big = np.append(np.arange(100, dtype=float), np.nan)
    a, b = small[:, None, None, None], small[None, :, None, None]
    c, d = big[None, None, :, None], big[None, None, None, :]
    with np.errstate(invalid="ignore"):
        w1 = np.where(a + b - c == 0, 1.0, form_error.sum_penalty(a + b - c))
        w2 = np.where(c - d == 0, 1.0, form_error.sum_penalty(c - d))
    joint = (fulls["a"][:, None, None, None] * fulls["b"][None, :, None, None] * fulls["c"][None, None, :, None]
             * fulls["d"][None, None, None, :] * w1 * w2)  # fmt: skip
    z = joint.sum()
    post = {k: joint.sum(axis=tuple(j for j in range(4) if j != i)) / z for i, k in enumerate("abcd")}
    for k in truth:
        v = sol.values[k]
        true_p = post[k][len(post[k]) - 1 if v is None else v]
        assert sol.confidence[k] <= true_p + 1e-9, (k, v, sol.confidence[k], true_p)


def test_a_date_part_that_two_allowed_days_share_is_asked_for_once():
    """Polling day 27-11-2024 or the day after: both ask the month for 11 and the year for 2024. Listed twice, a value
    would count its mass twice in the exact sums (seen on a synthetic page whose year was read badly: the day's
    confidence came out higher, the year's halved)."""
    from ocr.decode import Var, _implied_values
    from ocr.rules import DateRule

    date = DateRule(
        "R17_polling_date:date", "R17", "hard", ((0, "day"), (1, "month"), (2, "year")),
        ((27, 11, 2024), (28, 11, 2024)),
    )  # fmt: skip
    variables = {"day": Var("day", [(21, 0.6)], False), "month": Var("month", [(17, 0.5)], False),
                 "year": Var("year", [(9071, 0.2)], False)}  # fmt: skip
    assert _implied_values("day", [date], variables) == [27, 28]
    assert _implied_values("month", [date], variables) == [11]
    assert _implied_values("year", [date], variables) == [2024]


@hyp_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1), width=st.sampled_from([2, 4, 8]), spread=st.sampled_from([0, 1000]),
    month_noise=st.sampled_from([0.003, 1.0]),
)
def test_exact_date_confidence_never_exceeds_the_true_posterior(seed, width, spread, month_noise):
    """R17 over a day and a month (polling day 27-11 or the day after) with their ranges, against brute force. A
    clearly read month lets the day's unlisted values with the month listed carry the bound; a doubtful one puts
    the month R17 asks for (11, the same for both allowed days) among the listed values, once."""
    from ocr.decode import FormErrorModel, Var, solve
    from ocr.rules import DateRule, RangeRule

    rng = np.random.default_rng(seed)
    truth = {"day": int(rng.choice([27, 28, int(rng.integers(1, 32))])), "month": int(rng.choice([11, 11, 10]))}
    fulls, variables = {}, {}
    for k, v in truth.items():
        fulls[k], cands = _noisy_field(rng, v, noise=1.0 if k == "day" else month_noise)
        variables[k] = Var(k, cands, fixed=False, full=fulls[k])
    polling_day_or_next = ((27, 11, 2024), (28, 11, 2024))
    date = DateRule("R17_polling_date:date", "R17", "hard", ((0, "day"), (1, "month")), polling_day_or_next)
    rules = [date, RangeRule("R1_range:day", "R1", "hard", "day", 1, 31),
             RangeRule("R1_range:month", "R1", "hard", "month", 1, 12)]  # fmt: skip
    form_error = FormErrorModel(0.05, spread=spread)
    sol = solve(variables, rules, form_error=form_error, node_limit=20000, prune_ratio=1e-6, exact_width=width)
    assert sol.exact == 1
    vals = np.append(np.arange(100, dtype=float), np.nan)
    day, month = vals[:, None], vals[None, :]
    with np.errstate(invalid="ignore"):
        allowed = (month == 11) & ((day == 27) | (day == 28))
    date_w = np.where(allowed, 1.0, form_error.date_penalty(date, {0: day, 1: month}))
    w = form_error.weight
    joint = fulls["day"][:, None] * fulls["month"][None, :] * date_w
    joint = joint * _range_weight(vals, 1, 31, w)[:, None] * _range_weight(vals, 1, 12, w)[None, :]
    post = {"day": joint.sum(axis=1) / joint.sum(), "month": joint.sum(axis=0) / joint.sum()}
    for k in truth:
        v = sol.values[k]
        true_p = post[k][100 if v is None else v]
        assert sol.confidence[k] <= true_p + 1e-9, (k, v, sol.confidence[k], true_p)


def test_many_doubtful_linked_fields_are_accepted_when_the_sums_leave_no_doubt():
    """Seen on synthetic KWK page 1: a page read right, every sum holding, but a dozen fields each a little unsure.
    Enumeration could only cover a sliver of the joint readings and gave them confidence ~0; the exact sums do not."""
    ev = {f: sure(t) for f, t in PAGE1.items()}
    doubtful = ("I.A.L", "I.A.P", "I.A.LP", "I.B1.L", "I.B1.P", "I.B1.LP", "I.B4.L", "I.B4.P", "I.B4.LP", "II.2")
    for f in doubtful:
        text = PAGE1[f]
        alt = "7" if text[-1] == "1" else "1"
        ev[f] = sure(text[:-1]) + [box([(text[-1], 0.9), (alt, 0.08)])]
    res = decode("ppwp-2024-plano-p1", ev)
    enumerated = decode("ppwp-2024-plano-p1", ev, settings=Settings(decode={"exact_cost_limit": 0}))
    for f in doubtful:
        assert res.fields[f].value == value_of(tuple(PAGE1[f].replace("-", "_")))
        assert res.fields[f].confidence >= enumerated.fields[f].confidence - 1e-9
    accepted = [f for f in doubtful if res.fields[f].status == "accepted"]
    assert len(accepted) >= len(doubtful) - 2, {f: res.fields[f].confidence for f in doubtful}
    assert not any(enumerated.fields[f].status == "accepted" for f in doubtful[:3])


@pytest.mark.parametrize("value", [0, 5, 62, 105])
def test_best_spelling_is_the_likeliest_spelling_of_the_value(value):
    import itertools

    from ocr.decode import best_spelling

    rng = np.random.default_rng(value + 11)
    boxes = [rng.dirichlet(np.ones(12)) for _ in range(3)]
    spellings = [c for c in itertools.product(CLASSES, repeat=3) if value_of(c) == value]
    brute = max(spellings, key=lambda c: np.prod([boxes[k][CLASSES.index(ch)] for k, ch in enumerate(c)]))
    assert best_spelling(boxes, value) == brute


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "scopes",
    [
        [(0, 1, 2), (3, 4, 5), (0, 3, 6), (1, 4), (2, 5, 6), (6,)],  # loopy, like page 1's row and column sums
        [(0, 1), (1, 2), (3, 4), (5,)],  # three separate components (and a lone variable)
    ],
)
@pytest.mark.parametrize("plan_size", [0, 10**12])  # every bucket contracted pair by pair / in one joint loop
def test_bucket_elimination_marginals_match_a_direct_sum(seed, scopes, plan_size, monkeypatch):
    """Every marginal from the bucket tree equals the direct sum over all assignments, whichever way numpy contracts
    a bucket."""
    from ocr.decode import _elimination_order, _marginals

    monkeypatch.setattr("ocr.decode.EINSUM_PLAN_SIZE", plan_size)

    rng = np.random.default_rng(seed)
    sizes = [int(rng.integers(1, 5)) for _ in range(7)]
    unary = [rng.random((2, n)) for n in sizes]  # two rows: two sums sharing the tables
    tables = {sc: rng.random(tuple(sizes[v] for v in sc)) for sc in scopes}
    order, _ = _elimination_order(sizes, list(tables))
    got = _marginals(unary, tables, order)
    for row in range(2):
        ops: list = []
        for i, u in enumerate(unary):
            ops += [u[row], [i]]
        for sc, t in tables.items():
            ops += [t, list(sc)]
        for i in range(len(sizes)):
            assert np.allclose(got[i][row], np.einsum(*ops, [i]))


def test_best_spelling_of_no_number_is_the_likeliest_string_with_a_filler_after_a_digit():
    import itertools

    from ocr.decode import best_spelling

    rng = np.random.default_rng(5)
    boxes = [rng.dirichlet(np.ones(12)) for _ in range(3)]
    spellings = [c for c in itertools.product(CLASSES, repeat=3) if value_of(c) is None]
    brute = max(spellings, key=lambda c: np.prod([boxes[k][CLASSES.index(ch)] for k, ch in enumerate(c)]))
    assert best_spelling(boxes, None) == brute


@pytest.mark.parametrize("template_id", ["ppwp-2019-c1-l2", "ppwp-2024-plano-p1"])  # dates; sums, reserve fraction
def test_rule_tables_match_the_rules_own_verdicts(template_id):
    """The vectorised weight tables of the exact sums agree with each rule's `holds` and the form-error model's
    scalar penalty on every listed combination."""
    import itertools

    from ocr.decode import FormErrorModel, Var, _rule_table
    from ocr.rules import LinearRule, page_rules

    t = get_template(template_id)
    rules = page_rules(t, SETTINGS.profile(t.election))
    rng = np.random.default_rng(0)
    for r in rules:
        free = list(r.fields)
        values = {f: [None, 0, 4, 17, 2019, *map(int, rng.integers(0, 400, 3))] for f in free}
        variables = {f: Var(f, [(values[f][1], 0.5)], fixed=False) for f in free}
        for form_error in (FormErrorModel(0.05), FormErrorModel(0.05, spread=1000)):
            table = _rule_table(r, free, values, variables, form_error)
            # a broken sum weighs at most its likeliest discrepancy's weight; any other broken rule at most the weight
            is_sum = isinstance(r, LinearRule) and r.op == "=="
            most = float(form_error.sum_penalty(1.0)) if is_sum else form_error.weight
            for idx in itertools.product(*(range(len(values[f])) for f in free)):
                assignment = {f: values[f][i] for f, i in zip(free, idx)}
                expected = 1.0 if r.holds(assignment) else form_error.penalty(r, assignment)
                assert table[idx] == pytest.approx(expected, rel=1e-12), (r.name, idx)
                assert table[idx] <= most or table[idx] == 1.0


@pytest.mark.parametrize("spread", [1000, 40])
def test_unlisted_weight_is_the_exact_sum_over_unlisted_values(spread):
    """The convolution in `_unlisted_weight` against the plain sum: per setting of the other fields, each unlisted
    value of the field times what the sum weighs with it (1 where it holds), "no number" included."""
    from ocr.decode import FormErrorModel, Var, _unlisted_weight
    from ocr.rules import LinearRule

    rng = np.random.default_rng(spread)
    rule = LinearRule("sum", "R2", "hard", ("a", "b"), "==", ("c",))
    values = {"a": [None, 0, 3, 250, 999], "b": [7, 12, 990], "c": [40, 41, 600]}
    variables = {f: Var(f, [(vals[-1], 0.5)], fixed=False) for f, vals in values.items()}
    unlisted = rng.dirichlet(np.ones(1001) * 0.2)
    unlisted[values["c"]] = 0.0  # the listed values of c
    model = FormErrorModel(0.05, spread=spread)
    got = _unlisted_weight(rule, "c", ["a", "b", "c"], values, variables, unlisted, model)
    assert got.shape == (5, 3, 1)
    u = np.arange(1000, dtype=float)
    for i, a in enumerate(values["a"]):
        for j, b in enumerate(values["b"]):
            if a is None:
                expected = unlisted.sum() * float(model.sum_penalty(np.nan))
            else:
                d = a + b - u
                expected = float((unlisted[:1000] * np.where(d == 0, 1.0, model.sum_penalty(d))).sum())
                expected += unlisted[1000] * float(model.sum_penalty(np.nan))
            assert got[i, j, 0] == pytest.approx(expected, rel=1e-9, abs=1e-15), (a, b)
