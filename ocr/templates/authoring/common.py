"""Helpers shared by the template authoring scripts: JSON building blocks, validation and writing.

Authoring scripts hold the *measured* numbers as constants (with how they were measured in their docstring) and
turn them into template documents; `write_templates` validates every document before it touches `data/`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ocr.templates import DATA_DIR, parse_form_set, parse_template

REPO_ROOT = Path(__file__).resolve().parents[3]


def default_shared_data() -> Path:
    """../shared/data relative to the repository root, or $C1OCR_SHARED_DATA."""
    env = os.environ.get("C1OCR_SHARED_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def rect(x: float, y: float, w: float, h: float, nd: int = 2) -> dict:
    return {"x": round(x, nd), "y": round(y, nd), "w": round(w, nd), "h": round(h, nd)}


def centred_rect(cx: float, cy: float, w: float, h: float) -> dict:
    return rect(cx - w / 2, cy - h / 2, w, h)


def constraint(name, rule, severity, lhs, op, rhs=None, rhs_param=None, description="", **extra) -> dict:
    d = {"name": name, "rule": rule, "severity": severity, "lhs": list(lhs), "op": op, "description": description}
    if rhs:
        d["rhs"] = list(rhs)
    if rhs_param:
        d["rhs_param"] = rhs_param
    d.update(extra)
    return d


# R10 caps every count at the TPS cap plus the reserve ballots (2% / 2.5% of DPT, rounded up): the ballots received
# include the reserve (the form says so: "termasuk surat suara cadangan"), and the voters who come on top of the DPT
# (DPTb, DPK) vote with it, so ballots used, voters and votes can pass the cap by that much. Sirekap's own limit was
# the cap x 1.025 (domain.md §3, MAX_PENGGUNA). Only the DPT itself is held to the cap (R11, `DPT_CAP`).
CAP = {"cap_param": "max_voters_per_tps", "cap_plus_fraction_param": "reserve_ballot_pct"}
DPT_CAP = {"cap_param": "max_voters_per_tps"}


def cap_constraints(field_ids, prefix: str = "R10") -> list[dict]:
    """R10: every vote count <= the election's per-TPS voter cap plus the reserve ballots."""
    return [
        constraint(f"{prefix}_{fid}_cap", "R10", "hard", [fid], "<=", rhs_param="max_voters_per_tps",
                   rhs_plus_fraction_param="reserve_ballot_pct", description="count <= TPS voter cap + reserve")
        for fid in field_ids
    ]


def date_fields(day: list[dict], month: list[dict], year: list[dict], year_min: int, year_max: int,
                section: str = "penetapan") -> list[dict]:
    spec = [("tanggal", "Tanggal", "date_day", day, 1, 31), ("bulan", "Bulan", "date_month", month, 1, 12),
            ("tahun", "Tahun", "date_year", year, year_min, year_max)]
    return [
        {"id": fid, "label": label, "kind": kind, "section": section, "boxes": boxes, "min": lo, "max": hi}
        for fid, label, kind, boxes, lo, hi in spec
    ]


def single_page_set(template: dict, title: str) -> dict:
    return {
        "schema_version": 1,
        "id": template["form_set"],
        "version": template["version"],
        "title": title,
        "election": template["election"],
        "pages": [{"page": template["page"], "template": template["id"]}],
        "constraints": [],
    }


def _dump(doc: dict) -> str:
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def write_templates(templates: list[dict], form_sets: list[dict]) -> None:
    """Validate everything first, then write data/<id>.json and data/sets/<id>.json."""
    for t in templates:
        parse_template(t, source=t["id"])
    for fs in form_sets:
        parse_form_set(fs, source=fs["id"])
    for t in templates:
        (DATA_DIR / f"{t['id']}.json").write_text(_dump(t), encoding="utf-8")
        print(f"wrote {DATA_DIR / (t['id'] + '.json')}")
    (DATA_DIR / "sets").mkdir(exist_ok=True)
    for fs in form_sets:
        (DATA_DIR / "sets" / f"{fs['id']}.json").write_text(_dump(fs), encoding="utf-8")
        print(f"wrote {DATA_DIR / 'sets' / (fs['id'] + '.json')}")
