"""CnnReader: the shipped ONNX digit model through cv2.dnn, on cells drawn here (no shared data needed)."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from ocr.cells import BOX_PX, CROP_PX, MARGIN_PX, PreparedCell, prepare_cell
from ocr.errors import MissingDependency
from ocr.read.base import CLASSES, N_CLASSES, DigitReader
from ocr.read.cnn import DEFAULT_MODEL, CnnReader

needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="ocr/read/models/digits.onnx not built yet")

BORDER = 3


def _box() -> np.ndarray:
    """An empty canonical darkness crop: paper 10, printed box border 230."""
    crop = np.full((CROP_PX, CROP_PX), 10, np.uint8)
    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    cv2.rectangle(crop, (a, a), (b, b), 230, BORDER)
    return crop


def _digit_cell(ch: str) -> PreparedCell:
    """A clearly written digit (Hershey simplex, marker-thick) centred in the box."""
    crop = _box()
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 1.6, 5
    (w, h), _ = cv2.getTextSize(ch, font, scale, thick)
    org = (CROP_PX // 2 - w // 2, CROP_PX // 2 + h // 2)
    cv2.putText(crop, ch, org, font, scale, 240, thick, cv2.LINE_AA)
    return prepare_cell(crop, BORDER)


def _x_cell() -> PreparedCell:
    crop = _box()
    cv2.line(crop, (30, 28), (66, 68), 240, 5, cv2.LINE_AA)
    cv2.line(crop, (66, 28), (30, 68), 240, 5, cv2.LINE_AA)
    return prepare_cell(crop, BORDER)


def _dash_cell() -> PreparedCell:
    crop = _box()
    cv2.line(crop, (34, 48), (62, 49), 240, 5, cv2.LINE_AA)
    return prepare_cell(crop, BORDER)


@pytest.fixture(scope="module")
def reader() -> CnnReader:
    return CnnReader()


def test_reader_implements_protocol():
    r = CnnReader()
    assert isinstance(r, DigitReader)
    assert r.name == "cnn"


@needs_model
def test_reads_clearly_written_digits_x_and_dash(reader):
    chars = [str(d) for d in range(10)]
    cells = [_digit_cell(c) for c in chars] + [_x_cell(), _dash_cell()]
    assert not any(c.empty for c in cells)
    preds = reader.read(cells)
    got = [p.topk(1)[0][0] for p in preds]
    assert got == chars + ["X", "_"]
    for p in preds:
        assert p.probs.shape == (N_CLASSES,)
        assert abs(p.probs.sum() - 1) < 1e-6


@needs_model
def test_empty_cell_gets_blank_without_the_net(reader):
    empty = prepare_cell(_box(), BORDER)
    assert empty.empty
    pred = reader.read([empty])[0]
    assert pred.topk(1)[0][0] == "_"


@needs_model
def test_bad_cell_is_a_per_cell_error_not_a_failed_page(reader):
    good = _digit_cell("4")
    bad = PreparedCell(
        input=np.zeros((5, 7), np.float32),
        ink_fraction=0.1,
        empty=False,
        line_offset_px=(0, 0),
        lines_found=4,
        touches_border=False,
    )
    preds = reader.read([good, bad, good])
    assert preds[0].ok and preds[2].ok
    assert not preds[1].ok and "shape" in preds[1].error
    assert preds[0].topk(1)[0][0] == "4"


@needs_model
def test_batch_equals_single_reads(reader):
    cells = [_digit_cell("3"), _x_cell(), _digit_cell("8")]
    batch = reader.read(cells)
    single = [reader.read([c])[0] for c in cells]
    for a, b in zip(batch, single):
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)


@needs_model
def test_threads_share_one_reader(reader):
    cells = [_digit_cell("6")] * 4
    results: list = []

    def work():
        results.append([p.topk(1)[0][0] for p in reader.read(cells)])

    ts = [threading.Thread(target=work) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results == [["6"] * 4] * 4


@needs_model
def test_model_info_has_sha256_and_card(reader):
    import hashlib

    info = reader.model_info()
    assert info["sha256"] == hashlib.sha256(DEFAULT_MODEL.read_bytes()).hexdigest()
    assert tuple(info["card"]["classes"]) == CLASSES


def test_corrupt_model_file_is_missing_dependency(tmp_path):
    bad = tmp_path / "digits.onnx"
    bad.write_bytes(b"this is not an onnx graph")
    with pytest.raises(MissingDependency) as e:
        CnnReader(bad).read([_dash_cell()])
    assert e.value.code == "model_corrupt"


def test_missing_model_file_is_missing_dependency(tmp_path):
    with pytest.raises(MissingDependency) as e:
        CnnReader(tmp_path / "nope.onnx").model_info()
    assert "c1ocr train" in e.value.message
