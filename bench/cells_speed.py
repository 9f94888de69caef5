"""Time of the cells stage alone (box crops, line search, ink) on synthetic pages, one core.

    python -m bench.cells_speed --corpus /work/bench-data/synth-eval [--pattern 'kwk-2024-5-p1-*.jpg'] [--limit 12]

Each page goes through load -> locate -> gate -> cells (`ocr.pipeline.cut_page`) three times; its cells-stage time is
the best of the three, so one scheduler hiccup does not count. Refused pages are skipped. Compare two versions of
`ocr/cells.py` back to back on the same machine.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import cv2
import typer

from ocr.pipeline import cut_page

DEFAULT_PATTERNS = ("kwk-2024-5-p1-*.jpg", "ppwp-2024-plano-p1-*.jpg")


def cells_speed_command(
    corpus: Path = typer.Option(..., help="a synthetic corpus folder (c1ocr synth)"),
    pattern: list[str] = typer.Option(list(DEFAULT_PATTERNS), help="photo name patterns (repeatable)"),
    limit: int = typer.Option(12, min=1, help="photos per pattern"),
) -> None:
    cv2.setNumThreads(1)
    times: list[float] = []
    for pat in pattern:
        for photo in sorted(corpus.glob(pat))[:limit]:
            runs = [cut_page(photo) for _ in range(3)]
            if runs[0].refused is None:
                times.append(min(r.base["timings_ms"]["cells"] for r in runs))
    if not times:
        raise SystemExit(f"{corpus}: no readable photos matching {pattern}")
    print(
        f"{len(times)} pages: cells stage median {statistics.median(times):.1f} ms, "
        f"max {max(times):.1f} ms (best of 3 per page, one core)"
    )


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(cells_speed_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
