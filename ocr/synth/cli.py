"""`c1ocr synth`: generate synthetic filled-form photos (JPEG + truth JSON per page) with a progress bar."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from ocr.errors import C1Error, ExitCode
from ocr.synth.corpus import SynthOptions, corpus_jobs, generate_corpus
from ocr.templates import get_template, list_templates


class BadSynthArgument(C1Error):
    code = "bad_argument"
    exit_code = ExitCode.BAD_ARGUMENTS
    http_status = 422


def parse_range(text: str) -> tuple[float, float]:
    try:
        parts = [float(p) for p in text.split(",")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not (0.3 <= parts[0] <= parts[1] <= 50):
        raise BadSynthArgument(f"--megapixels must be MIN,MAX between 0.3 and 50 (e.g. 2,12), got {text!r}")
    return parts[0], parts[1]


def _rate(name: str, v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise BadSynthArgument(f"{name} must be between 0 and 1, got {v}")
    return v


def synth_command(
    template: Annotated[str, typer.Option("--template", "-t", help="Template id, or 'all' for every built-in page.")] = "all",
    n: Annotated[int, typer.Option("--n", "-n", min=1, help="Pages per template.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Corpus seed; the same seed gives the same bytes.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created).")] = Path("synth-out"),
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Shared data folder (MNIST, USPS, fonts); default ../shared/data or $C1OCR_SHARED_DATA."),
    ] = None,
    unusable_rate: Annotated[float, typer.Option("--unusable-rate", help="Fraction of unusable photos.")] = 0.1,
    mistake_rate: Annotated[float, typer.Option("--mistake-rate", help="Fraction of forms with a KPPS arithmetic mistake.")] = 0.1,
    wrong_page_rate: Annotated[float, typer.Option("--wrong-page-rate", help="Fraction of photos of another page than the slot.")] = 0.03,
    megapixels: Annotated[str, typer.Option("--megapixels", help="Photo size range MIN,MAX in megapixels.")] = "2,12",
    no_shared_data: Annotated[bool, typer.Option("--no-shared-data", help="Use procedural stroke digits only.")] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Worker processes.")] = 1,
) -> None:
    """Generate N synthetic photos per template into OUT: <template>-s<seed>-<index>.jpg plus a .json truth file."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    ids = [t.id for t in list_templates()] if template == "all" else [get_template(template).id]
    if data is not None and not data.exists():
        raise BadSynthArgument(f"--data folder {data} does not exist; point it at the shared data folder or omit it")
    options = SynthOptions(
        megapixels=parse_range(megapixels),
        unusable_rate=_rate("--unusable-rate", unusable_rate),
        mistake_rate=_rate("--mistake-rate", mistake_rate),
        wrong_page_rate=_rate("--wrong-page-rate", wrong_page_rate),
        data_dir=str(data) if data else None,
        use_shared_data=not no_shared_data,
    )
    page_jobs = corpus_jobs(ids, n, seed, out, options)
    console = Console(stderr=True)
    reasons: Counter[str] = Counter()
    t0 = time.perf_counter()
    with Progress(
        TextColumn("[bold]synth"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False,
    ) as bar:
        task = bar.add_task("pages", total=len(page_jobs))

        def done(name: str, reason: str | None) -> None:
            reasons[reason or "usable"] += 1
            bar.advance(task)

        generate_corpus(page_jobs, workers=jobs, on_done=done)
    dt = time.perf_counter() - t0
    summary = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
    console.print(f"wrote {len(page_jobs)} photos to {out} in {dt:.1f} s ({len(page_jobs) / dt:.1f} pages/s): {summary}")
