"""The accuracy benchmark's tally (bench/reader_accuracy.py): what it counts as accepted, wrong and reviewed."""

from __future__ import annotations

from bench.reader_accuracy import Tally


def _field(value, status, reasons, text):
    return {"value": value, "status": status, "reasons": reasons, "text": text}


def test_the_audit_sample_is_counted_apart_from_the_fields_held_for_doubt():
    t = Tally()
    truth = {"a": ("012", 12), "b": ("X05", 5), "c": ("100", 100), "d": ("007", 7)}
    audited = {"fields": {k: _field(v, "needs_review", ["audit_sample"], s) for k, (s, v) in truth.items()},
               "page_status": "needs_review"}  # fmt: skip
    assert t.add_fields(truth, audited) is True
    doubtful = {
        "fields": {
            "a": _field(12, "accepted", [], "012"),
            "b": _field(8, "accepted", [], "X08"),  # a wrong accepted field
            "c": _field(100, "needs_review", ["low_confidence"], "100"),
            "d": _field(None, "unreadable", ["filler_misplaced"], "0X7"),
        },
        "page_status": "needs_review",
    }
    assert t.add_fields(truth, doubtful) is False
    assert (t.fields, t.accepted, t.accepted_wrong, t.review, t.audit, t.field_unreadable) == (8, 2, 1, 5, 4, 1)
    assert t.pages_review == 2
