"""Cells stage: local search for the printed box lines, border removal, ink and normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr.cells import BOX_PX, CELL_PX, CROP_PX, MARGIN_PX, extract_cells, find_box_lines, normalise_ink, prepare_cell
from ocr.templates import get_template


def _crop(dx=0, dy=0, border=3, digit=None, faint=False, neighbour_gap=None) -> np.ndarray:
    """A canonical darkness crop: a printed box displaced by (dx, dy) px, optionally with a digit inside."""
    img = np.zeros((CROP_PX, CROP_PX), np.uint8)
    a, b = MARGIN_PX + dx, MARGIN_PX + BOX_PX + dx
    c, d = MARGIN_PX + dy, MARGIN_PX + BOX_PX + dy
    cv2.rectangle(img, (a, c), (b, d), 230, border)
    if neighbour_gap is not None:  # the next box's left border, a few px to the right
        x = b + neighbour_gap
        cv2.line(img, (x, 0), (x, CROP_PX - 1), 255, border + 1)
    if digit is not None:
        ink = 90 if faint else 250
        cv2.putText(img, digit, (a + 16, d - 14), cv2.FONT_HERSHEY_SIMPLEX, 1.6, ink, 4)
    return img


@pytest.mark.parametrize("dx,dy", [(0, 0), (6, -4), (-8, 7)])
def test_box_lines_found_where_the_paper_put_them(dx, dy):
    (x0, x1, y0, y1), found = find_box_lines(_crop(dx, dy), 3)
    assert found == 4
    assert abs(x0 - (MARGIN_PX + dx)) <= 1 and abs(x1 - (MARGIN_PX + BOX_PX + dx)) <= 1
    assert abs(y0 - (MARGIN_PX + dy)) <= 1 and abs(y1 - (MARGIN_PX + BOX_PX + dy)) <= 1


def test_nearest_line_wins_over_a_darker_neighbour():
    (x0, x1, _, _), _ = find_box_lines(_crop(neighbour_gap=6), 3)
    assert abs(x1 - (MARGIN_PX + BOX_PX)) <= 1


def test_empty_box_is_empty_and_its_border_is_not_ink():
    cell = prepare_cell(_crop(5, -3), 3)
    assert cell.empty and cell.ink_fraction < 0.004
    assert cell.input.shape == (CELL_PX, CELL_PX) and cell.input.max() == 0


@pytest.mark.parametrize("faint", [False, True])
def test_digit_is_found_and_centred(faint):
    cell = prepare_cell(_crop(-5, 4, digit="7", faint=faint), 3)
    assert not cell.empty
    ys, xs = np.nonzero(cell.input > 0.5)
    assert 24 - 3 <= (ys.max() - ys.min() + 1) <= 24 + 1  # normalised to the glyph size
    cy, cx = np.average(np.indices(cell.input.shape), axis=(1, 2), weights=cell.input)
    assert abs(cy - CELL_PX / 2) < 3 and abs(cx - CELL_PX / 2) < 3


def test_dash_keeps_its_shape():
    img = _crop()
    cv2.line(img, (MARGIN_PX + 20, MARGIN_PX + 32), (MARGIN_PX + 44, MARGIN_PX + 32), 250, 4)
    cell = prepare_cell(img, 3)
    ys, xs = np.nonzero(cell.input > 0.5)
    assert (xs.max() - xs.min()) > 3 * (ys.max() - ys.min())  # still a flat bar, not blown up into a blob


def test_specks_are_not_ink():
    ink = np.zeros((60, 60), np.float32)
    ink[10, 10] = ink[40, 45] = 1.0
    glyph, frac, empty, placement = normalise_ink(ink)
    assert empty and glyph.max() == 0 and placement.max() == 0


def test_row_totals_are_cut_after_the_fields_where_each_row_has_a_box_per_digit():
    dark, H = np.zeros((8, 8), np.uint8), np.eye(3)  # where the boxes land does not matter here
    p2 = get_template("ppwp-2024-plano-p2")
    cells = extract_cells(dark, H, p2)
    rows = [f"IV.{n}#row{i}" for n in (1, 2, 3) for i in range(5)]
    assert list(cells) == [f.id for f in p2.fields] + rows  # fields first: their place in the batch is kept
    assert all(len(cells[k]) == 2 and [c.field_id for c in cells[k]] == [k, k] for k in rows)
    # 2019 plano: one wide cell per row cannot hold a two-digit count for a one-digit-per-box reader
    plano19 = get_template("ppwp-2019-plano-l2")
    assert any(f.row_totals for f in plano19.fields) and not any(f.row_totals_boxed for f in plano19.fields)
    assert list(extract_cells(dark, H, plano19)) == [f.id for f in plano19.fields]


def _glyph_aspect(glyph: np.ndarray) -> float:
    ys, xs = np.nonzero(glyph > 0.5)
    return (ys.max() - ys.min() + 1) / (xs.max() - xs.min() + 1)


def test_a_tall_box_gives_back_the_glyph_as_written():
    """A box twice as tall as wide (2014 / 2019 C1) reaches the square canonical crop squashed by half: a digit
    written 16 x 32 mm-ish arrives as a square blob, and a "2" as flat as a dash, unless the cell stage undoes it."""
    from ocr.cells import box_crop
    from ocr.templates.schema import Rect

    dpmm = 10.0
    box = Rect(x=10.0, y=10.0, w=8.5, h=17.0)
    page = np.zeros((400, 300), np.uint8)
    x0, y0, x1, y1 = (int(v * dpmm) for v in (box.x, box.y, box.x + box.w, box.y + box.h))
    cv2.rectangle(page, (x0, y0), (x1, y1), 230, 3)
    # a written stroke 2.5 mm wide and 10 mm tall: a plain "1"-like bar of aspect 4
    cv2.rectangle(page, (x0 + 30, y0 + 35), (x0 + 55, y0 + 135), 250, -1)
    crop = box_crop(page, np.diag([dpmm, dpmm, 1.0]), box)
    squashed = prepare_cell(crop, 3, 1.0)
    restored = prepare_cell(crop, 3, box.h / box.w)
    assert _glyph_aspect(squashed.input) == pytest.approx(2.0, rel=0.2)
    assert _glyph_aspect(restored.input) == pytest.approx(4.0, rel=0.2)
    # and the path every field and row total takes passes the box's aspect on
    from ocr.cells import extract_box_cells

    (cut,) = extract_box_cells(page, np.diag([dpmm, dpmm, 1.0]), get_template("ppwp-2014-c1-lampiran1"), "f", [box])
    assert _glyph_aspect(cut.cell.input) == pytest.approx(4.0, rel=0.2)


def _ink_components(glyph: np.ndarray) -> int:
    n, _ = cv2.connectedComponents((glyph > 0.5).astype(np.uint8), connectivity=8)
    return n - 1


def test_a_blurred_box_line_leaves_no_bar_beside_the_digit():
    """A scan blurs a hairline into a band several pixels wide. Cutting only the nominal border width left its flank
    inside the box: a bar beside the digit, and a thin "1" beside a bar read as a dash (2014 C1 scans)."""
    img = np.zeros((CROP_PX, CROP_PX), np.uint8)
    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    cv2.rectangle(img, (a, a), (b, b), 255, 3)
    img = cv2.GaussianBlur(img, (0, 0), 2.2)  # the line's flank now reaches several px past the nominal border
    cv2.line(img, (a + 33, a + 14), (a + 31, a + 50), 200, 3)  # a thin "1" in the middle of the box
    cell = prepare_cell(img, 2)
    assert not cell.empty
    edge = np.concatenate([cell.interior[:, :2].ravel(), cell.interior[:, -2:].ravel()])
    assert (edge > 0.5).sum() == 0  # no remnant of the left or right line
    assert _ink_components(cell.input) == 1  # the glyph is the "1" alone
    ys, xs = np.nonzero(cell.input > 0.5)
    assert (ys.max() - ys.min()) > 3 * (xs.max() - xs.min() + 1)  # and still a tall thin stroke


def test_a_stroke_beside_the_box_line_is_not_taken_for_line():
    """The line's extent is measured along the whole box side: a digit stroke running beside the line for part of
    the side is writing, not line, and must survive."""
    img = _crop(border=3)
    a = MARGIN_PX
    cv2.line(img, (a + 5, a + 14), (a + 5, a + 40), 250, 2)  # the upright of a "1" written close to the left line
    cell = prepare_cell(img, 3)
    assert not cell.empty
    ys, xs = np.nonzero(cell.interior > 0.5)
    assert ys.max() - ys.min() >= 24  # the stroke is kept at its full length
    assert xs.max() - xs.min() >= 1  # and its full width


def test_a_small_one_in_a_tall_box_is_normalised_like_any_one():
    """In a tall box (2014 C1, twice as tall as wide) digits are written about as tall as the box is wide. The
    magnification cap follows the box's shorter side, so a "1" a third of the box's height fills the glyph
    height as the "1"s the net was trained on do, instead of coming out small like a line fragment."""
    from ocr.cells import GLYPH_PX, box_crop
    from ocr.templates.schema import Rect

    dpmm = 10.0
    box = Rect(x=10.0, y=10.0, w=8.5, h=17.0)
    page = np.zeros((400, 300), np.uint8)
    x0, y0, x1, y1 = (int(v * dpmm) for v in (box.x, box.y, box.x + box.w, box.y + box.h))
    cv2.rectangle(page, (x0, y0), (x1, y1), 230, 3)
    cv2.line(page, (x0 + 42, y0 + 60), (x0 + 40, y0 + 111), 250, 6)  # 5 mm tall: 30% of the box height
    crop = box_crop(page, np.diag([dpmm, dpmm, 1.0]), box)
    cell = prepare_cell(crop, 3, box.h / box.w)
    ys, _ = np.nonzero(cell.input > 0.5)
    assert ys.max() - ys.min() + 1 >= GLYPH_PX - 1


def test_a_line_remnant_out_of_a_corner_goes_but_a_one_by_the_edge_stays():
    """A box line darker at one end (or bowed) leaves only that end inside the box: a thin bar out of a corner,
    under the old rule's "most of the side" length. Kept, it shrank the digit beside it to a fragment once
    normalised (2014 C1 scans). A thin upright stroke by the edge that does not come out of a corner is writing."""
    from ocr.cells import drop_border_remnants

    ink = np.zeros((59, 59), np.float32)
    ink[0:15, 56:59] = 1.0  # the right line's top end, a quarter of the side
    cv2.line(ink, (20, 20), (38, 20), 1.0, 3)  # a "7"
    cv2.line(ink, (38, 20), (27, 45), 1.0, 3)
    out = drop_border_remnants(ink)
    assert out[0:15, 54:59].max() == 0.0  # the remnant is gone
    assert out[18:47, 18:41].sum() == pytest.approx(ink[18:47, 18:41].sum())  # the digit is untouched

    one = np.zeros((59, 59), np.float32)
    one[14:40, 55:58] = 1.0  # a "1" written against the right edge, clear of both corners
    assert drop_border_remnants(one).sum() == pytest.approx(one.sum())


def test_a_remnant_that_fades_in_and_out_is_still_one_line():
    """A faint remnant breaks into pieces at the ink threshold, each too short to be line; its faint pixels join
    them (2014 C1 scans: a bar beside a "4" that shrank it once normalised)."""
    from ocr.cells import drop_border_remnants

    ink = np.zeros((59, 59), np.float32)
    ink[12:58, 55:58] = 0.35  # faint along the whole run...
    for y0 in (14, 26, 38, 50):
        ink[y0 : y0 + 7, 55:58] = 0.9  # ...darker in pieces of 7 rows, each far under the side's length
    cv2.line(ink, (15, 25), (40, 25), 1.0, 3)  # a digit's bar
    out = drop_border_remnants(ink)
    assert out[:, 53:].max() == 0.0
    assert out[20:30, 14:42].sum() == pytest.approx(ink[20:30, 14:42].sum())


def test_placement_keeps_where_the_mark_sits_in_the_box_which_the_glyph_loses():
    """A short upright bar in the middle of a box (a small "1") and the same bar against the box's side (a line
    remnant) normalise to nearly the same glyph; the placement plane tells them apart."""

    def bar_at(x: int):
        img = _crop()
        cv2.line(img, (MARGIN_PX + x, MARGIN_PX + 24), (MARGIN_PX + x, MARGIN_PX + 40), 250, 4)
        return prepare_cell(img, 3)

    middle, side = bar_at(32), bar_at(10)
    assert not middle.empty and not side.empty
    assert np.abs(middle.input - side.input).max() < 0.3  # centred by mass: the glyphs hardly differ
    _, cx_mid = np.average(np.indices(middle.placement.shape), axis=(1, 2), weights=middle.placement)
    _, cx_side = np.average(np.indices(side.placement.shape), axis=(1, 2), weights=side.placement)
    assert abs(cx_mid - CELL_PX / 2) < 2 and cx_side < CELL_PX / 2 - 5
    # The placement plane is at box scale: the 16 px bar in a 64 px box is a quarter of its height there, while the
    # glyph plane magnifies it.
    rows_place = np.nonzero((middle.placement > 0.3).any(axis=1))[0]
    rows_glyph = np.nonzero((middle.input > 0.5).any(axis=1))[0]
    assert np.ptp(rows_place) <= 0.35 * CELL_PX < np.ptp(rows_glyph)
    planes = middle.channels(2)
    assert planes.shape == (2, CELL_PX, CELL_PX) and np.array_equal(planes[0], middle.input)
    assert middle.channels(1).shape == (1, CELL_PX, CELL_PX)
    with pytest.raises(ValueError):
        middle.channels(3)


def test_a_stroke_faint_between_dark_parts_is_kept_whole_and_a_faint_speck_is_not():
    """Hand shake smears the strokes across it and leaves those along it dark: a "7" whose stem fades to a third of
    the bar's darkness for a stretch keeps that stretch (a single threshold cut the "7" in two); faint ink that
    touches no stroke (paper grain, a shadow) stays out."""
    img = _crop()
    a = MARGIN_PX
    cv2.line(img, (a + 18, a + 16), (a + 46, a + 16), 250, 4)  # the bar, dark

    def stem(t: float) -> tuple[int, int]:
        return int(round(a + 46 - 16 * t)), int(round(a + 16 + 34 * t))

    cv2.line(img, stem(0), stem(0.25), 250, 4)  # the stem, dark ...
    cv2.line(img, stem(0.25), stem(0.55), 75, 4)  # ... faint for a stretch (11 px) ...
    cv2.line(img, stem(0.55), stem(1), 250, 4)  # ... and dark again
    cv2.circle(img, (a + 20, a + 40), 3, 75, -1)  # a faint speck on its own
    cell = prepare_cell(img, 3)
    n, _ = cv2.connectedComponents((cell.input > 0.1).astype(np.uint8), connectivity=8)
    assert n - 1 == 1  # one stroke, not a bar and a stem apart
    rows = np.nonzero((cell.input > 0.1).any(axis=1))[0]
    assert rows.max() - rows.min() >= 20
    # The speck's place in the box (the lower left of the placement plane) holds no ink.
    assert cell.placement[17:24, 4:11].max() < 0.05


def test_faint_ink_near_the_box_side_is_not_grown_into():
    """A scanned form's thick grey border leaves a faint band inside the box: a digit written close to it is not
    grown into it (it would hang a bar or a blob on the digit)."""
    img = _crop()
    a = MARGIN_PX
    cv2.line(img, (a + 32, a + 14), (a + 32, a + 54), 250, 4)  # a "1", its foot near the bottom line
    cv2.line(img, (a + 6, a + 58), (a + 58, a + 58), 75, 4)  # the faint band just inside the bottom line
    cell = prepare_cell(img, 3)
    cols = np.nonzero((cell.input > 0.1).any(axis=0))[0]
    assert cols.max() - cols.min() <= 4  # still a thin "1", no foot along the bottom


def test_box_lines_are_found_as_a_pair_when_a_curled_page_shifts_the_box():
    """A box 8 px right of where the homography puts it: the neighbouring box's (darker) line is as near to the
    expected left line as the box's own. The two lines a box width apart are the box."""
    img = _crop(dx=8)
    cv2.line(img, (MARGIN_PX - 8, 0), (MARGIN_PX - 8, CROP_PX - 1), 255, 4)
    (x0, x1, _, _), found = find_box_lines(img, 3)
    assert found == 4
    assert abs(x0 - (MARGIN_PX + 8)) <= 1 and abs(x1 - (MARGIN_PX + BOX_PX + 8)) <= 1


def test_box_lines_smeared_by_hand_shake_are_still_found():
    """Shake blurs each line into a low, wide ridge (here 11 px of horizontal shake on a box 8 px off, its
    neighbour's line 16 px to the left): the two ridges a box width apart are still the box, within 2 px."""
    img = np.full((CROP_PX, CROP_PX), 105, np.uint8)
    for x in (MARGIN_PX - 8, MARGIN_PX + 8, MARGIN_PX + BOX_PX + 8):
        cv2.line(img, (x, 0), (x, CROP_PX - 1), 230, 3)
    for y in (MARGIN_PX, MARGIN_PX + BOX_PX):
        cv2.line(img, (0, y), (CROP_PX - 1, y), 230, 3)
    img = cv2.filter2D(img, -1, np.full((1, 11), 1 / 11, np.float32), borderType=cv2.BORDER_REPLICATE)
    (x0, x1, y0, y1), found = find_box_lines(img, 3)
    assert found == 4
    assert abs(x0 - (MARGIN_PX + 8)) <= 2 and abs(x1 - (MARGIN_PX + BOX_PX + 8)) <= 2
    assert (y0, y1) == (MARGIN_PX, MARGIN_PX + BOX_PX)


@pytest.mark.parametrize("shift_px", [13, -12])
def test_a_box_far_off_its_predicted_place_is_found_and_cut_again_around_its_lines(monkeypatch, shift_px):
    """A curled page moves a box up to a fifth of a box off the page's homography: its lines are still found, and
    the box is cut again around them, so it has its full margin and the digit is whole."""
    from types import SimpleNamespace

    from ocr import cells as cells_mod
    from ocr.cells import extract_box_cells
    from ocr.templates.schema import Rect

    px_per_mm = 10.0
    H = np.diag([px_per_mm, px_per_mm, 1.0])
    box = Rect(x=20.0, y=20.0, w=BOX_PX / px_per_mm, h=BOX_PX / px_per_mm)  # a 64 px box in the photo
    dark = np.zeros((500, 500), np.uint8)
    x0, y0 = int(box.x * px_per_mm) + shift_px, int(box.y * px_per_mm)  # where the paper really put it
    cv2.rectangle(dark, (x0, y0), (x0 + BOX_PX, y0 + BOX_PX), 230, 3)
    for dx in (-BOX_PX - 8, BOX_PX + 8):  # the neighbours
        cv2.rectangle(dark, (x0 + dx, y0), (x0 + dx + BOX_PX, y0 + BOX_PX), 230, 3)
    cv2.line(dark, (x0 + 18, y0 + 16), (x0 + 46, y0 + 16), 250, 4)  # a "7"
    cv2.line(dark, (x0 + 46, y0 + 16), (x0 + 30, y0 + 50), 250, 4)
    template = SimpleNamespace(box_border_mm=0.3)

    (cc,) = extract_box_cells(dark, H, template, "f", [box])
    assert cc.cell.lines_found == 4
    assert abs(cc.cell.line_offset_px[0] - shift_px) <= 1  # reported from the first prediction
    (lx0, lx1, _, _), _ = find_box_lines(cc.crop, 3)
    assert abs(lx0 - MARGIN_PX) <= 1 and abs(lx1 - (MARGIN_PX + BOX_PX)) <= 1  # cut again around the lines
    rows = np.nonzero((cc.cell.input > 0.1).any(axis=1))[0]
    assert rows.max() - rows.min() >= 20  # the whole "7"

    monkeypatch.setattr(cells_mod, "RECENTRE_PX", 10_000)  # without the second cut the box sits off centre
    (first,) = extract_box_cells(dark, H, template, "f", [box])
    (fx0, _, _, _), _ = find_box_lines(first.crop, 3)
    assert abs(fx0 - (MARGIN_PX + shift_px)) <= 1


def test_a_box_beyond_its_search_window_is_found_where_its_field_neighbours_are():
    """The most curled pages move boxes further than the search window. A field's boxes move together: a box whose
    lines were not all found is cut again where its neighbours, whose lines were, say it is."""
    from types import SimpleNamespace

    from ocr.cells import SEARCH_PX, extract_box_cells
    from ocr.templates.schema import Rect

    px_per_mm = 10.0
    H = np.diag([px_per_mm, px_per_mm, 1.0])
    pitch = BOX_PX + 10  # boxes 10 px apart
    boxes = [Rect(x=20.0 + k * pitch / px_per_mm, y=20.0, w=BOX_PX / px_per_mm, h=BOX_PX / px_per_mm) for k in range(3)]
    shifts = [(14, 0), (14, 0), (SEARCH_PX + 3, 0)]  # the last box sits further right than its window reaches
    dark = np.zeros((500, 600), np.uint8)
    for box, (sx, sy) in zip(boxes, shifts):
        x0, y0 = int(box.x * px_per_mm) + sx, int(box.y * px_per_mm) + sy
        cv2.rectangle(dark, (x0, y0), (x0 + BOX_PX, y0 + BOX_PX), 230, 3)
        cv2.line(dark, (x0 + 32, y0 + 14), (x0 + 32, y0 + 50), 250, 4)  # a "1"
    cells = extract_box_cells(dark, H, SimpleNamespace(box_border_mm=0.3), "f", boxes)
    assert [c.cell.lines_found for c in cells] == [4, 4, 4]
    last = cells[2].cell
    assert abs(last.line_offset_px[0] - (SEARCH_PX + 3)) <= 1 and abs(last.line_offset_px[1]) <= 1
