"""Why fields go to review, and which synthetic boxes are misread, from benchmark field records.

    python -m bench.review_reasons --input fields-2027.jsonl --corpus /work/bench-data/synth-eval

The input is the JSON-lines field-record format of `ocr/calibration.py` (`bench.reader_accuracy synthetic --records`).
With `--corpus` (the synthetic corpus the records were read from), each form's truth says whether the KPPS made a
deliberate arithmetic mistake on it, and each box how it was written (glyph source, a correction, a digit crossing
the box line), so the tables split by those. Reasons are grouped by kind (`rule_failed:R7_valid_sum` counts as
`rule_failed`); `rule_flagged` (a soft rule) is left out, as it holds no field.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ocr.calibration import read_records


def _kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def _box_style(box: dict) -> str:
    parts = [str(box.get("source") or "?")]
    if box.get("corrected"):
        parts.append(f"corrected ({box.get('correction')})")
    if box.get("crosses_border"):
        parts.append("crosses the line")
    return ", ".join(parts)


def review_reasons_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="JSONL of field records (see ocr/calibration.py)")],
    corpus: Annotated[Optional[Path], typer.Option(help="the synthetic corpus the records were read from")] = None,
) -> None:
    console = Console(width=150)
    records = read_records(input)
    if not records:
        raise SystemExit(f"{input}: no field records")
    truths: dict[str, dict] = {}
    if corpus is not None:
        for r in records:
            if r.form_id not in truths:
                path = corpus / f"{r.form_id}.json"
                truths[r.form_id] = json.loads(path.read_text()) if path.is_file() else {}

    def form_kind(form_id: str) -> str:
        form = (truths.get(form_id) or {}).get("form")
        if not form:
            return "all forms"
        return "consistent form" if form.get("consistent") else "form with a KPPS mistake"

    fields = Counter(form_kind(r.form_id) for r in records)
    review = Counter()
    for r in records:
        if r.status != "needs_review":
            continue
        kinds = tuple(sorted({_kind(x) for x in r.reasons} - {"rule_flagged"}))  # a soft rule does not hold a field
        right = "right" if r.value == r.true_value else "misread"
        review[(form_kind(r.form_id), right, " + ".join(kinds))] += 1
    t = Table(title=f"fields in review ({sum(review.values())} of {len(records)}), by the reasons that hold them")
    for col in ("form", "read", "reasons", "fields", "share of the form kind's fields"):
        t.add_column(col, justify="right" if col in ("fields", "share of the form kind's fields") else "left")
    for (kind, right, reasons), n in review.most_common():
        t.add_row(kind, right, reasons, str(n), f"{100 * n / fields[kind]:.2f}%")
    console.print(t)
    for kind, n in sorted(fields.items()):
        held = sum(v for (k, _, _), v in review.items() if k == kind)
        console.print(f"{kind}: {held} of {n} fields in review ({100 * held / n:.2f}%)")

    if not truths:
        return
    specs = {(form_id, f["id"]): f for form_id, truth in truths.items() for f in truth.get("fields", [])}
    cells, wrong = Counter(), Counter()
    for r in records:
        spec = specs.get((r.form_id, r.field))
        if spec is None or len(spec["boxes"]) != len(r.boxes):
            continue
        for box, truth in zip(r.boxes, spec["boxes"]):
            want = "_" if truth["char"] in "-_" else truth["char"]
            got = box.topk[0][0] if box.topk and not box.empty else "_"
            style = _box_style(truth)
            cells[style] += 1
            wrong[style] += ("_" if got in "-_" else got) != want
    t = Table(title="synthetic boxes misread by their own top class (before the rules; dash and empty alike), by how the box was written")
    for col in ("box", "boxes", "misread", "rate", "share of misreads"):
        t.add_column(col, justify="left" if col == "box" else "right")
    total = max(sum(wrong.values()), 1)
    for style, n in sorted(cells.items(), key=lambda kv: -wrong[kv[0]]):
        t.add_row(style, str(n), str(wrong[style]), f"{100 * wrong[style] / n:.2f}%", f"{100 * wrong[style] / total:.1f}%")
    console.print(t)


if __name__ == "__main__":
    typer.run(review_reasons_command)
