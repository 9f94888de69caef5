"""Decode speed on recorded pages: the trust layer's joint decode alone, no image work (issue 4: < 5 ms per page).

    python -m bench.decode_speed --input fields-2027.jsonl [--repeat 5] [--profile]

The input is the field-record JSONL that `bench/reader_accuracy.py synthetic --records` writes. Each page (form id) is
decoded from its recorded box probabilities with `decode_page`, as the reader does after its digit engines, `--repeat`
times; a page's time is the median of its runs, so one scheduler hiccup does not count. Run it on a quiet machine:
it measures one core (numpy here is single-threaded), and other load on that core shows up in every number.

The records keep each box's three likeliest classes, not all twelve, and no OMR or tally-row readings, so the
offline decode has fewer alternatives per box than the pipeline's and likely less work on the same pages; it is
the same workload for comparing two versions of the decoder back to back.
"""

from __future__ import annotations

import cProfile
import pstats
import statistics
import sys
from pathlib import Path
from time import perf_counter

import typer

from bench.redecode import page_evidence, recorded_pages
from ocr.calibration import read_records
from ocr.config import get_settings
from ocr.decode import decode_page
from ocr.templates import get_template


def _pages(input: Path) -> list[tuple[str, str, dict]]:
    """(form id, template id, evidence) per recorded page, in file order."""
    return [
        (form_id, template_id, page_evidence(recs))
        for form_id, (template_id, recs) in recorded_pages(read_records(input)).items()
    ]


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def decode_speed_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL of field records (bench/reader_accuracy.py --records)."),
    repeat: int = typer.Option(5, min=1, help="decodes per page; the page's time is their median"),
    profile: bool = typer.Option(False, help="also print the 15 functions with the most own time (cProfile)"),
    slowest: int = typer.Option(5, min=0, help="list this many slowest pages"),
) -> None:
    settings = get_settings()
    pages = _pages(input)
    if not pages:
        raise SystemExit(f"{input}: no pages with a template in the records")
    jobs = []
    for form_id, template_id, evidence in pages:
        template = get_template(template_id)
        jobs.append((form_id, template, evidence, settings.profile(template.election)))
    decode_page(jobs[0][1], jobs[0][2], {}, profile=jobs[0][3], settings=settings)  # warm the caches once

    def run_all() -> list[tuple[float, str]]:
        out = []
        for form_id, template, evidence, election in jobs:
            runs = []
            for _ in range(repeat):
                t = perf_counter()
                decode_page(template, evidence, {}, profile=election, settings=settings, form_id=form_id)
                runs.append((perf_counter() - t) * 1000.0)
            out.append((statistics.median(runs), form_id))
        return out

    if profile:
        prof = cProfile.Profile()
        prof.enable()
        times = run_all()
        prof.disable()
    else:
        times = run_all()
    ms = [t for t, _ in times]
    print(f"{len(ms)} pages from {input}, median of {repeat} decodes each")
    print(f"decode ms per page: p50 {_percentile(ms, 0.5):.2f}  p95 {_percentile(ms, 0.95):.2f}  "
          f"max {max(ms):.2f}  mean {statistics.fmean(ms):.2f}")
    for t, form_id in sorted(times, reverse=True)[:slowest]:
        print(f"  {t:8.2f} ms  {form_id}")
    if profile:
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(decode_speed_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
