"""Authoring tool: writes the C.Hasil-KWK (Pilkada 2024) templates, designed here (no official geometry is public).

Design, in the visual language of the 2024 PPWP plano (domain.md §1.2, §1.4): a 600 x 900 mm plano page, the same
checker corner fiducials (7.2 mm squares touching at (47.2, 65.0) ... (552.8, 875.0)), a 32 mm AprilTag 36h10 at the
same place (printed rotated 180 degrees), and 3-box numbers (18 mm boxes on page 1, 20 mm on page 2).

Page split, per variant (2..6 paslon, or "tunggal": one paslon plus the "kolom kosong" pseudo-candidate):
  page 1  I. data pemilih (A.1 DPT, A.2 DPPh, A.3 DPTb, A.4 total; B.1-B.4 pengguna hak pilih from each list) with
          L / P / L+P columns; II. penggunaan surat suara (received incl. 2.5% reserve, used, damaged/returned,
          unused); III. disabilitas (L / P / L+P)
  page 2  IV. perolehan suara per paslon (one 3-box number each) and V. A sah, B tidak sah, C total; date boxes.

AprilTag id scheme (600-699, clear of the 1xx-5xx legislative/PPWP ranges):
    id = 600 + 10 * k + page,   k = number of paslon (2..6), k = 1 for the single-candidate ("tunggal") variant
e.g. 622 = 2 paslon page 2, 661 = 6 paslon page 1, 612 = tunggal page 2. Template ids: kwk-2024-<k|tunggal>-p<page>,
form sets kwk-2024-<k|tunggal>.

Run from the repository root:  python -m ocr.templates.authoring.kwk2024
"""

from __future__ import annotations

from ocr.templates.authoring.common import CAP, DPT_CAP, cap_constraints, constraint, date_fields, rect, write_templates

ORIGIN = (47.2, 65.0)
PAGE = {"width_mm": 600.0, "height_mm": 900.0}
FRAME = {"kind": "checker_fiducials", "points": [[47.2, 65.0], [552.8, 65.0], [552.8, 875.0], [47.2, 875.0]],
         "square_mm": 7.2}
TAG_RECT = {"x": 494.0, "y": 107.25, "w": 32.0, "h": 32.0}
VARIANTS: dict[str, int] = {"2": 2, "3": 3, "4": 4, "5": 5, "6": 6, "tunggal": 1}

P1_BOX, P1_PITCH = 18.0, 23.0
P1_COLS = {"L": 307.5, "P": 382.5, "LP": 457.5}  # x of the first box of each column
COL_LABEL = {"L": "Laki-laki (L)", "P": "Perempuan (P)", "LP": "Jumlah (L+P)"}
P2_BOX, P2_X = 20.0, 455.0  # 3 boxes at 455.0 / 478.5 / 502.0
P2_PITCH = 23.5


def _count(fid, label, section, x0, y, size, pitch, cap=CAP) -> dict:
    return {"id": fid, "label": label, "kind": "count", "section": section,
            "boxes": [rect(x0 + i * pitch, y, size, size) for i in range(3)], **cap}


def _base(variant: str, page: int, title: str) -> dict:
    k = VARIANTS[variant]
    return {
        "schema_version": 1,
        "id": f"kwk-2024-{variant}-p{page}",
        "version": "1.1.0",
        "form": "C.HASIL-KWK",
        "title": title,
        "election": "pilkada_2024",
        "contest": "kwk",
        "form_set": f"kwk-2024-{variant}",
        "page": page,
        "page_size": PAGE,
        "marker": {"family": "apriltag_36h10", "id": 600 + 10 * k + page, "rect": TAG_RECT, "rotation_deg": 180},
        "frame": FRAME,
        "box_border_mm": 1.0,
        "notes": "Designed by c1ocr (no official KWK geometry available); see ocr/templates/authoring/kwk2024.py.",
    }


def page1(variant: str) -> dict:
    rows = {
        "A1": (230.0, "A.1 Jumlah pemilih dalam DPT"),
        "A2": (253.0, "A.2 Jumlah pemilih pindahan (DPPh)"),
        "A3": (276.0, "A.3 Jumlah pemilih tambahan (DPTb)"),
        "A4": (299.0, "A.4 Jumlah pemilih (A.1 + A.2 + A.3)"),
        "B1": (350.0, "B.1 Jumlah pengguna hak pilih dalam DPT"),
        "B2": (373.0, "B.2 Jumlah pengguna hak pilih dalam DPPh"),
        "B3": (396.0, "B.3 Jumlah pengguna hak pilih dalam DPTb"),
        "B4": (419.0, "B.4 Jumlah seluruh pengguna hak pilih (B.1 + B.2 + B.3)"),
    }
    fields = [
        _count(f"I.{r}.{c}", f"{label} - {COL_LABEL[c]}", "I", x0, y, P1_BOX, P1_PITCH, DPT_CAP if r == "A1" else CAP)
        for r, (y, label) in rows.items() for c, x0 in P1_COLS.items()
    ]
    ii = {
        "II.1": (490.0, "1. Jumlah surat suara yang diterima, termasuk surat suara cadangan 2,5% dari DPT"),
        "II.2": (513.0, "2. Jumlah surat suara yang digunakan"),
        "II.3": (536.0, "3. Jumlah surat suara yang dikembalikan oleh pemilih karena rusak/keliru coblos"),
        "II.4": (559.0, "4. Jumlah surat suara yang tidak digunakan, termasuk sisa surat suara cadangan"),
    }
    fields += [_count(fid, label, "II", P1_COLS["LP"], y, P1_BOX, P1_PITCH) for fid, (y, label) in ii.items()]
    fields += [
        _count(f"III.{c}", f"Jumlah pemilih disabilitas yang menggunakan hak pilih - {COL_LABEL[c]}", "III", x0, 630.0,
               P1_BOX, P1_PITCH)
        for c, x0 in P1_COLS.items()
    ]
    cons = []
    for r in [*rows, "III"]:
        pre = f"I.{r}" if r != "III" else "III"
        cons.append(constraint(f"R2_{pre}_L_plus_P", "R2", "hard", [f"{pre}.L", f"{pre}.P"], "==", [f"{pre}.LP"],
                               description="L + P = L+P"))
    for c in P1_COLS:
        cons.append(constraint(f"R3_A4_{c}", "R3", "hard", [f"I.A1.{c}", f"I.A2.{c}", f"I.A3.{c}"], "==", [f"I.A4.{c}"],
                               description="A.4 = A.1 + A.2 + A.3"))
        cons.append(constraint(f"R3_B4_{c}", "R3", "hard", [f"I.B1.{c}", f"I.B2.{c}", f"I.B3.{c}"], "==", [f"I.B4.{c}"],
                               description="B.4 = B.1 + B.2 + B.3"))
        for n in (1, 2, 3):
            cons.append(constraint(f"R4_B{n}_le_A{n}_{c}", "R4", "hard", [f"I.B{n}.{c}"], "<=", [f"I.A{n}.{c}"],
                                   description="voters from a list <= that list"))
    cons += [
        constraint("R5_ballots_received", "R5", "hard", ["II.2", "II.3", "II.4"], "==", ["II.1"],
                   description="received = used + returned + unused"),
        constraint("R6_ballots_used_eq_voters", "R6", "hard", ["II.2"], "==", ["I.B4.LP"],
                   description="ballots used = voters who voted"),
        constraint("R11_dpt_cap", "R11", "hard", ["I.A1.LP"], "<=", rhs_param="max_voters_per_tps",
                   description="DPT <= TPS cap"),
        constraint("R10_voters_cap", "R10", "hard", ["I.B4.LP"], "<=", rhs_param="max_voters_per_tps",
                   rhs_plus_fraction_param="reserve_ballot_pct", description="voters <= TPS cap + reserve"),
        constraint("R12_reserve", "R12", "soft", ["II.1"], "<=", ["I.A1.LP"],
                   rhs_plus_fraction_param="reserve_ballot_pct", description="ballots received <= DPT + 2.5% reserve"),
        constraint("R13_disabled_le_voters", "R13", "soft", ["III.LP"], "<=", ["I.B4.LP"],
                   description="disabled voters <= voters"),
    ]
    t = _base(variant, 1, "C.HASIL-KWK Pilkada 2024 halaman 1: data pemilih, penggunaan surat suara, disabilitas")
    t.update(fields=fields, constraints=cons)
    return t


def page2(variant: str) -> dict:
    k = VARIANTS[variant]
    fields = []
    candidates = [(f"IV.{n}", f"Jumlah suara sah pasangan calon nomor urut {n}") for n in range(1, k + 1)]
    if variant == "tunggal":
        candidates = [("IV.1", "Jumlah suara sah pasangan calon"),
                      ("IV.kolom_kosong", "Jumlah suara sah kolom kosong (tidak bergambar)")]
    for i, (fid, label) in enumerate(candidates):
        fields.append(_count(fid, label, "IV", P2_X, 190.0 + 36.0 * i, P2_BOX, P2_PITCH))
    v_y = 190.0 + 36.0 * len(candidates) + 50.0
    v = [("V.A", "A. Jumlah seluruh suara sah (jumlah IV)"), ("V.B", "B. Jumlah suara tidak sah"),
         ("V.C", "C. Jumlah seluruh suara sah dan tidak sah (A + B)")]
    for i, (fid, label) in enumerate(v):
        fields.append(_count(fid, label, "V", P2_X, v_y + 36.0 * i, P2_BOX, P2_PITCH))
    dy = v_y + 36.0 * 3 + 40.0
    fields += date_fields([rect(300.0 + 18.0 * i, dy, 16.0, 16.0) for i in range(2)],
                          [rect(370.0 + 18.0 * i, dy, 16.0, 16.0) for i in range(2)],
                          [rect(440.0 + 18.0 * i, dy, 16.0, 16.0) for i in range(4)], year_min=2024, year_max=2024)
    ids = [fid for fid, _ in candidates]
    cons = [
        constraint("R7_valid_sum", "R7", "hard", ids, "==", ["V.A"], description="V.A = sum of IV"),
        constraint("R8_total", "R8", "hard", ["V.A", "V.B"], "==", ["V.C"], description="V.C = V.A + V.B"),
        *cap_constraints([*ids, "V.A", "V.B", "V.C"]),
    ]
    what = "pasangan calon tunggal dan kolom kosong" if variant == "tunggal" else f"{k} pasangan calon"
    t = _base(variant, 2, f"C.HASIL-KWK Pilkada 2024 halaman 2: perolehan suara ({what}), suara sah dan tidak sah")
    t.update(fields=fields, constraints=cons)
    return t


def form_set(variant: str) -> dict:
    what = "calon tunggal" if variant == "tunggal" else f"{VARIANTS[variant]} pasangan calon"
    return {
        "schema_version": 1,
        "id": f"kwk-2024-{variant}",
        "version": "1.0.0",
        "title": f"Formulir Model C.HASIL-KWK Pilkada 2024 ({what}), 2 halaman",
        "election": "pilkada_2024",
        "pages": [{"page": p, "template": f"kwk-2024-{variant}-p{p}"} for p in (1, 2)],
        "constraints": [
            constraint("R9_total_eq_voters", "R9", "soft", ["2:V.C"], "==", ["1:I.B4.LP"],
                       description="valid + invalid = voters who voted"),
            constraint("R6_used_eq_total", "R6", "soft", ["1:II.2"], "==", ["2:V.C"],
                       description="ballots used = valid + invalid"),
        ],
    }


def main() -> None:
    templates = [make(v) for v in VARIANTS for make in (page1, page2)]
    write_templates(templates, [form_set(v) for v in VARIANTS])


if __name__ == "__main__":
    main()
