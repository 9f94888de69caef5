"""Training cells cut from synthetic page *photos* by the reader's own front half.

`cells_synth.py` draws single boxes; what the net meets at run time are boxes cut from a registered photo, with the
registration's small offsets, perspective, JPEG, blur, shadows, curl and the generator's pens. This module renders
synthetic pages with the **training writers** (`SynthOptions(writers="training")`: MNIST 0-44999, USPS 0-5399, the
CNN's own slices, never the benchmark's), runs `ocr.pipeline.cut_page` (load -> locate -> gate -> cells) on each
photo and labels every non-empty cell from the generator's per-box truth.

A box that the registration places more than `MAX_SLIP_BOX` box sizes from where the truth homography puts it is
skipped, as are boxes a finger covers: their label would not describe the cell. The small tally-row total boxes of
the PPWP 2024 plano (pages 2 and 3) are labelled like the field boxes. Empty cells are skipped (the net never sees
them). Pages are spread over every template, round robin, and cached under runs/page-cells/ by seed, count and the
source of the generator and the cell stage.
"""

from __future__ import annotations

from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from ocr.geometry import project
from ocr.read.base import CLASSES
from ocr.read.datacache import cached_arrays, source_fingerprint

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "runs" / "page-cells"
MAX_SLIP_BOX = 0.45  # registration error allowed at a box, in box sizes, before its label is distrusted
SEED_OFFSET = 7_000_000  # page seeds of training pages: far from any benchmark corpus seed

_FINGERPRINT_SOURCES = ("ocr/read/page_cells.py", "ocr/cells.py", "ocr/synth/fill.py", "ocr/synth/camera.py")


def _label(char: str) -> int:
    return CLASSES.index("_" if char in ("-", "_") else char)


def _labelled_boxes(template, truth) -> dict[tuple[str, int], tuple]:
    """(cell id, box index) -> (template Rect, BoxTruth) for the field boxes and the tally-row totals the reader cuts."""
    specs = {f.id: f for f in template.fields}
    out = {}
    for ft in truth.fields:
        spec = specs[ft.id]
        for b in ft.boxes:
            out[(ft.id, b.index)] = (spec.boxes[b.index], b)
        if ft.row_totals and spec.row_totals_boxed:
            for row, rt in enumerate(ft.row_totals):
                for b in rt.boxes:
                    out[(spec.row_total_id(row), b.index)] = (spec.row_totals[row][b.index], b)
    return out


def harvest_page(template_id: str, seed: int, index: int, data_dir: str | None) -> tuple[np.ndarray, np.ndarray, str]:
    """(cells uint8 N x 2 x 32 x 32 with 255 = ink (glyph and placement planes, PreparedCell.channels), labels,
    outcome) for one synthetic training photo."""
    from ocr.pipeline import cut_page
    from ocr.synth.corpus import SynthOptions, generate_page

    options = SynthOptions(
        data_dir=data_dir, writers="training", force_reason="", force_wrong_page=False, unusable_rate=0.0
    )
    jpeg, truth = generate_page(template_id, seed, index, options)
    cut = cut_page(jpeg, expected_template=template_id)
    empty = np.zeros((0, 2, 32, 32), np.uint8), np.zeros(0, np.int64)
    if cut.refused is not None:
        return *empty, f"refused:{cut.refused.reason}"
    # Label a cell only when the registration puts its box where the truth does: a box-sized slip would pair a
    # cell with its neighbour's label. (Per box, not per page: curl moves some boxes more than others.)
    truth_H = np.array(truth.photo.homography, np.float64)
    limit = MAX_SLIP_BOX * max(truth.photo.box_px, 1.0)
    boxes = _labelled_boxes(cut.loc.template, truth)
    xs, ys = [], []
    slipped = 0
    for c in cut.cells:
        rect, b = boxes.get((c.field_id, c.index), (None, None))
        if b is None or b.covered or c.cell is None or c.cell.empty:
            continue
        centre = [rect.center]
        got = project(cut.loc.H, centre)[0] / cut.img.scale
        if np.hypot(*(got - project(truth_H, centre)[0])) > limit:
            slipped += 1
            continue
        xs.append(np.round(c.cell.channels(2) * 255).astype(np.uint8))
        ys.append(_label(b.char))
    if slipped and not xs:
        return *empty, "misregistered"
    if not xs:
        return *empty, "no_cells"
    return np.stack(xs), np.array(ys, np.int64), "ok"


def _job(args: tuple[str, int, int, str | None]) -> tuple[np.ndarray, np.ndarray, str]:
    cv2.setNumThreads(1)
    return harvest_page(*args)


def build_page_cells(
    pages: int,
    seed: int,
    data_dir: Path | None,
    *,
    workers: int = 2,
    cache_dir: Path | None = DEFAULT_CACHE,
    log=print,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells, labels and page numbers (for a split by page) from `pages` synthetic training photos."""
    from ocr.templates import list_templates

    templates = sorted(t.id for t in list_templates())
    key = f"{pages}-{seed}-{data_dir}-{source_fingerprint(*_FINGERPRINT_SOURCES)}"

    def build() -> dict[str, np.ndarray]:
        jobs = [(templates[i % len(templates)], SEED_OFFSET + seed, i, None if data_dir is None else str(data_dir))
                for i in range(pages)]
        if workers > 1:
            with get_context("fork").Pool(workers) as pool:
                parts = pool.map(_job, jobs, chunksize=4)
        else:
            parts = [_job(j) for j in jobs]
        outcomes: dict[str, int] = {}
        for _, _, o in parts:
            outcomes[o] = outcomes.get(o, 0) + 1
        log(f"page cells: {pages} pages, outcomes {dict(sorted(outcomes.items()))}")
        y = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        return {
            "X": np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 2, 32, 32), np.uint8),
            "y": y,
            "page": np.concatenate([np.full(len(p[1]), i, np.int64) for i, p in enumerate(parts)]) if parts else y,
        }

    d = cached_arrays(cache_dir, "page-cells", key, build)
    return d["X"], d["y"], d["page"]
