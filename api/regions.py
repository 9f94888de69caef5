"""Kode wilayah and kode TPS: 13 digits = provinsi 2, kab/kota 2, kecamatan 2, kelurahan/desa 4, TPS 3.

Tallies aggregate by prefix, so a region's code is the prefix of every TPS inside it.
"""

from __future__ import annotations

import csv
import io
import re

from api.problems import ApiProblem

LEVELS: tuple[tuple[str, int], ...] = (
    ("provinsi", 2),
    ("kabkota", 4),
    ("kecamatan", 6),
    ("kelurahan", 10),
    ("tps", 13),
)
LEVEL_LENGTH = dict(LEVELS)
LENGTH_LEVEL = {n: name for name, n in LEVELS}
KODE_TPS_RE = re.compile(r"^\d{13}$")


def check_kode_tps(kode: str) -> str:
    if not KODE_TPS_RE.match(kode):
        raise ApiProblem(
            422,
            "bad_kode_tps",
            "kode TPS must be 13 digits: provinsi 2, kab/kota 2, kecamatan 2, kelurahan/desa 4, TPS 3",
            kode_tps=kode[:40],
        )
    if kode[-3:] == "000":
        raise ApiProblem(422, "bad_kode_tps", "TPS number 000 does not exist; TPS are numbered from 001")
    return kode


def check_region_code(code: str) -> str:
    if not code.isdigit() or len(code) not in LENGTH_LEVEL or len(code) == 13:
        raise ApiProblem(
            422, "bad_region_code", "a region code has 2, 4, 6 or 10 digits (provinsi, kab/kota, kecamatan, kelurahan)"
        )
    return code


def region_of(kode_tps: str, level: str) -> str:
    return kode_tps[: LEVEL_LENGTH[level]]


def parent_of(code: str) -> str | None:
    lengths = [n for _, n in LEVELS]
    i = lengths.index(len(code))
    return None if i == 0 else code[: lengths[i - 1]]


def parse_region_csv(text: str) -> list[tuple[str, str, str]]:
    """Rows of `kode,nama` (a header row is optional): returns (code, level, name).

    Codes of 13 digits are TPS: loading them makes the tally count TPS that have not uploaded yet.
    """
    rows: list[tuple[str, str, str]] = []
    reader = csv.reader(io.StringIO(text))
    for lineno, row in enumerate(reader, start=1):
        if not row or not "".join(row).strip():
            continue
        code = row[0].strip().replace(".", "")
        name = row[1].strip() if len(row) > 1 else ""
        if lineno == 1 and not code.isdigit():
            continue  # header
        if not code.isdigit() or len(code) not in LENGTH_LEVEL:
            raise ApiProblem(
                422, "bad_region_csv", f"line {lineno}: code {code[:20]!r} must have 2, 4, 6, 10 or 13 digits"
            )
        if len(code) == 13:
            check_kode_tps(code)
        rows.append((code, LENGTH_LEVEL[len(code)], name[:200]))
    return rows
