"""Decode recorded pages again under the current settings, without reading any image: what a decode or routing
setting (a rule's form-error weight, the thresholds, the calibration) would have done to the same readings.

    C1OCR_DECODE__FORM_ERROR_WEIGHT=0.02 python -m bench.redecode --input fields-2027.jsonl --output redecoded.jsonl

The input is the field-record JSONL that `bench/reader_accuracy.py synthetic --records` writes; the output has the
same format, each field's value, confidence, status and reasons replaced by the new decode, so `bench/sweep.py` and
`bench.review_reasons` read it as they read a benchmark's records. Settings come from the environment, as in the
reader (`C1OCR_...`, see ocr/config.py).

The records keep each box's three likeliest classes, not all twelve, and no OMR or tally-row readings, so the
decode here is not exactly the pipeline's. Compare a setting against a re-decode with the shipped settings (it
prints both), never against the benchmark's own figures.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import typer

from ocr.calibration import FieldRecord, read_records
from ocr.config import Settings, get_settings
from ocr.decode import decode_page, evidence_from_record
from ocr.templates import get_template


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


def redecode(records: list[FieldRecord], settings: Settings) -> list[FieldRecord]:
    """The records of every templated page, each field's outcome replaced by a fresh decode under `settings`."""
    out: list[FieldRecord] = []
    for form_id, (template_id, recs) in recorded_pages(records).items():
        template = get_template(template_id)
        evidence = evidence_from_record({r.field: [b.model_dump() for b in r.boxes] for r in recs})
        page = decode_page(
            template, evidence, {}, profile=settings.profile(template.election), settings=settings, form_id=form_id
        )
        for r in recs:
            f = page.fields.get(r.field)
            if f is None:
                continue
            out.append(
                r.model_copy(
                    update={"value": f.value, "confidence": f.confidence, "status": f.status, "reasons": list(f.reasons)}
                )
            )
    return out


def _summary(records: list[FieldRecord]) -> str:
    n = len(records)
    accepted = [r for r in records if r.status == "accepted"]
    review = sum(r.status == "needs_review" for r in records)
    wrong = sum(r.value != r.true_value for r in accepted)
    return (
        f"{n} fields: accepted {len(accepted) / n:.2%}, review {review / n:.2%}, "
        f"unreadable {sum(r.status == 'unreadable' for r in records) / n:.2%}, wrong accepted {wrong}"
    )


def redecode_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL of field records (bench/reader_accuracy.py --records)."),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the re-decoded records (JSONL)"),
) -> None:
    records = read_records(input)
    settings = get_settings()
    shipped = redecode(records, Settings.model_construct())  # the defaults alone: no environment, no file
    fresh = redecode(records, settings)
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
