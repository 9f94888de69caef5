"""Authoring tool: writes the Model C1 PPWP 2014 lampiran 1 template (`ppwp-2014-c1-lampiran1`) and its form set.

The page: section IV "Rincian perolehan suara sah" as a table whose "JUMLAH" column holds 3 tall cells per row:
paslon 1 (Prabowo-Hatta), paslon 2 (Jokowi-JK), jumlah seluruh suara sah, jumlah seluruh suara tidak sah. No marks
are printed, so the frame is the sheet itself (`page_edges`).

Coordinate system: kawalc1's registered 2014 reference (the `registered_*` scans in
../shared/data/election_forms/kawalc1/c1_2014_scans/ are already warped onto it, 824 x 1164 px), read as an A4 sheet
(210 x 297 mm; 0.2549 x 0.2552 mm/px). The original KPU scans are *not* A4: most were scanned on a Legal-size platen
(216 x 356 mm, aspect 1.647) with the sheet placed anywhere near the top, so their image corners are not the sheet
corners and the reader must register them by content (table lines / features), not by the image bounds.

How the numbers were measured (`measure.py`, OpenCV): every cell interior (the hole inside the thin printed lines)
was detected on the 10 registered scans and contoh-formulir_ok (same geometry), mapped to mm, matched to the
expected 4 x 3 grid; the template holds the median centre per cell, the cell pitch as width and the median height.
Measured spread: rms 0.08-0.18 mm per cell, max 0.53 mm (on scans already registered by kawalc1).

Run from the repository root:  python -m ocr.templates.authoring.c1_2014
"""

from __future__ import annotations

from ocr.templates.authoring.common import (
    CAP,
    cap_constraints,
    centred_rect,
    constraint,
    single_page_set,
    write_templates,
)

TEMPLATE_ID = "ppwp-2014-c1-lampiran1"
PAGE = {"width_mm": 210.0, "height_mm": 297.0}
FRAME = {"kind": "page_edges", "points": [[0.0, 0.0], [210.0, 0.0], [210.0, 297.0], [0.0, 297.0]]}

COLS_X = (180.31, 188.85, 197.26)  # measured cell centres
BOX_W = 8.5  # cell pitch; the printed lines are thin (about 0.3 mm)
BOX_H = 17.1
ROWS = {
    "suara_sah_paslon_1": (74.58, "1. H. Prabowo Subianto - Ir. H. M. Hatta Rajasa"),
    "suara_sah_paslon_2": (91.62, "2. Ir. H. Joko Widodo - Drs. H. M. Jusuf Kalla"),
    "jumlah_suara_sah": (108.82, "Jumlah seluruh suara sah"),
    "jumlah_suara_tidak_sah": (125.92, "Jumlah seluruh suara tidak sah"),
}


def template() -> dict:
    fields = [
        {
            "id": fid,
            "label": label,
            "kind": "count",
            "section": "IV",
            "boxes": [centred_rect(cx, cy, BOX_W, BOX_H) for cx in COLS_X],
            **CAP,
        }
        for fid, (cy, label) in ROWS.items()
    ]
    paslon = ["suara_sah_paslon_1", "suara_sah_paslon_2"]
    cons = [
        constraint("R7_valid_sum", "R7", "hard", paslon, "==", ["jumlah_suara_sah"],
                   description="jumlah suara sah = paslon 1 + paslon 2"),
        *cap_constraints([*paslon, "jumlah_suara_sah", "jumlah_suara_tidak_sah"]),
    ]
    return {
        "schema_version": 1,
        "id": TEMPLATE_ID,
        "version": "1.1.0",
        "form": "C1-PPWP",
        "title": "Model C1 PPWP 2014 lampiran 1: rincian perolehan suara sah",
        "election": "pemilu_2014",
        "contest": "ppwp",
        "form_set": "ppwp-2014-c1",
        "page": 2,
        "page_size": PAGE,
        "frame": FRAME,
        "box_border_mm": 0.3,
        "fields": fields,
        "constraints": cons,
        "notes": "Coordinates of kawalc1's registered 2014 reference read as A4. Original KPU scans are Legal-size "
        "platen scans with the sheet placed anywhere: register them by content, not by the image corners.",
    }


def main() -> None:
    t = template()
    write_templates([t], [single_page_set(t, "Model C1 PPWP 2014, lampiran 1")])


if __name__ == "__main__":
    main()
