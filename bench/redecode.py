"""Decode recorded pages again under the current settings, without reading any image: what a decode or routing
setting (a rule's form-error weight, the thresholds, the calibration) would have done to the same readings.

    C1OCR_DECODE__FORM_ERROR_WEIGHT=0.02 python -m bench.redecode --input fields-2027.jsonl --output redecoded.jsonl

The input is the field-record JSONL that `bench/reader_accuracy.py synthetic|real --records` writes; the output has the
same format, each field's value, confidence, status and reasons replaced by the new decode, so `bench/sweep.py` and
`bench.review_reasons` read it as they read a benchmark's records. Settings come from the environment, as in the
reader (`C1OCR_...`, see ocr/config.py).

With `--tps` the pages of one TPS are decoded together, as `ocr.tps.read_tps` does once a form set's pages are in:
each page's rules plus the form set's cross-page constraints. A synthetic corpus draws one TPS tally per index, so
the pages `<template>-s<seed>-<index>` of one form set with the same index are one TPS; any other form id is a TPS of
its own.

Besides the shares of fields accepted and in review, the summary gives how well the field confidences predict a
right value (a value equal to the truth): their negative log-likelihood and Brier score, over the fields with a value.

The records keep each box's three likeliest classes, not all twelve, and no OMR or tally-row readings, so the
decode here is not exactly the pipeline's. Compare a setting against a re-decode with the shipped settings (it
prints both), never against the benchmark's own figures.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import typer

from ocr.calibration import FieldRecord, read_records
from ocr.config import Settings, get_settings
from ocr.decode import BoxEvidence, decode_fields, decode_page, evidence_from_record
from ocr.results import FieldReading
from ocr.templates import get_form_set, get_template
from ocr.tps import form_set_inputs


def recorded_pages(records: list[FieldRecord]) -> dict[str, tuple[str, list[FieldRecord]]]:
    """Per form id: its template id and its field records, in file order; forms without a template are left out."""
    pages: dict[str, tuple[str, list[FieldRecord]]] = {}
    grouped: dict[str, list[FieldRecord]] = defaultdict(list)
    for r in records:
        grouped[r.form_id].append(r)
    for form_id, recs in grouped.items():
        if recs[0].template:
            pages[form_id] = (recs[0].template, recs)
    return pages


def page_evidence(recs: list[FieldRecord]) -> dict[str, list[BoxEvidence]]:
    """The box evidence of one recorded page, per field id, as the decoder takes it."""
    return evidence_from_record({r.field: [b.model_dump() for b in r.boxes] for r in recs})


def _outcome(r: FieldRecord, f: FieldReading | None) -> FieldRecord | None:
    if f is None:
        return None
    return r.model_copy(
        update={"value": f.value, "confidence": f.confidence, "status": f.status, "reasons": list(f.reasons)}
    )


def redecode(records: list[FieldRecord], settings: Settings) -> list[FieldRecord]:
    """The records of every templated page, each field's outcome replaced by a fresh decode under `settings`."""
    out: list[FieldRecord] = []
    for form_id, (template_id, recs) in recorded_pages(records).items():
        template = get_template(template_id)
        evidence = page_evidence(recs)
        page = decode_page(
            template, evidence, {}, profile=settings.profile(template.election), settings=settings, form_id=form_id
        )
        out.extend(o for r in recs if (o := _outcome(r, page.fields.get(r.field))) is not None)
    return out


def redecode_tps(records: list[FieldRecord], settings: Settings) -> list[FieldRecord]:
    """As `redecode`, each TPS's pages decoded together (see the module docstring for what makes a TPS)."""
    tps: dict[tuple[str, str], dict[int, tuple[str, list[FieldRecord]]]] = defaultdict(dict)
    for form_id, (template_id, recs) in recorded_pages(records).items():
        template = get_template(template_id)
        suffix = form_id[len(template_id):] if form_id.startswith(template_id + "-s") else form_id
        tps[(template.form_set, suffix)][template.page] = (form_id, recs)
    out: list[FieldRecord] = []
    for (form_set_id, suffix), pages in tps.items():
        form_set = get_form_set(form_set_id)
        evidence = {page: page_evidence(recs) for page, (_, recs) in pages.items()}
        inputs, rules = form_set_inputs(form_set, evidence, {}, settings.profile(form_set.election))
        decoded = decode_fields(inputs, rules, settings=settings, form_id=f"{form_set_id}{suffix}")
        for page, (_, recs) in pages.items():
            out.extend(o for r in recs if (o := _outcome(r, decoded.fields.get(f"{page}:{r.field}"))) is not None)
    return out


def _summary(records: list[FieldRecord]) -> str:
    n = len(records)
    accepted = [r for r in records if r.status == "accepted"]
    review = sum(r.status == "needs_review" for r in records)
    wrong = sum(r.value != r.true_value for r in accepted)
    valued = [r for r in records if r.value is not None]
    conf = np.clip([r.confidence for r in valued], 1e-6, 1 - 1e-6)
    right = np.array([r.value == r.true_value for r in valued])
    nll = float(-np.mean(np.where(right, np.log(conf), np.log1p(-conf)))) if valued else float("nan")
    brier = float(np.mean((conf - right) ** 2)) if valued else float("nan")
    return (
        f"{n} fields: accepted {len(accepted) / n:.2%}, review {review / n:.2%}, "
        f"unreadable {sum(r.status == 'unreadable' for r in records) / n:.2%}, wrong accepted {wrong}; "
        f"confidence NLL {nll:.4f}, Brier {brier:.4f}"
    )


def redecode_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL of field records (bench.reader_accuracy --records)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the re-decoded records (JSONL)"),
    tps: bool = typer.Option(False, "--tps", help="decode the pages of one TPS together (read_tps)"),
) -> None:
    records = read_records(input)
    settings = get_settings()
    run = redecode_tps if tps else redecode
    shipped = run(records, Settings.model_construct())  # the defaults alone: no environment, no file
    fresh = run(records, settings)
    if not fresh:
        raise SystemExit(f"{input}: no pages with a template in the records")
    with output.open("w") as fh:
        for r in fresh:
            fh.write(json.dumps(r.model_dump()) + "\n")
    print(f"re-decoded, shipped settings: {_summary(shipped)}")
    print(f"re-decoded, these settings:   {_summary(fresh)}")
    print(f"wrote {len(fresh)} records to {output}")


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(redecode_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
