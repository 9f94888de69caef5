"""Reader accuracy and speed benchmark (issue 3), plus the trust layer's routing figures (issue 4).

    # a fixed-seed synthetic corpus (made once with `c1ocr synth`), every engine:
    python -m bench.reader_accuracy synthetic --corpus corpus/ --engine ensemble --engine cnn --engine tesseract
    # the real labelled forms (never trained on):
    python -m bench.reader_accuracy real --data ../shared/data --engine ensemble --engine cnn --engine tesseract
    # speed on 12 MP photos, one core:
    python -m bench.reader_accuracy speed --corpus corpus-12mp/

Metrics (per engine): cell accuracy (the 12 reader classes: a dash and an empty box are one class), strict text
accuracy (dash vs empty told apart), field exact-read rate (value), form exact-read rate (every field of a page),
unreadable rate (usable photos refused), detection of unusable photos and wrong pages, the confusion between fillers
(X, dash, empty) and digits, and, after the trust layer, accepted-field error and review rates (the fields held for
doubt apart from the audit sample of fully accepted pages, whose size is the operator's rate). `--records FILE`
writes one field record per line (ocr.calibration.FieldRecord) for `c1ocr calibrate` and bench/sweep.py.
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True)
console = Console()

FILLERS = {"X", "-", "_"}
REAL_FORMS = {
    "C1-PPWP 2019 lembar 2 (scan)": "ppwp-2019-c1-l2",
    "Model C1 PPWP 2014 lampiran 1 (scan)": "ppwp-2014-c1-lampiran1",
}


def _init_worker() -> None:
    os.environ["OMP_THREAD_LIMIT"] = "1"
    import cv2

    cv2.setNumThreads(1)


def _cls(c: str) -> str:
    """The reader's 12 classes: a dash filler and an empty box are one class."""
    return "_" if c in ("-", "_") else c


@dataclass
class Tally:
    pages: int = 0
    usable: int = 0
    usable_read: int = 0
    unusable: int = 0
    unusable_caught: int = 0
    unusable_reason_right: int = 0
    wrong_page: int = 0
    wrong_page_caught: int = 0
    cells: int = 0
    cells_right: int = 0
    cells_strict_right: int = 0
    fields: int = 0
    fields_right: int = 0
    forms_read: int = 0
    forms_right: int = 0
    accepted: int = 0
    accepted_wrong: int = 0
    review: int = 0
    audit: int = 0  # of `review`: fields of fully accepted pages drawn for the audit sample, held for no doubt
    field_unreadable: int = 0
    pages_accepted: int = 0  # read pages whose every field was accepted
    pages_review: int = 0  # read pages with at least one field for a person
    filler_as_digit: int = 0
    digit_as_filler: int = 0
    digit_as_other_digit: int = 0
    confusion: Counter = field(default_factory=Counter)
    totals_ms: list = field(default_factory=list)
    read_ms: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    unlabelled: list = field(default_factory=list)  # fields whose label is "?" (illegible): what was read

    def add_fields(self, truth: dict[str, tuple[str, int | None]], reading: dict) -> bool:
        """truth: field id -> (box chars, value). Returns whether every field was read exactly."""
        all_right = True
        for fid, (ttext, tval) in truth.items():
            fr = reading["fields"].get(fid)
            if fr is None:
                continue
            if _unlabelled(ttext, tval):
                # labelled illegible / cut off: no truth to score against; listed, not counted right or wrong
                self.unlabelled.append(f"{fid}: read {fr['text']} = {fr['value']} ({fr['status']})")
                continue
            ptext = fr["text"]
            for tc, pc in zip(ttext, ptext):
                if tc == "?":
                    continue
                self.cells += 1
                self.cells_right += _cls(tc) == _cls(pc)
                self.cells_strict_right += tc == pc
                if _cls(tc) != _cls(pc):
                    self.confusion[(tc, pc)] += 1
                    if tc in FILLERS and pc not in FILLERS:
                        self.filler_as_digit += 1
                    elif tc not in FILLERS and pc in FILLERS:
                        self.digit_as_filler += 1
                    elif tc not in FILLERS and pc not in FILLERS:
                        self.digit_as_other_digit += 1
            self.fields += 1
            ok = tval is not None and fr["value"] == tval
            self.fields_right += ok
            all_right &= ok
            st = fr["status"]
            if st == "accepted":
                self.accepted += 1
                self.accepted_wrong += not ok
            elif st == "needs_review":
                self.review += 1
                self.audit += fr.get("reasons") == ["audit_sample"]
            else:
                self.field_unreadable += 1
        if reading.get("page_status") == "accepted":
            self.pages_accepted += 1
        elif reading.get("page_status") == "needs_review":
            self.pages_review += 1
        return all_right


def _unlabelled(text: str, value: int | None) -> bool:
    """A field labelled illegible or cut off ("?" in every box, no value): nothing to score against."""
    return value is None and set(text) == {"?"}


def _pct(a: int, b: int) -> str:
    return f"{100.0 * a / b:.2f}% ({a}/{b})" if b else "n/a"


def _report(title: str, tallies: dict[str, Tally], out_json: Optional[Path]) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for eng in tallies:
        table.add_column(eng)
    rows = [
        ("pages", lambda t: str(t.pages)),
        ("usable pages read", lambda t: _pct(t.usable_read, t.usable)),
        ("unreadable rate (usable refused)", lambda t: _pct(t.usable - t.usable_read, t.usable)),
        ("unusable caught", lambda t: _pct(t.unusable_caught, t.unusable)),
        ("unusable, right reason", lambda t: _pct(t.unusable_reason_right, t.unusable)),
        ("wrong page caught", lambda t: _pct(t.wrong_page_caught, t.wrong_page)),
        ("cell accuracy (12 classes)", lambda t: _pct(t.cells_right, t.cells)),
        ("cell accuracy (strict - vs _)", lambda t: _pct(t.cells_strict_right, t.cells)),
        ("field exact-read", lambda t: _pct(t.fields_right, t.fields)),
        ("form exact-read", lambda t: _pct(t.forms_right, t.forms_read)),
        ("filler read as digit", lambda t: str(t.filler_as_digit)),
        ("digit read as filler", lambda t: str(t.digit_as_filler)),
        ("digit read as another digit", lambda t: str(t.digit_as_other_digit)),
        ("fields accepted", lambda t: _pct(t.accepted, t.fields)),
        ("accepted-field error", lambda t: _pct(t.accepted_wrong, t.accepted)),
        ("fields to review", lambda t: _pct(t.review, t.fields)),
        ("  of which the audit sample", lambda t: _pct(t.audit, t.fields)),
        ("  held for doubt (all but the audit)", lambda t: _pct(t.review - t.audit, t.fields)),
        ("fields unreadable", lambda t: _pct(t.field_unreadable, t.fields)),
        ("read pages accepted whole", lambda t: _pct(t.pages_accepted, t.usable_read)),
        ("read pages sent to review", lambda t: _pct(t.pages_review, t.usable_read)),
        ("page p50 / p95 ms", lambda t: _p(t.totals_ms)),
        ("read-stage p50 ms", lambda t: _p(t.read_ms, only50=True)),
    ]
    for name, fn in rows:
        table.add_row(name, *[fn(t) for t in tallies.values()])
    console.print(table)
    for eng, t in tallies.items():
        if t.confusion:
            top = ", ".join(f"{a}->{b}: {n}" for (a, b), n in t.confusion.most_common(12))
            console.print(f"[bold]{eng}[/] most common cell confusions: {top}")
        for e in t.errors[:10]:
            console.print(f"[red]{eng} error[/] {e}")
        for u in t.unlabelled:
            console.print(f"{eng} field labelled illegible (not scored): {u}")
    if out_json:
        data = {eng: {k: v for k, v in t.__dict__.items() if k not in ("confusion",)} | {
            "confusion": {f"{a}->{b}": n for (a, b), n in t.confusion.items()}} for eng, t in tallies.items()}
        out_json.write_text(json.dumps(data, indent=1, default=str))


def _p(xs: list[float], only50: bool = False) -> str:
    if not xs:
        return "n/a"
    xs = sorted(xs)
    p50 = statistics.median(xs)
    if only50:
        return f"{p50:.0f}"
    p95 = xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]
    return f"{p50:.0f} / {p95:.0f}"


# ----------------------------------------------------------------------------------------------------- synthetic


def _read_synth(args: tuple[str, str]) -> tuple[str, dict, dict]:
    from ocr.errors import C1Error
    from ocr.pipeline import read_page

    path, engine = args
    truth = json.loads(Path(path).with_suffix(".json").read_text())
    try:
        r = read_page(Path(path), image_name=path, expected_template=truth.get("expected_template"), engine=engine)
        return path, truth, r.model_dump(mode="json")
    except C1Error as e:
        return path, truth, {"status": "error", "reason": e.code, "detail": e.message}


def _reader_temperature() -> float:
    """The calibration the reader applies (settings may name another file): undone so the records hold raw top-k."""
    from ocr.calibration import load_calibration
    from ocr.config import get_settings

    return load_calibration(get_settings().decode.calibration_file).temperature


def _write_records(
    out, reading: dict, truth: dict[str, tuple[str, int | None]], form_id: str, temperature: float
) -> None:
    """One field record (ocr.calibration.FieldRecord) per field with a truth: field id -> (written text, value)."""
    from ocr.calibration import records_from_reading
    from ocr.results import PageReading

    page = PageReading.model_validate(reading)
    for rec in records_from_reading(page, truth, form_id=form_id, temperature=temperature):
        out.write(json.dumps(rec) + "\n")


@app.command()
def synthetic(
    corpus: Annotated[Path, typer.Option(help="directory made by `c1ocr synth` (images + truth JSON)")],
    engine: Annotated[list[str], typer.Option(help="engines to run")] = ["ensemble"],
    limit: Annotated[int, typer.Option(help="at most this many pages per engine (0 = all)")] = 0,
    jobs: Annotated[int, typer.Option(help="parallel worker processes")] = 2,
    records: Annotated[Optional[Path], typer.Option(help="write field records (JSONL) for calibration")] = None,
    out_json: Annotated[Optional[Path], typer.Option("--json", help="write the metrics as JSON")] = None,
) -> None:
    temperature = _reader_temperature()
    photos = sorted(p for p in corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    tallies: dict[str, Tally] = {}
    rec_out = records.open("w") if records else None
    for eng in engine:
        sel = photos[:limit] if limit else photos
        t = tallies.setdefault(eng, Tally())
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            for path, truth, r in pool.map(_read_synth, [(str(p), eng) for p in sel], chunksize=2):
                t.pages += 1
                expected_reason = truth.get("unreadable_reason")
                slot = truth.get("expected_template")
                if r["status"] == "error":
                    t.errors.append(f"{path}: {r['reason']} {r['detail']}")
                    continue
                if slot and slot != truth["template_id"]:
                    t.wrong_page += 1
                    t.wrong_page_caught += r.get("reason") == "wrong_page"
                    continue
                if expected_reason:
                    t.unusable += 1
                    t.unusable_caught += r["status"] == "unreadable"
                    t.unusable_reason_right += r.get("reason") == expected_reason
                    continue
                t.usable += 1
                if r["status"] != "read":
                    t.errors.append(f"{Path(path).name}: usable page refused: {r.get('reason')} {r.get('detail')}")
                    continue
                t.usable_read += 1
                t.totals_ms.append(r["timings_ms"]["total"])
                t.read_ms.append(r["timings_ms"].get("read", 0.0))
                truth_fields = {f["id"]: (f["text"], f["value"]) for f in truth["fields"]}
                t.forms_read += 1
                t.forms_right += t.add_fields(truth_fields, r)
                if rec_out and eng == engine[0]:
                    _write_records(rec_out, r, truth_fields, Path(path).stem, temperature)
    if rec_out:
        rec_out.close()
    _report(f"synthetic corpus {corpus} ({len(photos)} photos)", tallies, out_json)


# ----------------------------------------------------------------------------------------------------- real forms


def _read_real(args: tuple[str, str, str]) -> tuple[str, dict]:
    from ocr.errors import C1Error
    from ocr.pipeline import read_page

    path, tid, engine = args
    try:
        return path, read_page(Path(path), image_name=path, expected_template=tid, engine=engine).model_dump(mode="json")
    except C1Error as e:
        return path, {"status": "error", "reason": e.code, "detail": e.message}


@app.command()
def real(
    data: Annotated[Path, typer.Option(help="the shared data directory (../shared/data)")] = Path("../shared/data"),
    engine: Annotated[list[str], typer.Option(help="engines to run")] = ["ensemble"],
    jobs: Annotated[int, typer.Option()] = 2,
    out_json: Annotated[Optional[Path], typer.Option("--json")] = None,
    verbose: Annotated[bool, typer.Option(help="print every field read")] = False,
    records: Annotated[Optional[Path], typer.Option(help="write field records (JSONL) of the labelled fields")] = None,
) -> None:
    forms_dir = data / "election_forms"
    labels = forms_dir / "labels" / "form_fields.csv"
    if not labels.exists():
        raise typer.BadParameter(f"{labels} not found: pass --data")
    per_image: dict[str, tuple[str, dict[str, tuple[str, int | None]]]] = {}
    skipped = Counter()
    with labels.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tid = REAL_FORMS.get(row["form"])
            if tid is None:
                skipped[row["form"]] += 1
                continue
            boxes = row["boxes"]
            if boxes.startswith("free:"):
                boxes = "???"  # written across the grid: no per-box truth, the value still counts
            value = int(row["value"]) if row["value"].strip().lstrip("-").isdigit() else None
            per_image.setdefault(row["image"], (tid, {}))[1][row["field"]] = (boxes, value)
    temperature = _reader_temperature()
    rec_out = records.open("w") if records else None
    tallies: dict[str, Tally] = {}
    for eng in engine:
        t = tallies.setdefault(eng, Tally())
        jobs_args = [(str(forms_dir / img), tid, eng) for img, (tid, _) in per_image.items()]
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
            for (img, (tid, truth)), (path, r) in zip(per_image.items(), pool.map(_read_real, jobs_args)):
                t.pages += 1
                t.usable += 1
                if r["status"] != "read":
                    t.errors.append(f"{img}: {r['status']} {r.get('reason')} {r.get('detail')}")
                    # every field of a refused page counts as not read
                    t.fields += sum(not _unlabelled(tx, v) for tx, v in truth.values())
                    t.forms_read += 1
                    continue
                t.usable_read += 1
                t.totals_ms.append(r["timings_ms"]["total"])
                t.read_ms.append(r["timings_ms"].get("read", 0.0))
                t.forms_read += 1
                t.forms_right += t.add_fields(truth, r)
                if rec_out and eng == engine[0]:
                    labelled = {fid: tv for fid, tv in truth.items() if not _unlabelled(*tv)}
                    _write_records(rec_out, r, labelled, Path(img).stem, temperature)
                if verbose:
                    for fid, (tt, tv) in truth.items():
                        fr = r["fields"].get(fid, {})
                        mark = "ok " if fr.get("value") == tv else "BAD"
                        console.print(f"{mark} {eng} {Path(img).name} {fid}: truth {tt}={tv} read {fr.get('text')}={fr.get('value')} "
                                      f"{fr.get('status')} {fr.get('reasons')}")
    if rec_out:
        rec_out.close()
    _report(f"real labelled forms ({len(per_image)} images; not templated: {dict(skipped)})", tallies, out_json)


@app.command()
def speed(
    corpus: Annotated[Path, typer.Option(help="photos to time (e.g. 12 MP synthetic pages)")],
    engine: Annotated[str, typer.Option()] = "ensemble",
    limit: Annotated[int, typer.Option()] = 40,
) -> None:
    """Per-page latency on ONE core (decode included), and the share of each stage."""
    _init_worker()
    from ocr.pipeline import read_page

    photos = sorted(p for p in corpus.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))[:limit]
    read_page(photos[0], engine=engine)  # warm-up: model load, tesseract probe
    stages: dict[str, list[float]] = defaultdict(list)
    for p in photos:
        r = read_page(p, engine=engine)
        for k, v in r.timings_ms.items():
            stages[k].append(v)
    table = Table(title=f"speed, one core, engine {engine}, {len(photos)} photos from {corpus}", title_justify="left")
    table.add_column("stage")
    table.add_column("p50 ms")
    table.add_column("p95 ms")
    for k, xs in stages.items():
        xs = sorted(xs)
        table.add_row(k, f"{statistics.median(xs):.1f}", f"{xs[min(len(xs) - 1, int(round(0.95 * (len(xs) - 1))))]:.1f}")
    console.print(table)


if __name__ == "__main__":
    app()
