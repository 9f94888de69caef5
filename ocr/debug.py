"""Debug images (`c1ocr read --debug DIR`): what each stage saw, for template authors and for the verifier's "why".

Per photo, under DIR/<photo stem>/:
- 1_located.jpg  the photo with the detected frame points, page outline and every digit box as the homography
                 places it (green: read, red: unreadable page);
- 2_page.png     the page warped to its template at 2 px/mm with the box grid;
- 3_cells.png    every box crop (canonical 96x96) beside the digit model's two input planes (the normalised glyph,
                 and the ink at box scale: where it sits in the box) and the predicted character (for a tally-row
                 total box, the row's value).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ocr.cells import CellCrop
from ocr.geometry import project, warp_region
from ocr.load import LoadedImage
from ocr.locate import Located
from ocr.results import PageReading
from ocr.templates.schema import Rect


def _safe_stem(name: str) -> str:
    stem = Path(name).stem or "image"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80]


def _cell_label(c: CellCrop, reading: PageReading) -> str:
    fr = reading.fields.get(c.field_id)
    if fr is not None:
        return f"{c.field_id}[{c.index}]={fr.text[c.index] if c.index < len(fr.text) else '?'}"
    # A tally-row total box ("IV.1#row0"): the reading keeps only the row's value, in the field's R14 rule.
    field_id, _, row = c.field_id.partition("#")
    rule = next((r for r in reading.rules if r.name == f"R14_row_totals:{field_id}"), None)
    value = rule.values.get(row) if rule is not None else None
    return f"{c.field_id}[{c.index}] row={'?' if value is None else value}"


def write_debug(
    out_dir: Path,
    image_name: str,
    img: LoadedImage | None,
    loc: Located | None,
    cells: list[CellCrop] | None,
    reading: PageReading,
) -> Path:
    d = Path(out_dir) / _safe_stem(image_name)
    d.mkdir(parents=True, exist_ok=True)
    if img is None:
        return d
    vis = img.bgr.copy()
    colour = (0, 160, 0) if reading.status == "read" else (0, 0, 255)
    if loc is not None:
        corners = loc.page_corners_px().astype(np.int32)
        cv2.polylines(vis, [corners], True, colour, 3)
        for x, y in loc.frame_points_px:
            cv2.circle(vis, (int(x), int(y)), 12, (255, 0, 255), 3)
        for f in loc.template.fields:
            for b in f.boxes:
                q = project(loc.H, b.corners()).astype(np.int32)
                cv2.polylines(vis, [q], True, colour, 2)
    label = f"{reading.template or '?'} {reading.status} {reading.reason or ''}"
    cv2.putText(vis, label, (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 1.6, colour, 4)
    f = 1600.0 / max(vis.shape[:2])
    if f < 1:
        vis = cv2.resize(vis, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(d / "1_located.jpg"), vis, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if loc is None:
        return d

    t = loc.template
    dpmm = 2.0
    page = warp_region(img.bgr, loc.H, Rect(x=0, y=0, w=t.page_size.width_mm, h=t.page_size.height_mm),
                       int(t.page_size.width_mm * dpmm), int(t.page_size.height_mm * dpmm))
    for fs in t.fields:
        for b in fs.boxes:
            cv2.rectangle(page, (int(b.x * dpmm), int(b.y * dpmm)), (int((b.x + b.w) * dpmm), int((b.y + b.h) * dpmm)), (0, 0, 255), 1)
    cv2.imwrite(str(d / "2_page.png"), page)

    if cells:
        tiles = []
        for c in cells:
            crop = cv2.cvtColor(255 - c.crop, cv2.COLOR_GRAY2BGR)
            # The digit model's input planes: the normalised glyph, and the ink where it sits in the box.
            planes = [
                cv2.cvtColor(cv2.resize((255 - p * 255).astype(np.uint8), (96, 96), interpolation=cv2.INTER_NEAREST),
                             cv2.COLOR_GRAY2BGR)
                for p in c.cell.channels(2)
            ]
            tile = np.hstack([crop, *planes])
            cv2.putText(tile, _cell_label(c, reading), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 255), 1)
            tiles.append(tile)
        cols = 6
        while len(tiles) % cols:
            tiles.append(np.full_like(tiles[0], 255))
        rows = [np.hstack(tiles[i : i + cols]) for i in range(0, len(tiles), cols)]
        cv2.imwrite(str(d / "3_cells.png"), np.vstack(rows))
    return d
