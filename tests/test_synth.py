"""Synthetic photo generator: determinism, truth agrees with the drawing, tally model, tally strokes and row totals,
unusable labels, CLI.

Most tests use the procedural stroke digits (`use_shared_data=False`) and small photos, so they need no shared data
and stay fast; the glyph-source tests skip when ../shared/data is absent.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ocr.cells import BOX_PX, MARGIN_PX, box_crop, darkness_image
from ocr.config import get_settings
from ocr.errors import UnreadableReason
from ocr.geometry import project, warp_region
from ocr.synth.camera import page_corners
from ocr.synth.corpus import SynthOptions, generate_page
from ocr.synth.fill import PageFiller, chars_value, draw_writer, field_chars, fill_page, tally_rows
from ocr.synth.glyphs import MNIST_SYNTH_SLICE, default_data_dir, glyph_bank
from ocr.synth.page import blank_page_gray
from ocr.synth.tally import draw_form_tally, pages_of, qualify
from ocr.synth.truth import PageTruth
from ocr.templates import get_template, list_templates
from ocr.templates.schema import Rect

FAST = SynthOptions(megapixels=(2.0, 3.0), use_shared_data=False, unusable_rate=0.0, wrong_page_rate=0.0)
TEMPLATE_IDS = [t.id for t in list_templates()]


def _decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img


def test_same_seed_same_bytes_and_truth():
    a = generate_page("ppwp-2024-plano-p2", seed=11, index=3, options=FAST)
    b = generate_page("ppwp-2024-plano-p2", seed=11, index=3, options=FAST)
    assert a[0] == b[0]
    assert a[1].model_dump() == b[1].model_dump()
    c = generate_page("ppwp-2024-plano-p2", seed=12, index=3, options=FAST)
    assert c[0] != a[0]


def _ink_score(dark: np.ndarray, H: np.ndarray, box) -> float:
    """How much darker than the paper the box interior gets (printed lines excluded by a small inset)."""
    crop = box_crop(dark, H, box).astype(np.float32)
    a, b = MARGIN_PX + 7, MARGIN_PX + BOX_PX - 7
    return float(np.percentile(crop[a:b, a:b], 99) - np.percentile(crop, 25))


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_truth_matches_what_was_drawn(template_id):
    """Re-read every box through the truth homography: ink where the truth has a mark, none where it says empty."""
    opts = SynthOptions(megapixels=(2.0, 3.0), use_shared_data=False, force_reason="", force_wrong_page=False,
                        occluder_rate=0.0, nonplanar_rate=0.0)
    t = get_template(template_id)
    checked, mismatched = 0, []
    for index in range(2):
        data, truth = generate_page(template_id, seed=5, index=index, options=opts)
        img = _decode(data)
        assert img.shape[:2] == (truth.photo.height, truth.photo.width)
        H = np.array(truth.photo.homography)
        dark = darkness_image(img)
        for ft in truth.fields:
            spec = t.field(ft.id)
            assert len(ft.text) == len(spec.boxes) == len(ft.boxes)
            for bt, box in zip(ft.boxes, spec.boxes):
                checked += 1
                if (_ink_score(dark, H, box) > 23) != (bt.char != "_"):
                    mismatched.append((index, ft.id, bt.index, bt.char))
    assert checked > 0
    # a glyph pushed far over the box line can leave the inset interior almost blank: allow a rare miss
    assert len(mismatched) <= max(1, checked // 50), mismatched


def test_truth_geometry_is_self_consistent():
    data, truth = generate_page("ppwp-2024-plano-p1", seed=2, index=0, options=FAST)
    t = get_template(truth.template_id)
    H = np.array(truth.photo.homography)
    np.testing.assert_allclose(project(H, page_corners(t)), np.array(truth.photo.page_corners_px), atol=1e-6)
    np.testing.assert_allclose(project(H, t.frame.points), np.array(truth.photo.frame_points_px), atol=1e-6)
    w, h = truth.photo.width, truth.photo.height
    for (x, y), inside in zip(truth.photo.frame_points_px, truth.photo.frame_points_inside):
        assert inside == (0 <= x <= w - 1 and 0 <= y <= h - 1)
    assert all(truth.photo.frame_points_inside)
    for x, y in truth.photo.page_corners_px:  # usable: the whole sheet is in the frame
        assert 0 <= x < w and 0 <= y < h
    assert truth.photo.box_px >= 30
    # the truth JSON round-trips
    assert PageTruth.model_validate_json(truth.model_dump_json()) == truth


def test_fiducial_is_dark_where_truth_puts_it():
    data, truth = generate_page("ppwp-2024-plano-p2", seed=4, index=1, options=FAST)
    img = cv2.cvtColor(_decode(data), cv2.COLOR_BGR2GRAY)
    t = get_template(truth.template_id)
    H = np.array(truth.photo.homography)
    s = t.frame.square_mm
    x, y = t.frame.points[0]
    # checker fiducial: the square up-left of the touch point is black, the one up-right is paper
    black = project(H, [(x - s / 2, y - s / 2)])[0]
    paper = project(H, [(x + s / 2, y - s / 2)])[0]
    val = lambda p: float(img[int(round(p[1])), int(round(p[0]))])  # noqa: E731
    assert val(black) + 60 < val(paper)


@pytest.mark.parametrize("reason", ["cut_off", "blurry", "too_dark", "glare", "too_small", "occluded"])
def test_unusable_photos_carry_their_reason(reason):
    opts = SynthOptions(megapixels=(2.0, 3.0), use_shared_data=False, force_reason=reason)
    data, truth = generate_page("ppwp-2024-plano-p1", seed=8, index=0, options=opts)
    assert truth.unreadable_reason == reason
    assert reason in {r.value for r in UnreadableReason}
    img = _decode(data)
    t = get_template(truth.template_id)
    if reason == "cut_off":
        H = np.array(truth.photo.homography)
        pts = project(H, [c for f in t.fields for b in f.boxes for c in b.corners()])
        boxes_in = ((pts >= 0) & (pts < [truth.photo.width, truth.photo.height])).all(axis=1)
        assert not all(truth.photo.frame_points_inside) or not boxes_in.all()
    elif reason == "too_small":
        assert truth.photo.box_px < 20
    elif reason == "too_dark":
        assert float(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).mean()) < 45
    elif reason == "occluded":
        assert any(b.covered for f in truth.fields for b in f.boxes)


def test_random_unusable_rate_labels_every_unusable_photo():
    opts = SynthOptions(megapixels=(2.0, 2.5), use_shared_data=False, unusable_rate=1.0)
    for i in range(3):
        _, truth = generate_page("ppwp-2024-plano-p3", seed=1, index=i, options=opts)
        assert truth.unreadable_reason in {r.value for r in UnreadableReason}


def test_wrong_page_names_its_slot():
    opts = SynthOptions(megapixels=(2.0, 2.5), use_shared_data=False, force_wrong_page=True, force_reason="")
    _, truth = generate_page("ppwp-2024-plano-p2", seed=3, index=0, options=opts)
    assert truth.expected_template == "ppwp-2024-plano-p2"
    assert truth.template_id != truth.expected_template
    assert truth.wrong_page
    assert {f.id for f in truth.fields} == {f.id for f in get_template(truth.template_id).fields}


# --- tally model --------------------------------------------------------------------------------------------------


def test_consistent_ppwp_2024_tally_holds_every_rule():
    cap = get_settings().profile("pemilu_2024").max_voters_per_tps
    for i in range(40):
        ft = draw_form_tally(np.random.default_rng(i), "ppwp-2024-plano-p1", mistake_rate=0.0)
        v = ft.values
        assert ft.mistake is None and ft.consistent, ft.broken
        # the printed identities, checked directly rather than through the evaluator
        assert v["2:IV.1"] + v["2:IV.2"] + v["2:IV.3"] == v["3:V.A"]
        assert v["3:V.A"] + v["3:V.B"] == v["3:V.C"] == v["1:I.B4.LP"] == v["1:II.2"]
        for col in ("L", "P", "LP"):
            assert sum(v[f"1:I.B{k}.{col}"] for k in (1, 2, 3)) == v[f"1:I.B4.{col}"]
            assert v[f"1:I.B1.{col}"] <= v[f"1:I.A.{col}"]
        assert v["1:II.1"] == v["1:II.2"] + v["1:II.3"] + v["1:II.4"]
        assert v["1:I.A.LP"] <= cap and v["1:I.B4.LP"] <= cap
        assert v["1:II.1"] <= v["1:I.A.LP"] + int(np.ceil(0.02 * v["1:I.A.LP"]))
        assert (v["3:tanggal"], v["3:bulan"], v["3:tahun"]) == (14, 2, 2024)


@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_every_template_gets_a_consistent_tally(template_id):
    fs, templates = pages_of(template_id)
    for i in range(10):
        ft = draw_form_tally(np.random.default_rng(100 + i), template_id, mistake_rate=0.0)
        assert ft.consistent, (template_id, ft.broken)
        for t in templates:
            for f in t.fields:
                assert f.min <= ft.values[qualify(t.page, f.id)] <= f.max


def test_mistake_forms_break_a_rule_and_say_which():
    seen = 0
    for i in range(30):
        ft = draw_form_tally(np.random.default_rng(i), "ppwp-2024-plano-p2", mistake_rate=1.0)
        if ft.mistake is None:
            continue
        seen += 1
        assert not ft.consistent and ft.broken
        m = ft.mistake
        assert ft.values[m.field] == m.written != m.intended == ft.intended[m.field]
    assert seen >= 25


def test_page_truth_values_match_form_values():
    _, truth = generate_page("ppwp-2024-plano-p3", seed=9, index=2, options=FAST)
    t = get_template(truth.template_id)
    for f in truth.fields:
        assert f.value == chars_value(f.text) == truth.form.values[qualify(t.page, f.id)]


# --- tally strokes and row totals ---------------------------------------------------------------------------------


def _cell_ink(dark: np.ndarray, H: np.ndarray, grid, row: int, col: int) -> float:
    """How much darker than the paper the middle of one tally cell gets (its printed lines left out)."""
    cw, ch = grid.rect.w / grid.cols, grid.rect.h / grid.rows
    x, y = grid.rect.x + col * cw, grid.rect.y + row * ch
    crop = warp_region(dark, H, Rect(x=x + 0.1 * cw, y=y + 0.1 * ch, w=0.8 * cw, h=0.8 * ch), 48, 48).astype(np.float32)
    return float(np.percentile(crop, 99) - np.percentile(crop, 25))


def test_tally_strokes_and_row_totals_count_the_votes():
    opts = SynthOptions(megapixels=(3.0, 3.0), use_shared_data=False, force_reason="", force_wrong_page=False,
                        occluder_rate=0.0, nonplanar_rate=0.0, mistake_rate=0.0)
    t = get_template("ppwp-2024-plano-p2")
    data, truth = generate_page(t.id, seed=9, index=1, options=opts)
    dark = darkness_image(_decode(data))
    H = np.array(truth.photo.homography)
    for ft in truth.fields:
        spec = t.field(ft.id)
        assert 0 < ft.value < 300
        rows = ft.row_totals
        assert rows is not None and len(rows) == len(spec.row_totals) == spec.tally.rows
        # filled row by row: full rows of 60, then the rest, then empty rows
        assert [r.value for r in rows] == tally_rows(ft.value, spec.tally)
        assert sum(r.value for r in rows) == ft.value
        for r, boxes in zip(rows, spec.row_totals):
            assert len(r.text) == len(r.boxes) == len(boxes) and r.value == chars_value(r.text)
        # strokes in the first cell, none in the grid's last cell (it would hold votes 296-300)
        assert _cell_ink(dark, H, spec.tally, 0, 0) > 60
        assert _cell_ink(dark, H, spec.tally, spec.tally.rows - 1, spec.tally.cols - 1) < 30
    assert PageTruth.model_validate_json(truth.model_dump_json()) == truth


def test_truth_without_row_totals_still_loads():
    _, truth = generate_page("ppwp-2024-plano-p1", seed=2, index=0, options=FAST)
    assert all(f.row_totals is None for f in truth.fields)  # no tally grid on page 1
    doc = json.loads(truth.model_dump_json())
    for f in doc["fields"]:
        del f["row_totals"]  # a truth file written before row totals existed
    assert PageTruth.model_validate(doc) == truth


def test_single_wide_row_cells_hold_the_whole_number():
    _, truth = generate_page("ppwp-2019-plano-l2", seed=3, index=0, options=FAST)
    t = get_template(truth.template_id)
    for ft in truth.fields:
        spec = t.field(ft.id)
        if spec.tally is None:
            continue
        assert not spec.row_totals_boxed  # one cell per row: a digit per half of it
        assert [r.value for r in ft.row_totals] == tally_rows(ft.value, spec.tally)
        assert all(len(r.text) == 2 for r in ft.row_totals)


def _p2_fill(values: dict[str, int], rng: np.random.Generator, **kw):
    t = get_template("ppwp-2024-plano-p2")
    bank = glyph_bank(None, False)
    canvas = cv2.cvtColor(blank_page_gray(t.id, 1.0), cv2.COLOR_GRAY2BGR)
    return t, bank, fill_page(canvas, 1.0, t, values, bank, draw_writer(np.random.default_rng(1), bank), rng, **kw)


def test_tally_counts_the_intended_votes_when_the_written_total_is_a_mistake():
    written = {"IV.1": 75, "IV.2": 60, "IV.3": 10}
    _, _, fields = _p2_fill(written, np.random.default_rng(2), intended={**written, "IV.1": 57})
    f = fields[0]
    assert f.value == 75 and [r.value for r in f.row_totals] == [57, 0, 0, 0, 0]
    assert [r.value for r in fields[1].row_totals] == [60, 0, 0, 0, 0]


def test_tallies_draw_nothing_from_the_page_generator():
    """The boxes and the photo keep the random numbers they had before tallies were drawn (reproducible corpora)."""
    values = {"IV.1": 130, "IV.2": 45, "IV.3": 0}
    with_tallies = np.random.default_rng([5, 6])
    t, bank, fields = _p2_fill(values, with_tallies)
    assert all(f.row_totals for f in fields)
    boxes_only = np.random.default_rng([5, 6])
    canvas = cv2.cvtColor(blank_page_gray(t.id, 1.0), cv2.COLOR_GRAY2BGR)
    filler = PageFiller(canvas, 1.0, t, bank, draw_writer(np.random.default_rng(1), bank), boxes_only)
    assert [filler.write_field(f, values[f.id]) for f in t.fields] == [f.model_copy(update={"row_totals": None})
                                                                       for f in fields]
    assert with_tallies.random() == boxes_only.random()


# --- writing conventions ------------------------------------------------------------------------------------------


def test_field_chars_conventions():
    rng = np.random.default_rng(0)
    assert field_chars(86, 3, "count", "X", rng) == "X86"
    assert field_chars(86, 3, "count", "0", rng) == "086"
    assert field_chars(7, 3, "count", "-", rng) == "--7"
    assert field_chars(7, 3, "count", "_", rng) == "__7"
    assert field_chars(254, 3, "count", "X", rng) == "254"
    assert field_chars(2, 2, "date_month", "X", rng) == "02"
    assert field_chars(2024, 4, "date_year", "X", rng) == "2024"
    zeros = {field_chars(0, 3, "count", "X", np.random.default_rng(s)) for s in range(20)}
    assert zeros == {"XX0", "XXX"}
    assert all(chars_value(z) == 0 for z in zeros)


def test_omr_truth_follows_the_digits():
    opts = SynthOptions(megapixels=(2.0, 2.5), use_shared_data=False, force_reason="")
    for i in range(4):
        _, truth = generate_page("ppwp-2024-plano-p2", seed=21, index=i, options=opts)
        for f in truth.fields:
            assert f.omr is not None and len(f.omr) == 3
            for col, ch in zip(f.omr, f.text):
                if ch.isdigit():
                    assert col.intended == int(ch)
                if col.quality == "blank":
                    assert col.filled == [] and col.intended is None
                else:
                    assert col.intended in col.filled


# --- glyph sources (need ../shared/data) --------------------------------------------------------------------------

needs_data = pytest.mark.skipif(
    not (default_data_dir() / "mnist").exists(), reason="shared data (../shared/data or $C1OCR_SHARED_DATA) not present"
)


@needs_data
def test_glyph_bank_uses_the_disjoint_slices():
    bank = glyph_bank(None, True)
    n = sum(len(v) for v in bank.mnist.values())
    assert n == MNIST_SYNTH_SLICE[1] - MNIST_SYNTH_SLICE[0]
    assert sum(len(v) for v in bank.usps.values()) == 7291 - 6000
    assert len(bank.fonts) >= 30
    g, src = bank.digit(np.random.default_rng(0), "7", "font", font_index=3)
    assert src == "font" and g.max() > 0.5


@needs_data
def test_real_handwriting_page_is_deterministic():
    opts = SynthOptions(megapixels=(2.0, 2.5))
    a = generate_page("ppwp-2024-plano-p3", seed=1, index=0, options=opts)
    b = generate_page("ppwp-2024-plano-p3", seed=1, index=0, options=opts)
    assert a[0] == b[0]
    assert {bt.source for f in a[1].fields for bt in f.boxes} - {"none"}


# --- CLI ----------------------------------------------------------------------------------------------------------


def test_cli_writes_images_and_truth(tmp_path):
    from typer.testing import CliRunner

    from ocr.cli import app

    out = tmp_path / "corpus"
    res = CliRunner().invoke(
        app,
        ["synth", "--template", "ppwp-2024-plano-p3", "--n", "2", "--seed", "4", "--out", str(out),
         "--no-shared-data", "--megapixels", "2,2.5"],
    )
    assert res.exit_code == 0, res.output
    jpgs = sorted(out.glob("*.jpg"))
    assert [p.name for p in jpgs] == ["ppwp-2024-plano-p3-s4-00000.jpg", "ppwp-2024-plano-p3-s4-00001.jpg"]
    for p in jpgs:
        truth = PageTruth.model_validate(json.loads(p.with_suffix(".json").read_text()))
        assert truth.image == p.name and truth.seed == 4
        assert _decode(p.read_bytes()).shape[:2] == (truth.photo.height, truth.photo.width)


def test_cli_rejects_bad_megapixels(tmp_path):
    from typer.testing import CliRunner

    from ocr.cli import app

    res = CliRunner().invoke(app, ["synth", "--template", "ppwp-2024-plano-p3", "--out", str(tmp_path),
                                   "--megapixels", "12,2"])
    assert res.exit_code != 0


def test_generated_mistake_pages_keep_the_tally_of_the_true_count():
    """A KPPS arithmetic mistake is in the written total only: the strokes and row totals still count the votes."""
    from ocr.synth.corpus import SynthOptions, generate_page

    options = SynthOptions(use_shared_data=False, mistake_rate=1.0, force_reason="", force_wrong_page=False)
    seen = 0
    for index in range(40):
        _, truth = generate_page("ppwp-2024-plano-p2", 11, index, options)
        m = truth.form.mistake
        if m is None or not m.field.startswith("2:"):
            continue
        f = next(f for f in truth.fields if f"2:{f.id}" == m.field)
        if f.row_totals is None or m.intended > 300:  # beyond the grid's room nothing more is drawn
            continue
        assert f.value == m.written != m.intended
        assert sum(r.value for r in f.row_totals) == m.intended
        seen += 1
    assert seen >= 1
