"""Authoring tool: writes the C1-PPWP 2019 lembar 2 template (`ppwp-2019-c1-l2`) and its form set.

The page: section IV (votes of paslon 01 and 02, each a row of 3 tall cells in the "SUARA SAH" column plus the number
in words), section V (A valid, B invalid, C total: 3 boxes each plus words) and the date (2/2/4 boxes). A black square
is printed near each page corner; the frame points are their centres.

How the numbers were measured (OpenCV, on the 25 KPU scans in
../shared/data/election_forms/c1_form_reader_pilpres2019/, see `measure.py`):
- the page is scanned at A4 aspect (210 x 297 mm assumed: the scans are 0.708 wide/high and no physical scale is
  printed). The corner squares' centres span 0.6895 (sd 0.006) horizontally per vertical; we fix the span at
  196.0 x 284.5 mm centred on the A4 sheet, and the squares' side at 1/42.9 of the horizontal span (4.6 mm);
- every box interior (the hole of its printed border) was detected in each scan whose four squares were found
  (18 scans), mapped to page mm through the square-centre homography, and matched to the boxes of test01; the
  template holds the median centre per box; sizes are the box pitch (8.5 mm wide, the borders are thin table lines)
  and the median height.  Measured spread after frame registration: rms 0.37-0.48 mm per box, max 1.17 mm.

Run from the repository root:  python -m ocr.templates.authoring.c1_2019
"""

from __future__ import annotations

from ocr.templates.authoring.common import (
    CAP,
    cap_constraints,
    centred_rect,
    constraint,
    date_fields,
    rect,
    single_page_set,
    write_templates,
)

TEMPLATE_ID = "ppwp-2019-c1-l2"
PAGE = {"width_mm": 210.0, "height_mm": 297.0}
FRAME = {"kind": "corner_squares", "points": [[7.0, 6.25], [203.0, 6.25], [203.0, 290.75], [7.0, 290.75]], "square_mm": 4.6}

# Measured box centres (median over the scans), page mm.
COLS_X = (179.0, 187.55, 196.0)
BOX_W = 8.5
TALL_H = 15.2  # section IV cells
BOX_H = 7.6  # section V and date boxes
ROWS = {
    # field id: (centre y, height, label, section, words rect x0, y0, x1, y1)
    "suara_sah_paslon_01": (52.35, TALL_H, "Suara sah pasangan calon 01 (Ir. H. Joko Widodo - Prof. Dr.(H.C.) KH. Ma'ruf Amin)", "IV", (29.3, 62.1, 170.0, 69.4)),
    "suara_sah_paslon_02": (77.7, TALL_H, "Suara sah pasangan calon 02 (H. Prabowo Subianto - H. Sandiaga Salahuddin Uno)", "IV", (29.3, 84.4, 170.0, 91.8)),
    "A_jumlah_suara_sah": (115.2, BOX_H, "A. Jumlah seluruh suara sah (IV.01 + IV.02)", "V", (64.4, 120.3, 170.0, 127.9)),
    "B_jumlah_suara_tidak_sah": (134.95, BOX_H, "B. Jumlah suara tidak sah", "V", (64.4, 138.7, 170.0, 146.3)),
    "C_jumlah_sah_dan_tidak_sah": (154.8, BOX_H, "C. Jumlah seluruh suara sah dan suara tidak sah (A + B)", "V", (64.4, 157.0, 170.0, 164.6)),
}
DATE_Y = 178.03
DATE_X = {"tanggal": (103.03, 111.57), "bulan": (136.77, 145.34), "tahun": (170.47, 179.05, 187.57, 196.03)}


def template() -> dict:
    fields = []
    for fid, (cy, h, label, section, (wx0, wy0, wx1, wy1)) in ROWS.items():
        fields.append(
            {
                "id": fid,
                "label": label,
                "kind": "count",
                "section": section,
                "boxes": [centred_rect(cx, cy, BOX_W, h) for cx in COLS_X],
                "words": rect(wx0, wy0, wx1 - wx0, wy1 - wy0),
                **CAP,
            }
        )
    fields += date_fields(
        [centred_rect(x, DATE_Y, BOX_W, BOX_H) for x in DATE_X["tanggal"]],
        [centred_rect(x, DATE_Y, BOX_W, BOX_H) for x in DATE_X["bulan"]],
        [centred_rect(x, DATE_Y, BOX_W, BOX_H) for x in DATE_X["tahun"]],
        year_min=2019,
        year_max=2019,
    )
    paslon = ["suara_sah_paslon_01", "suara_sah_paslon_02"]
    cons = [
        constraint("R7_valid_sum", "R7", "hard", paslon, "==", ["A_jumlah_suara_sah"], description="A = IV.01 + IV.02"),
        constraint("R8_total", "R8", "hard", ["A_jumlah_suara_sah", "B_jumlah_suara_tidak_sah"], "==",
                   ["C_jumlah_sah_dan_tidak_sah"], description="C = A + B"),
        *cap_constraints([*paslon, "A_jumlah_suara_sah", "B_jumlah_suara_tidak_sah", "C_jumlah_sah_dan_tidak_sah"]),
    ]
    return {
        "schema_version": 1,
        "id": TEMPLATE_ID,
        "version": "1.1.0",
        "form": "C1-PPWP",
        "title": "C1-PPWP 2019 lembar 2: data perolehan suara pasangan calon, data suara sah dan tidak sah",
        "election": "pemilu_2019",
        "contest": "ppwp",
        "form_set": "ppwp-2019-c1",
        "page": 2,
        "page_size": PAGE,
        "frame": FRAME,
        "box_border_mm": 0.4,
        "fields": fields,
        "constraints": cons,
        "notes": "Geometry measured from 18 KPU scans (c1_form_reader_pilpres2019); page assumed A4. No marker: the "
        "page is identified by its layout. Section IV cells are taller than wide (15.2 x 8.5 mm).",
    }


def main() -> None:
    t = template()
    write_templates([t], [single_page_set(t, "Formulir Model C1-PPWP 2019, lembar 2")])


if __name__ == "__main__":
    main()
