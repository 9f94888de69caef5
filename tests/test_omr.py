"""OMR bubble columns on a synthetic PPWP 2024 page 2: the blank page, bubbles blackened for known numbers, warped
with a known perspective homography, read back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr.cells import darkness_image
from ocr.geometry import scale_matrix, translate_matrix
from ocr.read import omr as O
from ocr.results import OmrReading
from ocr.templates import get_template
from ocr.templates.render import blank_page

DPMM = 4.0  # the synthetic "scan" resolution before the perspective warp
TEMPLATE = get_template("ppwp-2024-plano-p2")
F1, F2, F3 = (TEMPLATE.field(fid) for fid in ("IV.1", "IV.2", "IV.3"))


def blacken(img: np.ndarray, field, col: int, digit: int, frac: float = 0.9, color=(140, 50, 30)) -> None:
    """Fill bubble `digit` of column `col` with blue-black marker (a disc of `frac` x the bubble radius)."""
    column = field.omr[col]
    b = column.bubbles[column.values.index(digit)]
    centre = (int(round(b.cx * DPMM)), int(round(b.cy * DPMM)))
    cv2.circle(img, centre, int(round(b.r * DPMM * frac)), color, -1, cv2.LINE_AA)


def photograph(page: np.ndarray, blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Warp the page with a known perspective, as a tilted phone would; returns (darkness image, H page mm -> px)."""
    h, w = page.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[120, 80], [w * 0.8 + 60, 30], [w * 0.85 + 100, h * 0.9], [40, h * 0.95]])
    P = cv2.getPerspectiveTransform(src, dst)
    photo = cv2.warpPerspective(page, P, (int(w * 0.9) + 200, h), borderValue=(90, 90, 90))
    if blur:
        photo = cv2.GaussianBlur(photo, (0, 0), blur)
    return darkness_image(photo), P @ scale_matrix(DPMM)


@pytest.fixture(scope="module")
def blank_bgr() -> np.ndarray:
    return cv2.cvtColor(np.array(blank_page(TEMPLATE, DPMM)), cv2.COLOR_GRAY2BGR)


@pytest.fixture(scope="module")
def marked_photo(blank_bgr):
    page = blank_bgr.copy()
    blacken(page, F1, 1, 4)
    blacken(page, F1, 2, 7)  # IV.1 = 47, hundreds column left blank (the box has an X)
    blacken(page, F2, 0, 2)
    blacken(page, F2, 1, 0)
    blacken(page, F2, 2, 9, frac=0.6)  # IV.2 = 209, the last bubble only partly blackened
    blacken(page, F3, 1, 3)
    blacken(page, F3, 1, 5)  # IV.3: two bubbles in the tens column
    blacken(page, F3, 2, 1)
    return photograph(page)


def test_reads_back_the_numbers(marked_photo):
    dark, H = marked_photo
    r1 = O.read_omr(dark, H, F1, TEMPLATE)
    assert isinstance(r1, OmrReading)
    assert r1.digits == [None, 4, 7] and r1.value == 47
    assert r1.confidence > 0.8
    assert len(r1.fills) == 3 and all(len(col) == 10 for col in r1.fills)
    assert r1.fills[1][4] > 0.5 and max(r1.fills[0]) < O.BLANK_FILL
    r2 = O.read_omr(dark, H, F2, TEMPLATE)
    assert r2.digits == [2, 0, 9] and r2.value == 209


def test_two_filled_bubbles_in_a_column_give_none(marked_photo):
    dark, H = marked_photo
    r3 = O.read_omr(dark, H, F3, TEMPLATE)
    assert r3.digits[1] is None and r3.digits[2] == 1
    assert r3.value is None and r3.confidence == 0.0
    cols = O.read_omr_columns(dark, H, F3, TEMPLATE)
    assert [c.status for c in cols] == ["blank", "ambiguous", "marked"]


def test_no_bubble_filled_gives_none(blank_bgr):
    dark, H = photograph(blank_bgr.copy())
    r = O.read_omr(dark, H, F1, TEMPLATE)
    assert r.digits == [None, None, None] and r.value is None
    assert all(max(col) < O.BLANK_FILL for col in r.fills)  # the printed rings and digits are not marks


def test_registration_error_is_absorbed_by_the_local_search(marked_photo):
    dark, H = marked_photo
    for dx, dy in [(2.0, -1.5), (-2.5, 2.0)]:
        off = H @ translate_matrix(dx, dy)  # H now puts every bubble 2-3 mm away from where it is
        r = O.read_omr(dark, off, F1, TEMPLATE)
        assert r.value == 47
        col = O.read_omr_columns(dark, off, F1, TEMPLATE)[1]
        assert col.offset_mm == pytest.approx((-dx, -dy), abs=0.6)


def test_template_is_found_when_not_given(marked_photo):
    dark, H = marked_photo
    assert O.read_omr(dark, H, F1).value == 47


def test_relative_scoring_without_a_blank_page(marked_photo):
    dark, H = marked_photo
    col = O.read_column(dark, H, F1.omr[2], None)
    assert col.status == "marked" and col.digit == 7


def test_a_missing_digit_after_a_marked_column_gives_none(blank_bgr):
    page = blank_bgr.copy()
    blacken(page, F1, 0, 4)
    blacken(page, F1, 2, 7)
    dark, H = photograph(page)
    r = O.read_omr(dark, H, F1, TEMPLATE)
    assert r.digits == [4, None, 7] and r.value is None


def test_soft_photo_still_reads(blank_bgr):
    page = blank_bgr.copy()
    blacken(page, F2, 0, 1)
    blacken(page, F2, 1, 8)
    blacken(page, F2, 2, 3)
    dark, H = photograph(page, blur=3.0)
    assert O.read_omr(dark, H, F2, TEMPLATE).value == 183


def test_column_outside_the_photo_is_not_read(marked_photo):
    dark, H = marked_photo
    far = H @ translate_matrix(2000.0, 0.0)  # the field maps far outside the image
    r = O.read_omr(dark, far, F1, TEMPLATE)
    assert r.value is None and r.digits == [None, None, None]


def test_decide_column_rules():
    values = list(range(10))
    blank = [0.01] * 10
    assert O.decide_column(blank, values)[:2] == ("blank", None)
    one = blank.copy()
    one[6] = 0.7
    status, digit, conf = O.decide_column(one, values)
    assert (status, digit) == ("marked", 6) and conf > 0.99
    two = one.copy()
    two[2] = 0.65
    assert O.decide_column(two, values)[:2] == ("ambiguous", None)
    faint = blank.copy()
    faint[3] = (O.BLANK_FILL + O.MARK_FILL) / 2  # above blank, below a mark: neither
    assert O.decide_column(faint, values)[0] == "ambiguous"
    close = blank.copy()
    close[1] = O.MARK_FILL + 0.05
    close[2] = close[1] - O.MIN_MARGIN / 2  # a mark, but the second darkest is too close
    assert O.decide_column(close, values)[0] == "ambiguous"


def _col(status, digit=None, conf=0.95):
    return O.ColumnReading(status, digit, [0.0] * 10, conf, (0.0, 0.0), 0.9)


def test_combine_columns_leading_blanks_count_as_zero():
    assert O.combine_columns([_col("blank"), _col("blank"), _col("marked", 5)])[0] == 5
    assert O.combine_columns([_col("marked", 0), _col("marked", 0), _col("marked", 0)])[0] == 0
    assert O.combine_columns([_col("marked", 3), _col("marked", 0), _col("marked", 0)])[0] == 300
    assert O.combine_columns([_col("blank"), _col("blank"), _col("blank")]) == (None, 0.0)
    assert O.combine_columns([_col("marked", 1), _col("blank"), _col("marked", 2)]) == (None, 0.0)
    assert O.combine_columns([_col("ambiguous"), _col("marked", 1), _col("marked", 2)]) == (None, 0.0)
    value, conf = O.combine_columns([_col("blank", conf=0.9), _col("marked", 1, 0.8), _col("marked", 2, 0.5)])
    assert value == 12 and conf == pytest.approx(0.36)
