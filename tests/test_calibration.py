"""Temperature calibration, the field-record JSONL, and the error-vs-review sweep (ocr/calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ocr.calibration import (
    Calibration,
    FieldRecord,
    apply_temperature,
    calibrate,
    calibrate_command,
    load_calibration,
    read_records,
    split_by_form,
    sweep_curve,
)

DIGITS = "0123456789"


def overconfident_records(n_forms: int, seed: int, p_wrong: float = 0.08) -> list[dict]:
    """A synthetic over-confident reader: 0.99 on its top class, right only (1 - p_wrong) of the time.

    When wrong, the truth is its runner-up, as in the 2024 misreads.
    """
    rng = np.random.default_rng(seed)
    out = []
    for form in range(n_forms):
        for field in range(6):
            value = int(rng.integers(0, 300))
            text = f"{value:>3}".replace(" ", "X")
            boxes = []
            for ch in text:
                wrong = rng.random() < p_wrong
                top = rng.choice([c for c in DIGITS + "X" if c != ch]) if wrong else ch
                runner = ch if wrong else rng.choice([c for c in DIGITS + "X" if c != ch])
                boxes.append({"topk": [[str(top), 0.99], [str(runner), 0.008]], "empty": False})
            read = "".join(b["topk"][0][0] for b in boxes)
            from ocr.decode import value_of

            rv = value_of(tuple(read))
            out.append(
                {"form_id": f"f{seed}-{form}", "template": "t", "field": f"F{field}", "boxes": boxes, "true_text": text,
                 "true_value": value, "value": rv, "confidence": 0.99 ** 3, "status": "accepted", "reasons": []}
            )  # fmt: skip
    return out


def test_temperature_softens_probabilities_and_keeps_their_order():
    p = np.array([0.9, 0.08, 0.02])
    q = apply_temperature(p, 2.0)
    assert q.sum() == pytest.approx(1.0) and list(np.argsort(q)) == list(np.argsort(p)) and q[0] < p[0]
    assert apply_temperature(p, 1.0) is p


def test_split_keeps_each_form_on_one_side_and_is_deterministic():
    recs = [FieldRecord.model_validate(r) for r in overconfident_records(60, 1)]
    train, test = split_by_form(recs, 0.3)
    assert not ({r.form_id for r in train} & {r.form_id for r in test})
    assert 0.1 < len(test) / len(recs) < 0.5
    assert [r.form_id for r in split_by_form(recs, 0.3)[1]] == [r.form_id for r in test]


def test_fit_on_an_overconfident_reader_raises_temperature_and_improves_held_out_scores():
    recs = [FieldRecord.model_validate(r) for r in overconfident_records(150, 2)]
    cal = calibrate(recs, holdout=0.3, threshold=0.95)
    assert cal.temperature > 1.2  # the reader claims 0.99 but is right about 92% of the time
    before, after = cal.report["before"], cal.report["after"]
    assert after["box_nll"] < before["box_nll"]
    assert after["field_ece"] < before["field_ece"]
    # before calibration every field clears 0.95, misreads included; after, the threshold holds them back
    assert before["accepted_share"] == 1.0 and before["accepted_error"] > 0.1
    assert after["accepted_share"] < before["accepted_share"]


def test_a_well_calibrated_reader_keeps_temperature_near_one():
    rng = np.random.default_rng(3)
    recs = []
    for form in range(200):
        boxes, text = [], ""
        for _ in range(3):
            ch = str(rng.integers(0, 10))
            p = float(rng.uniform(0.6, 0.99))
            wrong = rng.random() > p  # right exactly as often as claimed
            other = str((int(ch) + 1) % 10)
            boxes.append({"topk": [[other if wrong else ch, p], [ch if wrong else other, 1 - p]]})
            text += ch
        recs.append(FieldRecord.model_validate(
            {"form_id": f"w{form}", "field": "F", "boxes": boxes, "true_text": text, "true_value": int(text)}))  # fmt: skip
    cal = calibrate(recs, holdout=0.3)
    assert 0.8 < cal.temperature < 1.25


def test_sweep_trades_review_for_accepted_error():
    recs = [
        FieldRecord(form_id="a", field="1", boxes=[], true_value=5, value=5, confidence=0.999),
        FieldRecord(form_id="a", field="2", boxes=[], true_value=5, value=8, confidence=0.95),  # a confident misread
        FieldRecord(form_id="b", field="3", boxes=[], true_value=7, value=7, confidence=0.9, reasons=["low_confidence"]),
        FieldRecord(form_id="b", field="4", boxes=[], true_value=7, value=7, confidence=0.999,
                    reasons=["rule_failed:R3_B4_LP"]),  # blocked by a rule at any threshold
        FieldRecord(form_id="c", field="5", boxes=[], true_value=None, value=None, confidence=0.0),
    ]  # fmt: skip
    low, high = sweep_curve(recs, [0.9, 0.99])
    assert (low.accepted, low.wrong_accepted, low.unreadable) == (3 / 5, 1, 1 / 5)
    assert low.accepted_error == pytest.approx(1 / 3)
    assert (high.accepted, high.review, high.wrong_accepted, high.accepted_error) == (1 / 5, 3 / 5, 0, 0.0)


def test_sweep_accepts_a_correction_by_the_rules_only_at_the_stricter_threshold():
    rec = FieldRecord(form_id="a", field="1", boxes=[], true_value=5, value=5, confidence=0.99,
                      reasons=["corrected_by_rules"])  # fmt: skip
    (row,) = sweep_curve([rec], [0.98], corrected_threshold=0.995)
    assert row.accepted == 0.0 and row.review == 1.0
    (row,) = sweep_curve([rec], [0.98], corrected_threshold=0.99)
    assert row.accepted == 1.0


def test_calibrate_command_writes_a_file_the_reader_loads(tmp_path, capsys):
    src = tmp_path / "fields.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in overconfident_records(80, 4)))
    out = tmp_path / "calibration.json"
    calibrate_command(input=src, output=out, holdout=0.3, threshold=0.98)
    cal = Calibration.model_validate_json(out.read_text())
    assert cal.temperature > 1.0 and cal.report["test_fields"] > 0
    assert load_calibration(str(out)).temperature == cal.temperature
    assert "temperature" in capsys.readouterr().out


def test_bad_jsonl_line_names_the_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps(overconfident_records(1, 5)[0]) + "\n{\"form_id\": 1}\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_records(src)


def test_shipped_calibration_file_is_valid():
    cal = load_calibration()
    assert cal.method == "temperature" and cal.temperature > 0


def test_calibrated_decode_uses_the_temperature():
    from ocr.config import Settings
    from ocr.decode import decode_page, evidence_from_record
    from ocr.templates import get_template

    s = Settings()
    t = get_template("ppwp-2024-plano-p2")
    ev = evidence_from_record({"IV.1": "X62", "IV.2": "105", "IV.3": "X38"}, sure_p=0.999)
    sharp = decode_page(t, ev, {}, profile=s.profile(t.election), settings=s, calibration=Calibration(temperature=1.0))
    soft = decode_page(t, ev, {}, profile=s.profile(t.election), settings=s, calibration=Calibration(temperature=3.0))
    assert sharp.fields["IV.1"].status == "accepted"
    assert soft.fields["IV.1"].confidence < sharp.fields["IV.1"].confidence
    assert soft.fields["IV.1"].status == "needs_review"


def test_bench_sweep_prints_the_curve(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_sweep", Path(__file__).parents[1] / "bench" / "sweep.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "fields.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in overconfident_records(20, 6)))
    with pytest.raises(SystemExit) as e:
        mod.main(["--input", str(src), "--thresholds", "0.9,0.99"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "120 fields from 20 forms" in out and out.count("%") >= 8
    with pytest.raises(SystemExit) as e:
        mod.main(["--input", str(src), "--thresholds", "0.9,0.99", "--corrected", "0.98,0.995"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.count("corrections by the rules accepted from confidence") == 2 and out.count("%") >= 16


def test_bench_decode_speed_decodes_every_recorded_page(tmp_path, capsys):
    from bench.decode_speed import main

    def rec(form_id: str, field: str, text: str) -> dict:
        boxes = [{"topk": [[c, 0.97], ["7" if c != "7" else "1", 0.02]], "empty": c == "_"} for c in text]
        return {"form_id": form_id, "template": "ppwp-2024-plano-p2", "field": field, "boxes": boxes,
                "true_value": None}  # fmt: skip

    lines = [rec(f"page{i}", f, t) for i in range(3) for f, t in (("IV.1", "X62"), ("IV.2", "105"), ("IV.3", "X38"))]
    lines.append({**rec("untemplated", "F1", "123"), "template": ""})  # no template: cannot be decoded, skipped
    src = tmp_path / "fields.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    with pytest.raises(SystemExit) as e:
        main(["--input", str(src), "--repeat", "2", "--slowest", "3"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "3 pages from" in out and "p50" in out and "p95" in out
    assert sum(f"page{i}" in out for i in range(3)) == 3  # the slowest-pages list names decoded pages


def test_bench_redecode_decodes_recorded_pages_again_under_the_current_settings(tmp_path, capsys, monkeypatch):
    from bench.redecode import main
    from ocr.config import Settings

    def rec(form_id: str, field: str, text: str, value: int) -> dict:
        boxes = [{"topk": [[c, 0.97], ["7" if c != "7" else "1", 0.02]], "empty": False} for c in text]
        return {"form_id": form_id, "template": "ppwp-2024-plano-p2", "field": field, "boxes": boxes,
                "true_text": text, "true_value": value, "value": None, "confidence": 0.0, "status": "",
                "reasons": []}  # fmt: skip

    lines = [rec(f"page{i}", f, t, v) for i in range(2) for f, t, v in (("IV.1", "X62", 62), ("IV.2", "105", 105))]
    lines.append({**rec("untemplated", "F1", "123", 123), "template": ""})  # no template: cannot be decoded, left out
    src, out = tmp_path / "fields.jsonl", tmp_path / "redecoded.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def run() -> list[FieldRecord]:
        with pytest.raises(SystemExit) as e:
            main(["--input", str(src), "--output", str(out)])
        assert e.value.code == 0
        return read_records(out)

    shipped = run()
    assert [(r.form_id, r.field) for r in shipped] == [(f"page{i}", f) for i in range(2) for f in ("IV.1", "IV.2")]
    # three boxes at 0.97 each: the values are read, but under the shipped 0.98 threshold they go to review
    assert [r.value for r in shipped] == [62, 105, 62, 105]
    assert all(r.status == "needs_review" and "low_confidence" in r.reasons for r in shipped)
    assert "shipped settings: 4 fields: accepted 0.00%" in capsys.readouterr().out

    monkeypatch.setenv("C1OCR_ROUTING__ACCEPT_CONFIDENCE", "0.8")
    monkeypatch.setattr("bench.redecode.get_settings", lambda: Settings())  # the process-wide settings are cached
    lowered = run()
    assert all(r.status == "accepted" and r.reasons == [] for r in lowered)
    printed = capsys.readouterr().out
    assert "shipped settings: 4 fields: accepted 0.00%" in printed  # the baseline ignores the environment
    assert "these settings:   4 fields: accepted 100.00%" in printed and "wrong accepted 0" in printed


def test_records_from_a_reading_keep_the_labelled_value_and_undo_the_temperature():
    """A real form's label may give a field's value when its boxes are not all legible ("???"): the record keeps it."""
    from ocr.calibration import records_from_reading
    from ocr.results import PageReading

    def box(i: int, char: str) -> dict:
        return {"index": i, "char": char, "topk": [{"char": char, "p": 0.9}, {"char": "7", "p": 0.1}], "ink": 0.2}

    page = PageReading.model_validate(
        {"image": "x.jpg", "status": "read", "engine": "ensemble", "template": "ppwp-2019-c1-l2", "fields": {
            f: {"id": f, "label": f, "value": 14, "text": "X14", "confidence": 0.9, "status": "needs_review",
                "reasons": ["low_confidence"], "boxes": [box(i, c) for i, c in enumerate("X14")]}
            for f in ("B_jumlah_suara_tidak_sah", "unlabelled")}}  # fmt: skip
    )
    recs = records_from_reading(page, {"B_jumlah_suara_tidak_sah": ("???", 14)}, "test11", temperature=2.0)
    assert len(recs) == 1  # a field without a label gives no record
    r = FieldRecord.model_validate(recs[0])
    assert (r.form_id, r.template, r.true_text, r.true_value, r.value, r.status) == (
        "test11", "ppwp-2019-c1-l2", "???", 14, 14, "needs_review"
    )
    # the reading's probabilities were calibrated at T = 2; the record holds the raw ones (sharper)
    assert r.boxes[1].topk[0][0] == "1" and r.boxes[1].topk[0][1] > 0.9


def test_bench_redecode_tps_decodes_the_pages_of_one_tps_together(tmp_path, capsys):
    """V.A on page 3 is unsure alone; with page 2 of the same TPS, R7 (V.A = IV.1 + IV.2 + IV.3) settles it."""
    from bench.redecode import main

    def rec(template: str, index: str, field: str, boxes: list[list], value: int) -> dict:
        return {"form_id": f"{template}-s7-{index}", "template": template, "field": field,
                "boxes": [{"topk": topk, "empty": False} for topk in boxes], "true_value": value}  # fmt: skip

    sure = lambda c: [[c, 0.9999]]  # noqa: E731
    lines = [
        rec("ppwp-2024-plano-p2", "00001", "IV.1", [sure("X"), sure("6"), sure("2")], 62),
        rec("ppwp-2024-plano-p2", "00001", "IV.2", [sure("1"), sure("0"), sure("5")], 105),
        rec("ppwp-2024-plano-p2", "00001", "IV.3", [sure("X"), sure("3"), sure("8")], 38),
        rec("ppwp-2024-plano-p3", "00001", "V.A", [sure("2"), [["0", 0.75], ["6", 0.25]], sure("5")], 205),
        # the same V.A on page 3 of another TPS, whose page 2 is not in: nothing to settle it
        rec("ppwp-2024-plano-p3", "00002", "V.A", [sure("2"), [["0", 0.75], ["6", 0.25]], sure("5")], 205),
    ]
    src = tmp_path / "fields.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))

    def va(*flags: str) -> dict[str, FieldRecord]:
        out = tmp_path / "out.jsonl"
        with pytest.raises(SystemExit) as e:
            main(["--input", str(src), "--output", str(out), *flags])
        assert e.value.code == 0
        return {r.form_id: r for r in read_records(out) if r.field == "V.A"}

    alone = va()
    assert all(r.value == 205 and r.status == "needs_review" for r in alone.values())
    together = va("--tps")
    assert together["ppwp-2024-plano-p3-s7-00001"].status == "accepted"
    assert together["ppwp-2024-plano-p3-s7-00001"].confidence > alone["ppwp-2024-plano-p3-s7-00001"].confidence
    assert together["ppwp-2024-plano-p3-s7-00002"].status == "needs_review"
    assert "confidence NLL" in capsys.readouterr().out


def test_bench_review_reasons_splits_review_by_form_kind_and_box_style(tmp_path, capsys):
    from bench.review_reasons import review_reasons_command

    def rec(form: str, field: str, text: str, value: int, read: int, status: str, reasons: list[str]) -> dict:
        boxes = [{"topk": [["7" if (c, read) == ("1", 7) else c, 0.9]], "empty": False} for c in text]
        return {"form_id": form, "template": "t", "field": field, "boxes": boxes, "true_text": text,
                "true_value": value, "value": read, "confidence": 0.9, "status": status,
                "reasons": reasons}  # fmt: skip

    lines = [
        rec("ok", "A", "X1", 1, 7, "needs_review", ["low_confidence"]),  # misread: its box "1" read as 7
        rec("ok", "B", "X2", 2, 2, "accepted", []),
        rec("bad", "A", "X3", 3, 3, "needs_review", ["form_inconsistent", "rule_failed:R7_valid_sum"]),
        rec("bad", "B", "X4", 4, 4, "needs_review", ["rule_failed:R7_valid_sum", "rule_flagged:R12"]),
    ]
    src = tmp_path / "fields.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in lines))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for form, consistent in (("ok", True), ("bad", False)):
        boxes = [{"char": "X", "source": "stroke"}, {"char": "?", "source": "mnist", "corrected": True,
                                                     "correction": "overwrite"}]  # fmt: skip
        fields = [{"id": f, "boxes": [boxes[0], {**boxes[1], "char": c}]} for f, c in
                  (("A", "1" if form == "ok" else "3"), ("B", "2" if form == "ok" else "4"))]  # fmt: skip
        (corpus / f"{form}.json").write_text(json.dumps({"form": {"consistent": consistent}, "fields": fields}))

    review_reasons_command(input=src, corpus=corpus)
    out = capsys.readouterr().out
    assert "consistent form: 1 of 2 fields in review (50.00%)" in out
    assert "form with a KPPS mistake: 2 of 2 fields in review (100.00%)" in out
    assert "form_inconsistent + rule_failed" in out  # reasons grouped by kind; the soft rule_flagged holds nothing
    assert "rule_flagged" not in out
    # 8 boxes: the 4 X fillers read right; of the 4 overwritten digits, one ("1" read as 7) is misread
    assert "mnist, corrected (overwrite)" in out and "25.00%" in out
