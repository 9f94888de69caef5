"""Accepted-field error against review rate over the accept threshold, from benchmark field records.

    python bench/sweep.py --input bench/out/fields.jsonl [--thresholds 0.9,0.95,0.98,0.99] [--corrected 0.98,0.995]

The input is the JSON-lines field-record format of `ocr/calibration.py` (one line per field read, with the truth).
Each field is re-decided on its recorded confidence: accepted at threshold t when it has a value, confidence >= t,
and nothing but low confidence held it back (failed rules and OMR disagreement stay in review whatever the threshold;
a correction by the rules also needs `routing.accept_corrected_confidence`). Pick the threshold from this curve and
set it as `routing.accept_confidence` (C1OCR_ROUTING__ACCEPT_CONFIDENCE); `--corrected` prints one curve per value of
`routing.accept_corrected_confidence`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ocr.calibration import DEFAULT_THRESHOLDS, read_records, sweep_curve
from ocr.config import get_settings


def sweep_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL of field records (see ocr/calibration.py)."),
    thresholds: str = typer.Option(",".join(map(str, DEFAULT_THRESHOLDS)), help="Comma-separated thresholds."),
    corrected: str = typer.Option(
        "", help="Comma-separated values of routing.accept_corrected_confidence: one curve each (default: the "
        "configured value)."
    ),
) -> None:
    records = read_records(input)
    if not records:
        raise SystemExit(f"{input}: no field records")
    ts = [float(t) for t in thresholds.split(",") if t.strip()]
    cs = [float(c) for c in corrected.split(",") if c.strip()] or [get_settings().routing.accept_corrected_confidence]
    forms = len({r.form_id for r in records})
    print(f"{len(records)} fields from {forms} forms ({input})")
    for c in cs:
        print(f"corrections by the rules accepted from confidence {c:g}")
        print(f"{'threshold':>9} {'accepted':>9} {'review':>8} {'unreadable':>10} {'acc.error':>10} {'wrong':>6}")
        for r in sweep_curve(records, ts, corrected_threshold=c):
            print(
                f"{r.threshold:>9g} {r.accepted:>9.2%} {r.review:>8.2%} {r.unreadable:>10.2%} "
                f"{r.accepted_error:>10.4%} {r.wrong_accepted:>6d}"
            )


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(sweep_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
