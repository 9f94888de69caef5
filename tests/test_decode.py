"""Field decode, filler rule, constrained decoding and routing (ocr/decode.py)."""

from __future__ import annotations

import numpy as np
import pytest

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


def decode(template_id: str, evidence, omr=None, form_id=None, settings=SETTINGS):
    t = get_template(template_id)
    return decode_page(t, evidence, omr or {}, profile=settings.profile(t.election), settings=settings, form_id=form_id)


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
