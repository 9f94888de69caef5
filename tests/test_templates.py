"""Template schema and built-in templates: everything validates; broken documents fail naming the key."""

from __future__ import annotations

import copy
import json

import pytest

from ocr.errors import TemplateError
from ocr.templates import (
    DATA_DIR,
    get_form_set,
    get_template,
    list_form_sets,
    list_templates,
    parse_form_set,
    parse_template,
)
from ocr.templates.schema import BOX_COUNT

REAL_FORM_FIELDS = {
    # field ids used by ../shared/data/election_forms/labels/form_fields.csv and the issue
    "ppwp-2019-c1-l2": {"suara_sah_paslon_01", "suara_sah_paslon_02", "A_jumlah_suara_sah", "B_jumlah_suara_tidak_sah",
                        "C_jumlah_sah_dan_tidak_sah", "tanggal", "bulan", "tahun"},
    "ppwp-2014-c1-lampiran1": {"suara_sah_paslon_1", "suara_sah_paslon_2", "jumlah_suara_sah",
                               "jumlah_suara_tidak_sah"},
    "ppwp-2019-plano-l2": {"suara_sah_paslon_01", "suara_sah_paslon_02", "jumlah_suara_tidak_sah", "jumlah_suara_sah",
                           "jumlah_sah_dan_tidak_sah", "tanggal", "bulan", "tahun"},
}


def _doc(template_id: str) -> dict:
    return json.loads((DATA_DIR / f"{template_id}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(DATA_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_every_builtin_template_file_validates(path):
    t = parse_template(path.read_text(encoding="utf-8"), source=str(path))
    assert t.id == path.stem
    assert t.content_hash.startswith("sha256:")


@pytest.mark.parametrize("path", sorted((DATA_DIR / "sets").glob("*.json")), ids=lambda p: p.stem)
def test_every_builtin_form_set_validates_and_points_at_its_pages(path):
    fs = parse_form_set(path.read_text(encoding="utf-8"), source=str(path))
    for ref in fs.pages:
        t = get_template(ref.template)
        assert t.form_set == fs.id
        assert t.page == ref.page
        assert t.election == fs.election
    # cross-page constraint ids are "<page>:<field id>" and must exist
    pages = {ref.page: get_template(ref.template) for ref in fs.pages}
    for c in fs.constraints:
        for q in [*c.lhs, *c.rhs]:
            page, fid = q.split(":", 1)
            pages[int(page)].field(fid)


def test_every_template_belongs_to_a_form_set():
    in_sets = {ref.template for fs in list_form_sets() for ref in fs.pages}
    assert {t.id for t in list_templates()} <= in_sets


@pytest.mark.parametrize("template_id", sorted(REAL_FORM_FIELDS))
def test_real_form_templates_use_the_label_field_ids(template_id):
    t = get_template(template_id)
    assert {f.id for f in t.fields} == REAL_FORM_FIELDS[template_id]
    assert get_form_set(t.form_set)


@pytest.mark.parametrize("t", list_templates(), ids=lambda t: t.id)
def test_boxes_lie_on_the_page_and_do_not_overlap(t):
    W, H = t.page_size.width_mm, t.page_size.height_mm
    boxes = [b for f in t.fields for b in f.boxes]
    for b in boxes:
        assert 0 <= b.x and b.x + b.w <= W and 0 <= b.y and b.y + b.h <= H
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            overlap_w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
            overlap_h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
            # neighbouring cells of a table share a border line: allow a sliver of overlap, never a real one
            assert overlap_w <= 0.3 or overlap_h <= 0.3, (a, b)


@pytest.mark.parametrize("t", list_templates(), ids=lambda t: t.id)
def test_boxes_of_a_field_run_left_to_right_on_one_line(t):
    for f in t.fields:
        xs = [b.x for b in f.boxes]
        assert xs == sorted(xs) and len(set(xs)) == len(xs), f.id
        assert max(b.y for b in f.boxes) - min(b.y for b in f.boxes) < 1.0, f.id


def test_vote_templates_carry_the_sum_rules():
    for tid, valid_sum in [("ppwp-2019-c1-l2", "A_jumlah_suara_sah"), ("ppwp-2014-c1-lampiran1", "jumlah_suara_sah"),
                           ("ppwp-2019-plano-l2", "jumlah_suara_sah")]:
        r7 = [c for c in get_template(tid).constraints if c.rule == "R7"]
        assert len(r7) == 1 and r7[0].rhs == [valid_sum] and r7[0].op == "=="


# --- broken documents ---------------------------------------------------------------------------------------------


def _broken(mutate) -> str:
    doc = copy.deepcopy(_doc("ppwp-2019-c1-l2"))
    mutate(doc)
    with pytest.raises(TemplateError) as e:
        parse_template(doc, source="broken.json")
    return e.value.message


def test_unknown_key_is_named():
    msg = _broken(lambda d: d["fields"][0].update(colour="red"))
    assert "fields.0.colour" in msg and "broken.json" in msg


def test_wrong_box_count_is_named():
    msg = _broken(lambda d: d["fields"][1]["boxes"].pop())
    assert "fields.1" in msg and "suara_sah_paslon_02" in msg and f"needs {BOX_COUNT['count']} boxes" in msg


def test_constraint_with_unknown_field_is_named():
    msg = _broken(lambda d: d["constraints"][0]["lhs"].append("paslon_99"))
    assert "paslon_99" in msg and "R7_valid_sum" in msg


def test_a_cap_grown_without_a_cap_is_named():
    msg = _broken(lambda d: d["fields"][0].pop("cap_param"))
    assert "suara_sah_paslon_01" in msg and "cap_plus_fraction_param" in msg and "cap_param" in msg


def test_missing_frame_size_for_squares_is_named():
    msg = _broken(lambda d: d["frame"].pop("square_mm"))
    assert "frame" in msg and "square_mm" in msg


def test_duplicate_field_id_is_rejected():
    def dup(d):
        d["fields"][1]["id"] = d["fields"][0]["id"]
        d["constraints"] = []

    assert "duplicate field ids" in _broken(dup)


def test_marker_ids_are_unique_and_kwk_uses_its_own_range():
    markers = [(t.marker.family, t.marker.id) for t in list_templates() if t.marker]
    assert len(markers) == len(set(markers))
    for t in list_templates():
        if t.contest == "kwk":
            assert t.marker is not None and 600 <= t.marker.id <= 699
            assert t.marker.id % 10 == t.page


def test_kwk_variants_have_their_candidates_and_the_valid_sum():
    for variant, want in [("2", ["IV.1", "IV.2"]), ("6", [f"IV.{n}" for n in range(1, 7)]),
                          ("tunggal", ["IV.1", "IV.kolom_kosong"])]:
        t = get_template(f"kwk-2024-{variant}-p2")
        assert [f.id for f in t.fields if f.section == "IV"] == want
        r7 = next(c for c in t.constraints if c.rule == "R7")
        assert r7.lhs == want and r7.rhs == ["V.A"]
        assert t.election == "pilkada_2024"
