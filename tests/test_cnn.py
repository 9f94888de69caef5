"""CnnReader: the shipped ONNX digit model through cv2.dnn, on cells drawn here (no shared data needed)."""

from __future__ import annotations

import json
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


def _tiny_model(path, planes: int, card_planes: int | None = None):
    """A hand-built ONNX "digit model" over `planes` input planes: softmax of each plane's mean ink times a fixed
    weight per class, so what it answers shows which planes the reader fed it. Its card states `card_planes`."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = np.zeros((planes, N_CLASSES), np.float32)
    w[0, CLASSES.index("1")] = 40.0  # glyph ink -> "1"
    if planes == 2:
        w[1, CLASSES.index("_")] = 400.0  # placement ink -> "_"
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["glyph"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["mean", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("glyph", TensorProto.FLOAT, ["n", planes, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", N_CLASSES])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    shape = [card_planes or planes, 32, 32]
    path.with_suffix(".json").write_text(json.dumps({"classes": list(CLASSES), "input": {"shape": shape}}))
    return path


def test_the_reader_feeds_the_planes_the_model_card_asks_for(tmp_path):
    cell = _digit_cell("1")
    glyph_only = CnnReader(_tiny_model(tmp_path / "one" / "digits.onnx", 1)).read([cell])[0]
    with_place = CnnReader(_tiny_model(tmp_path / "two" / "digits.onnx", 2)).read([cell])[0]
    assert CLASSES[int(np.argmax(glyph_only.probs))] == "1"
    # The same cell through the two-plane model: its placement plane (here weighted to "_") reached the net.
    assert CLASSES[int(np.argmax(with_place.probs))] == "_"
    no_place = PreparedCell(cell.input, cell.ink_fraction, False, (0.0, 0.0), 4, False)  # built without placement
    assert CLASSES[int(np.argmax(CnnReader(tmp_path / "two" / "digits.onnx").read([no_place])[0].probs))] == "1"


def test_a_card_that_misstates_the_input_is_model_corrupt(tmp_path):
    for planes, card_planes in ((1, 2), (2, 3)):
        path = _tiny_model(tmp_path / f"m{planes}{card_planes}" / "digits.onnx", planes, card_planes)
        with pytest.raises(MissingDependency) as e:
            CnnReader(path).read([_dash_cell()])
        assert e.value.code == "model_corrupt"


def test_an_unreadable_model_card_is_model_corrupt(tmp_path):
    path = _tiny_model(tmp_path / "m" / "digits.onnx", 1)
    path.with_suffix(".json").write_text("{ not json")
    with pytest.raises(MissingDependency) as e:
        CnnReader(path).read([_dash_cell()])
    assert e.value.code == "model_corrupt" and "digits.json" in e.value.message


def test_a_glyph_only_net_joins_a_two_plane_ensemble_on_the_glyph_plane(tmp_path):
    pytest.importorskip("torch")
    from ocr.errors import BadInput
    from ocr.read.train import merge_models

    one, two = _tiny_model(tmp_path / "a" / "digits.onnx", 1), _tiny_model(tmp_path / "b" / "digits.onnx", 2)
    merged = tmp_path / "ens" / "digits.onnx"
    card = merge_models([one, two], merged)
    assert card["input"]["shape"] == [2, 32, 32]
    x = np.random.default_rng(4).random((5, 2, 32, 32)).astype(np.float32)
    want = (CnnReader(one).predict_inputs(x[:, :1]) + CnnReader(two).predict_inputs(x)) / 2
    np.testing.assert_allclose(CnnReader(merged).predict_inputs(x), want, atol=1e-5)
    # A member that takes neither one nor two planes has no place in it.
    three = _tiny_model(tmp_path / "c" / "digits.onnx", 2, card_planes=3)
    with pytest.raises(BadInput) as e:
        merge_models([one, three], tmp_path / "bad" / "digits.onnx")
    assert e.value.code == "ensemble_mismatch"
    assert not (tmp_path / "bad" / "digits.onnx").exists()
