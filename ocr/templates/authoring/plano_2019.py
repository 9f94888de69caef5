"""Authoring tool: writes the C1.Plano-PPWP 2019 lembar 2 template (`ppwp-2019-plano-l2`), its form set and reference.

The sheet: section IV with, per paslon (01, 02), a 12 x 5 tally grid ("Rincian perolehan suara"), a "Jumlah tiap
baris" column (one cell per tally row), the "JUMLAH" number (3 boxes) and the number in words under it; section V
with A (suara tidak sah: tally grid, row totals, 3 boxes, words), B (jumlah seluruh suara sah, 3 boxes + words),
C (sah + tidak sah, 3 boxes + words); then "Ditetapkan di", TANGGAL (2), BULAN (2), TAHUN (4) boxes. No marks are
printed: the frame is the sheet itself (`page_edges`).

How the numbers were measured:
- Box, tally and words rectangles: detected with OpenCV (holes of the printed lines) on kawalc1's blank rendering
  `reference_forms_2024_2019/PPWP-2019-plano.png` (1538 x 2044 px, cropped to the printed content).
- Where the sheet is: the blank rendering was registered to the real phone photos (`c1_2019_photos/pilpres2019_1`,
  `_3`, `_4`, `_5`, SIFT + RANSAC, 400-540 inliers on the 1632 px photos) and the paper outline found in each photo
  was mapped back into rendering pixels: sheet left -160, top -78, right 1690 px (spread about 20 px); the sheet
  aspect is 1.41, i.e. an ISO A sheet. No physical size is printed; at A2 (420 x 594 mm) the digit boxes are 14.5 mm
  and the tally cells 16 x 9.2 mm, the family of the 2024 plano (20 mm boxes, 19.6 x 16 mm cells). We take A2.
  One rendering pixel = 420 / 1850 = 0.2270 mm.

The committed reference image is the blank rendering placed on the sheet and resampled to 3 px/mm (a blank
official form, never a filled photo).

Run from the repository root (the reference image needs ../shared/data, or --shared-data):
    python -m ocr.templates.authoring.plano_2019
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ocr.templates import REFERENCE_DIR
from ocr.templates.authoring.common import (
    CAP,
    cap_constraints,
    constraint,
    date_fields,
    default_shared_data,
    rect,
    single_page_set,
    write_templates,
)

TEMPLATE_ID = "ppwp-2019-plano-l2"
PAGE = {"width_mm": 420.0, "height_mm": 594.0}
FRAME = {"kind": "page_edges", "points": [[0.0, 0.0], [420.0, 0.0], [420.0, 594.0], [0.0, 594.0]]}
SOURCE_PNG = "election_forms/kawalc1/reference_forms_2024_2019/PPWP-2019-plano.png"
REF_DPMM = 3.0

# Sheet placement of the blank rendering (see docstring): rendering px -> page mm.
SHEET_LEFT_PX, SHEET_TOP_PX, SHEET_WIDTH_PX = -160.0, -78.0, 1850.0
MM_PER_PX = PAGE["width_mm"] / SHEET_WIDTH_PX


def px_rect(x: float, y: float, w: float, h: float) -> dict:
    """A rectangle measured in rendering pixels -> page mm."""
    return rect((x - SHEET_LEFT_PX) * MM_PER_PX, (y - SHEET_TOP_PX) * MM_PER_PX, w * MM_PER_PX, h * MM_PER_PX)


# Rendering-pixel measurements (x, y, w, h of the clear inside, lines are ~2 px).
BOX_XS = (1337.0, 1400.5, 1464.0)
BOX_W = 63.5
TALLY_X, TALLY_W, TALLY_COLS = 349.0, 845.0, 12
ROW_TOTAL_X, ROW_TOTAL_W = 1196.0, 139.0
ROW_H = 40.6  # tally rows and row totals
SECTIONS = {
    # field id: (label, section, box top, box h, tally/row-total top or None, words rect)
    "suara_sah_paslon_01": ("Suara sah pasangan calon 01 (Ir. H. Joko Widodo - Prof. Dr.(H.C.) KH. Ma'ruf Amin)", "IV",
                            313.0, 81.0, 313.0, (1337, 393, 190, 122)),
    "suara_sah_paslon_02": ("Suara sah pasangan calon 02 (H. Prabowo Subianto - H. Sandiaga Salahuddin Uno)", "IV",
                            547.0, 81.0, 547.0, (1337, 628, 190, 122)),
    "jumlah_suara_tidak_sah": ("A. Jumlah suara tidak sah", "V", 893.0, 81.0, 893.0, (1337, 974, 190, 122)),
    "jumlah_suara_sah": ("B. Jumlah seluruh suara sah (IV.01 + IV.02)", "V", 1127.0, 64.0, None, (349, 1192, 1178, 70)),
    "jumlah_sah_dan_tidak_sah": ("C. Jumlah seluruh suara sah dan suara tidak sah (A + B)", "V", 1294.0, 63.0, None,
                                 (349, 1358, 1178, 70)),
}
DATE_Y, DATE_W = 1476.0, 48.0
DATE_X = {"tanggal": (908, 956), "bulan": (1121, 1169), "tahun": (1334, 1383, 1431, 1480)}


def template() -> dict:
    fields = []
    for fid, (label, section, by, bh, ty, words) in SECTIONS.items():
        f = {
            "id": fid,
            "label": label,
            "kind": "count",
            "section": section,
            "boxes": [px_rect(x, by, BOX_W, bh) for x in BOX_XS],
            "words": px_rect(*words),
            **CAP,
        }
        if ty is not None:
            f["tally"] = {"rect": px_rect(TALLY_X, ty, TALLY_W, 5 * ROW_H), "cols": TALLY_COLS, "rows": 5}
            # One "Jumlah tiap baris" cell per tally row (no per-digit boxes on this form).
            f["row_totals"] = [[px_rect(ROW_TOTAL_X, ty + i * ROW_H, ROW_TOTAL_W, ROW_H)] for i in range(5)]
        fields.append(f)
    fields += date_fields(
        *[[px_rect(x, DATE_Y, DATE_W, DATE_W) for x in DATE_X[k]] for k in ("tanggal", "bulan", "tahun")],
        year_min=2019,
        year_max=2019,
    )
    paslon = ["suara_sah_paslon_01", "suara_sah_paslon_02"]
    cons = [
        constraint("R7_valid_sum", "R7", "hard", paslon, "==", ["jumlah_suara_sah"], description="V.B = IV.01 + IV.02"),
        constraint("R8_total", "R8", "hard", ["jumlah_suara_sah", "jumlah_suara_tidak_sah"], "==",
                   ["jumlah_sah_dan_tidak_sah"], description="V.C = V.A + V.B"),
        *cap_constraints([*paslon, "jumlah_suara_sah", "jumlah_suara_tidak_sah", "jumlah_sah_dan_tidak_sah"]),
    ]
    return {
        "schema_version": 1,
        "id": TEMPLATE_ID,
        "version": "1.1.0",
        "form": "C1.Plano-PPWP",
        "title": "C1.Plano-PPWP 2019 lembar 2: rincian perolehan suara pasangan calon, suara sah dan tidak sah",
        "election": "pemilu_2019",
        "contest": "ppwp",
        "form_set": "ppwp-2019-plano",
        "page": 2,
        "page_size": PAGE,
        "frame": FRAME,
        "box_border_mm": 0.5,
        "reference": {
            "image": f"{TEMPLATE_ID}.png",
            "dpmm": REF_DPMM,
            "source": "blank C1.Plano-PPWP 2019 lembar 2 rendering from kawalc1/kawalc1 (MIT) "
            "static/datasets PPWP-2019-plano.png, placed on the A2 sheet and resampled to 3 px/mm",
        },
        "fields": fields,
        "constraints": cons,
        "notes": "Sheet size assumed A2 (aspect measured 1.41 from photos; absolute size not printed). Row totals are "
        "single cells per tally row.",
    }


def write_reference(shared: Path) -> None:
    import cv2
    import numpy as np

    src = cv2.imread(str(shared / SOURCE_PNG), cv2.IMREAD_GRAYSCALE)
    if src is None:
        print(f"note: {shared / SOURCE_PNG} not found; reference image not regenerated")
        return
    s = MM_PER_PX * REF_DPMM  # rendering px -> reference px
    A = np.array([[s, 0, -SHEET_LEFT_PX * s], [0, s, -SHEET_TOP_PX * s]], dtype=np.float64)
    size = (int(round(PAGE["width_mm"] * REF_DPMM)), int(round(PAGE["height_mm"] * REF_DPMM)))
    out = cv2.warpAffine(cv2.GaussianBlur(src, (0, 0), 0.5 / s), A, size, flags=cv2.INTER_AREA, borderValue=255)
    path = REFERENCE_DIR / f"{TEMPLATE_ID}.png"
    cv2.imwrite(str(path), out, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared-data", type=Path, default=default_shared_data())
    args = ap.parse_args()
    t = template()
    write_templates([t], [single_page_set(t, "Formulir Model C1.Plano-PPWP 2019, lembar 2")])
    write_reference(args.shared_data)


if __name__ == "__main__":
    main()
