"""The cell stage and the digit model alone on a synthetic corpus: how many digit / X boxes the CNN misreads, how
many it reads right but unsure (< 0.99), split by how many of the box's four printed lines the cell stage found.

    python -m bench.cell_reads --corpus /work/bench-data/synth-eval [--jobs 2]

No Tesseract, no decode, no rules: the CNN's own top class against each box's truth, on every usable photo of the
right page that the front half of the reader (`ocr.pipeline.cut_page`) does not refuse. Empty boxes and dashes are
left out (their class is the same "no digit"). A quick check of a cell-stage change: about a minute for seed 2027
with two processes. The model is the shipped one unless `C1OCR_READER__MODEL_PATH` says otherwise.
"""

from __future__ import annotations

import json
import sys
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import typer


def _page(photo: str) -> list[tuple[int, bool, float]]:
    """(lines found, read right, top probability) for each digit / X box of one photo."""
    import cv2

    cv2.setNumThreads(1)
    from ocr.config import get_settings
    from ocr.pipeline import cut_page
    from ocr.read.base import CLASSES
    from ocr.read.cnn import CnnReader

    truth = json.loads(Path(photo).with_suffix(".json").read_text())
    if truth.get("unreadable_reason") or truth["template_id"] != truth["expected_template"]:
        return []
    fields = {f["id"]: f for f in truth["fields"]}
    page = cut_page(photo)
    if page.refused is not None:
        return []
    cells = [c for c in page.cells if c.cell is not None and not c.cell.empty and c.field_id in fields]
    if not cells:
        return []
    probs = CnnReader(get_settings().reader.model_path).predict_inputs(np.stack([c.cell.channels(2) for c in cells]))
    out = []
    for c, p in zip(cells, probs):
        boxes = fields[c.field_id]["boxes"]
        if c.index >= len(boxes) or boxes[c.index]["char"] in ("_", "-"):
            continue
        out.append((c.cell.lines_found, CLASSES[int(p.argmax())] == boxes[c.index]["char"], float(p.max())))
    return out


def cell_reads_command(
    corpus: Path = typer.Option(..., help="a synthetic corpus folder (c1ocr synth)"),
    jobs: int = typer.Option(2, min=1, help="processes"),
) -> None:
    photos = sorted(str(p) for p in corpus.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"{corpus}: no photos")
    with get_context("fork").Pool(jobs) as pool:
        rows = [r for page in pool.map(_page, photos, chunksize=4) for r in page]
    if not rows:
        raise SystemExit(f"{corpus}: no digit boxes read")
    a = np.array(rows, dtype=float)
    right, sure = a[:, 1] == 1, a[:, 2] >= 0.99
    print(f"{len(a)} digit / X boxes: misread {int((~right).sum())}, right but < 0.99 {int((right & ~sure).sum())}")
    for found in range(5):
        s = a[:, 0] == found
        if s.any():
            print(
                f"  {found} lines found: {int(s.sum())} boxes, misread {(~right[s]).mean():.2%}, "
                f"right but < 0.99 {(right[s] & ~sure[s]).mean():.2%}"
            )


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(cell_reads_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
