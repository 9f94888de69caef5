"""Authoring tool: writes the C.HASIL-PPWP 2024 plano templates (pages 1-3) and their form set.

The geometry was measured from the official blank PDF (kawalpemilu/kp24:src/assets/C.HASIL-PPWP.pdf, 600 x 900 mm)
rendered at 10 px/mm (see ../shared/docs/domain.md §1.2). Box positions there are relative to the top-left fiducial
touch point and to the middle of the 1.0 mm printed border; templates store page coordinates, so the offset is added.

Run from the repository root (the reference images need the official PDF):

    python -m ocr.templates.authoring.ppwp2024 [--pdf ../shared/data/election_forms/kp24_blank_forms_2024/C.HASIL-PPWP.pdf]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ocr.templates import DATA_DIR, REFERENCE_DIR, parse_form_set, parse_template
from ocr.templates.authoring.common import CAP, DPT_CAP

ORIGIN = (47.2, 65.0)  # top-left fiducial touch point, page mm
PAGE = {"width_mm": 600.0, "height_mm": 900.0}
FRAME = {
    "kind": "checker_fiducials",
    "points": [[47.2, 65.0], [552.8, 65.0], [552.8, 875.0], [47.2, 875.0]],
    "square_mm": 7.2,
}
TAG_RECT = {"x": 494.0, "y": 107.25, "w": 31.75, "h": 32.0}
REF_DPMM = 4.0
DEFAULT_PDF = Path("../shared/data/election_forms/kp24_blank_forms_2024/C.HASIL-PPWP.pdf")


def _box(x: float, y: float, size: float) -> dict:
    return {"x": round(x + ORIGIN[0], 2), "y": round(y + ORIGIN[1], 2), "w": size, "h": size}


def _count(fid: str, label: str, section: str, xs, y: float, size: float, cap=CAP, **extra) -> dict:
    return {
        "id": fid,
        "label": label,
        "kind": "count",
        "section": section,
        "boxes": [_box(x, y, size) for x in xs],
        **cap,
        **extra,
    }


def _c(name, rule, severity, lhs, op, rhs=None, rhs_param=None, description="", **extra) -> dict:
    d = {"name": name, "rule": rule, "severity": severity, "lhs": lhs, "op": op, "description": description}
    if rhs:
        d["rhs"] = rhs
    if rhs_param:
        d["rhs_param"] = rhs_param
    d.update(extra)
    return d


def _base(page: int, title: str) -> dict:
    return {
        "schema_version": 1,
        "id": f"ppwp-2024-plano-p{page}",
        "version": "1.1.0",
        "form": "C.HASIL-PPWP",
        "title": title,
        "election": "pemilu_2024",
        "contest": "ppwp",
        "form_set": "ppwp-2024-plano",
        "page": page,
        "page_size": PAGE,
        "marker": {"family": "apriltag_36h10", "id": 100 + page, "rect": TAG_RECT, "rotation_deg": 180},
        "frame": FRAME,
        "box_border_mm": 1.0,
        "reference": {
            "image": f"ppwp-2024-plano-p{page}.png",
            "dpmm": REF_DPMM,
            "source": "rasterised from the official blank C.HASIL-PPWP 2024 plano PDF (KPU), page %d" % page,
        },
    }


def page1() -> dict:
    cols = {"L": (260.3, 283.3, 306.3), "P": (335.3, 358.3, 381.3), "LP": (410.3, 433.3, 456.3)}
    col_label = {"L": "Laki-laki (L)", "P": "Perempuan (P)", "LP": "Jumlah (L+P)"}
    rows = {
        "A": (321.4, "Jumlah pemilih dalam DPT (Model A-Daftar Pemilih Tetap Pemilu)"),
        "B1": (364.4, "Jumlah pengguna hak pilih dalam DPT"),
        "B2": (387.4, "Jumlah pengguna hak pilih dalam DPTb"),
        "B3": (410.4, "Jumlah pengguna hak pilih dalam DPK"),
        "B4": (433.4, "Jumlah seluruh pengguna hak pilih (B.1 + B.2 + B.3)"),
    }
    fields = []
    for r, (y, label) in rows.items():
        for c, xs in cols.items():
            fields.append(_count(f"I.{r}.{c}", f"{label} - {col_label[c]}", "I", xs, y, 18.0, DPT_CAP if r == "A" else CAP))
    ii = {
        "II.1": (506.5, "Jumlah surat suara yang diterima, termasuk surat suara cadangan 2% dari DPT"),
        "II.2": (529.5, "Jumlah surat suara yang digunakan"),
        "II.3": (552.5, "Jumlah surat suara dikembalikan oleh pemilih karena rusak/keliru coblos"),
        "II.4": (575.5, "Jumlah surat suara yang tidak digunakan/tidak terpakai, termasuk sisa surat suara cadangan"),
    }
    for fid, (y, label) in ii.items():
        fields.append(_count(fid, label, "II", cols["LP"], y, 18.0))
    for c, xs in cols.items():
        fields.append(
            _count(f"III.{c}", f"Jumlah pemilih disabilitas yang menggunakan hak pilih - {col_label[c]}", "III", xs, 645.5, 18.0)
        )
    cons = []
    for r in ["A", "B1", "B2", "B3", "B4", "III"]:
        pre = f"I.{r}" if r != "III" else "III"
        cons.append(_c(f"R2_{pre}_L_plus_P", "R2", "hard", [f"{pre}.L", f"{pre}.P"], "==", [f"{pre}.LP"], description="L + P = L+P"))
    for c in cols:
        cons.append(_c(f"R3_B4_{c}", "R3", "hard", [f"I.B1.{c}", f"I.B2.{c}", f"I.B3.{c}"], "==", [f"I.B4.{c}"], description="B.4 = B.1 + B.2 + B.3"))
        cons.append(_c(f"R4_B1_le_A_{c}", "R4", "hard", [f"I.B1.{c}"], "<=", [f"I.A.{c}"], description="voters from DPT <= DPT"))
    cons += [
        _c("R5_ballots_received", "R5", "hard", ["II.2", "II.3", "II.4"], "==", ["II.1"], description="received = used + returned + unused"),
        _c("R6_ballots_used_eq_voters", "R6", "hard", ["II.2"], "==", ["I.B4.LP"], description="ballots used = voters who voted"),
        _c("R11_dpt_cap", "R11", "hard", ["I.A.LP"], "<=", rhs_param="max_voters_per_tps", description="DPT <= TPS cap"),
        _c("R10_voters_cap", "R10", "hard", ["I.B4.LP"], "<=", rhs_param="max_voters_per_tps",
           rhs_plus_fraction_param="reserve_ballot_pct", description="voters <= TPS cap + reserve"),
        _c(
            "R12_reserve",
            "R12",
            "soft",
            ["II.1"],
            "<=",
            ["I.A.LP"],
            rhs_plus_fraction_param="reserve_ballot_pct",
            description="ballots received <= DPT + reserve",
        ),
        _c("R13_disabled_le_voters", "R13", "soft", ["III.LP"], "<=", ["I.B4.LP"], description="disabled voters <= voters"),
    ]
    t = _base(1, "C.HASIL-PPWP 2024 (plano) halaman 1: data pemilih, penggunaan surat suara, disabilitas")
    t.update(fields=fields, constraints=cons)
    return t


# Tally grids ("Rincian perolehan suara") and their row totals ("Jumlah tiap baris"), measured on the official PDF
# at 4 px/mm (line centres, page coordinates): grid columns 181.0 .. 416.0 mm (12 x 19.58 mm), row-total columns
# 421.0 / 433.0 / 445.0 mm; page 2 rows every 16 mm from 178.0 mm (paslon 1), +152 mm per paslon; page 3 (V.B) rows
# every 12.46 mm from 228.9 mm.
GRID_X0, GRID_X1 = 181.0, 416.0
ROW_TOTAL_XS = (421.0, 433.0)
ROW_TOTAL_W = 12.0


def _tally(y0: float, row_h: float) -> tuple[dict, list[list[dict]]]:
    tally = {"rect": {"x": GRID_X0, "y": y0, "w": round(GRID_X1 - GRID_X0, 2), "h": round(5 * row_h, 2)}, "cols": 12, "rows": 5}
    rows = [
        [{"x": x, "y": round(y0 + i * row_h, 2), "w": ROW_TOTAL_W, "h": row_h} for x in ROW_TOTAL_XS] for i in range(5)
    ]
    return tally, rows


def page2() -> dict:
    fields = []
    for n, y in enumerate((119.6, 271.6, 423.6), start=1):
        omr = []
        for cx in (417.8, 441.3, 464.8):
            first = y + 29.43
            omr.append(
                {
                    "bubbles": [
                        {"cx": round(cx + ORIGIN[0], 2), "cy": round(first + 10.5 * i + ORIGIN[1], 2), "r": 4.05}
                        for i in range(10)
                    ],
                    "values": list(range(10)),
                }
            )
        fields.append(
            _count(
                f"IV.{n}",
                f"Jumlah suara sah pasangan calon nomor urut {n}",
                "IV",
                (407.8, 431.3, 454.8),
                y,
                20.0,
                guide="seven_segment",
                omr=omr,
                tally=_tally(178.0 + (n - 1) * 152.0, 16.0)[0],
                row_totals=_tally(178.0 + (n - 1) * 152.0, 16.0)[1],
                # the number in words, on the line above "(ditulis menggunakan huruf kapital)"
                words={"x": 181.0, "y": round(268.0 + (n - 1) * 152.0, 2), "w": 235.0, "h": 40.0},
            )
        )
    cons = [
        _c(f"R10_paslon_{n}_cap", "R10", "hard", [f"IV.{n}"], "<=", rhs_param="max_voters_per_tps",
           rhs_plus_fraction_param="reserve_ballot_pct", description="votes <= TPS cap + reserve")
        for n in (1, 2, 3)
    ]
    t = _base(2, "C.HASIL-PPWP 2024 (plano) halaman 2: rincian perolehan suara pasangan calon")
    t.update(fields=fields, constraints=cons)
    return t


def page3() -> dict:
    xs = (407.8, 431.3, 454.8)
    fields = [
        _count("V.A", "Jumlah seluruh suara sah (IV.1 + IV.2 + IV.3)", "V", xs, 101.0, 20.0),
        _count("V.B", "Jumlah suara tidak sah", "V", xs, 172.2, 20.0, tally=_tally(228.9, 12.46)[0],
               row_totals=_tally(228.9, 12.46)[1]),
        _count("V.C", "Jumlah seluruh suara sah dan suara tidak sah (V.A + V.B)", "V", xs, 247.0, 20.0),
    ]
    # Date boxes (measured on the 4 px/mm render: 16 mm boxes at a 16 mm pitch, border middle).
    y = 293.5 + ORIGIN[1]
    for fid, label, kind, bxs in [
        ("tanggal", "Tanggal", "date_day", (274.6, 290.6)),
        ("bulan", "Bulan", "date_month", (345.2, 361.2)),
        ("tahun", "Tahun", "date_year", (415.6, 431.8, 447.8, 463.8)),
    ]:
        fields.append(
            {
                "id": fid,
                "label": label,
                "kind": kind,
                "section": "penetapan",
                "boxes": [{"x": round(x + ORIGIN[0], 2), "y": y, "w": 16.0, "h": 16.0} for x in bxs],
                "min": {"date_day": 1, "date_month": 1, "date_year": 2024}[kind],
                "max": {"date_day": 31, "date_month": 12, "date_year": 2024}[kind],
            }
        )
    cons = [
        _c("R8_total", "R8", "hard", ["V.A", "V.B"], "==", ["V.C"], description="V.C = V.A + V.B"),
        _c("R10_total_cap", "R10", "hard", ["V.C"], "<=", rhs_param="max_voters_per_tps",
           rhs_plus_fraction_param="reserve_ballot_pct", description="total <= TPS cap + reserve"),
    ]
    t = _base(3, "C.HASIL-PPWP 2024 (plano) halaman 3: data suara sah dan tidak sah")
    t.update(fields=fields, constraints=cons)
    return t


def form_set() -> dict:
    return {
        "schema_version": 1,
        "id": "ppwp-2024-plano",
        "version": "1.0.0",
        "title": "Formulir Model C.HASIL-PPWP 2024 (plano), 3 halaman",
        "election": "pemilu_2024",
        "pages": [{"page": p, "template": f"ppwp-2024-plano-p{p}"} for p in (1, 2, 3)],
        "constraints": [
            _c("R7_valid_sum", "R7", "hard", ["2:IV.1", "2:IV.2", "2:IV.3"], "==", ["3:V.A"], description="V.A = IV.1 + IV.2 + IV.3"),
            _c("R9_total_eq_voters", "R9", "soft", ["3:V.C"], "==", ["1:I.B4.LP"], description="valid + invalid = voters who voted"),
        ],
    }


def rasterise(pdf: Path, out_dir: Path, dpmm: float = REF_DPMM) -> None:
    import cv2
    import numpy as np
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    for i in range(len(doc)):
        img = doc[i].render(scale=dpmm * 25.4 / 72.0, grayscale=True).to_numpy()
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        h = int(round(900 * dpmm))
        w = int(round(600 * dpmm))
        img = np.ascontiguousarray(img[:h, :w])
        cv2.imwrite(str(out_dir / f"ppwp-2024-plano-p{i + 1}.png"), img, [cv2.IMWRITE_PNG_COMPRESSION, 9])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pdf", type=Path, default=DEFAULT_PDF, help="official blank C.HASIL-PPWP.pdf (for reference images)")
    args = ap.parse_args()
    for make in (page1, page2, page3):
        doc = make()
        parse_template(doc, source=doc["id"])  # validate before writing
        (DATA_DIR / f"{doc['id']}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (DATA_DIR / "sets").mkdir(exist_ok=True)
    fs = form_set()
    parse_form_set(fs)
    (DATA_DIR / "sets" / f"{fs['id']}.json").write_text(json.dumps(fs, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if args.pdf.exists():
        rasterise(args.pdf, REFERENCE_DIR)
    else:
        print(f"note: {args.pdf} not found; reference images not regenerated")


if __name__ == "__main__":
    main()
