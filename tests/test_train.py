"""Training pipeline: synthetic cells, a quick training run, ONNX export read back by cv2.dnn."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from ocr.cells import CELL_PX, CROP_PX, prepare_cell
from ocr.read import cells_synth
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES, X_INDEX
from ocr.read.cells_synth import GlyphBank, default_data_dir

SHARED = default_data_dir()
needs_shared = pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"shared data not found at {SHARED}")


def test_procedural_cells_are_deterministic_and_prepared(tmp_path):
    bank = GlyphBank.load(tmp_path / "absent")  # no shared data: procedural glyphs only
    assert bank.sources == ["procedural only (no shared data)"]
    X1, y1 = cells_synth.make_cells(bank, 60, seed=3, chunk=0)
    X2, y2 = cells_synth.make_cells(bank, 60, seed=3, chunk=0)
    X3, _ = cells_synth.make_cells(bank, 60, seed=3, chunk=1)
    assert X1.shape == (60, 2, CELL_PX, CELL_PX) and X1.dtype == np.uint8  # glyph and placement planes
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)
    assert set(np.unique(y1)) <= set(range(N_CLASSES))
    # Every kept cell has ink: empty boxes never reach the CNN, so they are not training data.
    assert (X1[:, 0].reshape(60, -1).max(axis=1) > 128).all()
    assert (X1[:, 1].reshape(60, -1).max(axis=1) > 0).all()


def test_rendered_crop_matches_the_canonical_frame():
    rng = np.random.default_rng(0)
    bank = GlyphBank()
    for label in (3, X_INDEX, BLANK_INDEX):
        r = cells_synth.render_crop(rng, bank, label)
        assert r.crop.shape == (CROP_PX, CROP_PX) and r.crop.dtype == np.uint8
        assert 2.0 <= r.border_px <= 5.0
        cell = prepare_cell(r.crop, r.border_px)
        # The printed box is found where the canonical frame puts it (within the small synthetic offsets).
        assert cell.lines_found >= 3
        assert abs(cell.line_offset_px[0]) <= 6 and abs(cell.line_offset_px[1]) <= 6


def test_seven_segment_and_stroke_glyphs_have_distinct_shapes():
    rng = np.random.default_rng(1)
    one = cells_synth.seven_segment_glyph(rng, 1)
    eight = cells_synth.seven_segment_glyph(rng, 8)
    # A seven-segment 1 is two right-hand segments: tall and narrow; an 8 is a full frame.
    assert one.shape[0] > 2.5 * one.shape[1]
    assert eight.shape[1] > 0.4 * eight.shape[0]
    assert cells_synth.stroke_glyph(rng, 2) is None
    assert cells_synth.stroke_glyph(rng, 7) is not None
    # Skeletons run down to y = 1.6 of their unit cell: the bottom segment of a 2 is drawn, not cut off.
    two = cells_synth.seven_segment_glyph(rng, 2)
    assert (two[-6:, :] > 0.5).any(axis=0).mean() > 0.7
    # Some 1s have a foot curving right (an "l"): ink in the bottom right, away from the stem.
    footed = 0
    for _ in range(60):
        g = cells_synth.stroke_glyph(rng, 1)
        h, w = g.shape
        footed += g[int(0.85 * h):, int(0.75 * w):].max() > 0.5 and g[: int(0.6 * h), int(0.75 * w):].max() < 0.1
    assert 5 <= footed <= 40


def test_no_digit_smudges_do_not_stand_upright_like_a_one():
    # The "_" class must not contain what a thick "1" looks like after normalisation: an upright elongated blob.
    rng = np.random.default_rng(5)
    seen = 0
    while seen < 300:
        ink, kind = cells_synth.blank_mark_glyph(rng)
        if kind != "smudge":
            continue
        seen += 1
        m = cv2.moments((ink > 0.3).astype(np.float32))
        cov = np.array([[m["mu20"], m["mu11"]], [m["mu11"], m["mu02"]]]) / max(m["m00"], 1.0)
        evals, evecs = np.linalg.eigh(cov)
        if evals[1] > 4.0 * max(evals[0], 1e-6):  # elongated (axis ratio above 2)
            major = evecs[:, 1]  # (x, y) of the long axis
            assert abs(major[1]) < abs(major[0]) * np.tan(np.radians(50)), (kind, major)


@needs_shared
def test_bank_keeps_the_writer_split():
    train = GlyphBank.load(SHARED, "train", use_fonts=False)
    val = GlyphBank.load(SHARED, "val", use_fonts=False)
    assert len(train.mnist) == 45000 and len(val.mnist) == 5000
    assert len(train.usps) == 5400 and len(val.usps) == 600
    assert "mnist[0:45000]" in train.sources and "mnist[45000:50000]" in val.sources


def test_train_without_torch_says_how_to_install(monkeypatch):
    import builtins

    from ocr.errors import MissingDependency
    from ocr.read import train as train_mod

    real_import = builtins.__import__

    def no_torch(name, *a, **k):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(MissingDependency) as e:
        train_mod._torch()
    assert "pip install -e .[train]" in e.value.message


def test_quick_training_exports_onnx_that_cv2_reads_like_torch(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ocr.read import train as train_mod
    from ocr.read.cnn import CnnReader

    out = tmp_path / "m" / "digits.onnx"
    res = train_mod.train(
        data=tmp_path / "absent",  # procedural glyphs: the test does not need shared data
        out=out,
        seed=0,
        epochs=1,
        samples=300,
        val_samples=100,
        workers=1,
        cache_dir=None,
        pages=1,
        log=lambda *a, **k: None,
    )
    assert out.is_file() and out.stat().st_size < 2 * 1024 * 1024
    assert res.onnx_max_diff < 1e-4
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["classes"] == list(CLASSES)
    assert card["training"]["page_cells"] > 0  # cells cut from one synthetic page photo joined the 300
    assert card["training"]["seed"] == 0 and card["training"]["samples"] == 300 + card["training"]["page_cells"]
    assert "--pages 1" in card["training"]["command"]
    assert card["input"]["shape"] == [2, CELL_PX, CELL_PX]  # the glyph and its placement in the box
    assert res.confusion.sum() == 100

    # Independent check of the export: torch on the same weights vs cv2.dnn on random inputs.
    net = cv2.dnn.readNetFromONNX(str(out))
    x = np.random.default_rng(0).random((7, 2, CELL_PX, CELL_PX), dtype=np.float32)
    net.setInput(x)
    got = net.forward()
    assert got.shape == (7, N_CLASSES)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # And the reader loads it.
    info = CnnReader(out).model_info()
    assert len(info["sha256"]) == 64


def test_real_crop_conversion_registers_a_box_crop():
    from ocr.read.train import real_crop_to_canonical

    # A box crop as a scanner gives it: dark box lines on white paper, a "1" inside, some neighbour box at right.
    img = np.full((70, 80), 245, np.uint8)
    cv2.rectangle(img, (4, 3), (64, 66), 20, 3)
    cv2.line(img, (76, 0), (76, 69), 20, 3)
    cv2.line(img, (34, 15), (34, 55), 30, 4)
    crop, border = real_crop_to_canonical(img, ink_is_bright=False)
    cell = prepare_cell(crop, border)
    assert cell.lines_found == 4
    assert not cell.empty
    # The stroke survives as a tall thin glyph.
    ys, xs = np.nonzero(cell.input > 0.5)
    assert np.ptp(ys) > 3 * max(np.ptp(xs), 1)


# --------------------------------------------------------------------------------------------------------------------
# Cells cut from synthetic page photos (ocr/read/page_cells.py)


def _truth_boxes(template_id: str, index: int, data_dir: Path, rows: bool = False):
    from ocr.read.page_cells import SEED_OFFSET
    from ocr.synth.corpus import SynthOptions, generate_page

    options = SynthOptions(data_dir=str(data_dir), writers="training", force_reason="", force_wrong_page=False)
    _, truth = generate_page(template_id, SEED_OFFSET, index, options)
    row_boxes = [b for f in truth.fields for r in (f.row_totals or []) for b in r.boxes] if rows else []
    return [b for f in truth.fields for b in f.boxes] + row_boxes


def test_page_cells_are_labelled_from_the_page_truth(tmp_path):
    from ocr.read.page_cells import SEED_OFFSET, harvest_page

    absent = tmp_path / "absent"  # procedural glyphs: no shared data needed
    X, y, outcome = harvest_page("ppwp-2024-plano-p1", SEED_OFFSET, 3, str(absent))
    assert outcome == "ok"
    assert X.dtype == np.uint8 and X.shape[1:] == (2, CELL_PX, CELL_PX) and len(X) == len(y)
    inked = [b for b in _truth_boxes("ppwp-2024-plano-p1", 3, absent) if b.char != "_" and not b.covered]
    # The cell stage may call a faint mark empty (then the net never sees it), but every label comes from a box
    # that carries ink, in the right proportions.
    assert 0.8 * len(inked) <= len(y) <= len(inked)
    want = np.bincount([CLASSES.index("_" if b.char == "-" else b.char) for b in inked], minlength=N_CLASSES)
    got = np.bincount(y, minlength=N_CLASSES)
    assert (got <= want).all()
    assert X.reshape(len(X), -1).max(axis=1).min() > 0  # no blank cell is labelled


def test_page_cells_include_the_tally_row_totals(tmp_path):
    from ocr.read.page_cells import SEED_OFFSET, harvest_page

    absent = tmp_path / "absent"
    X, y, outcome = harvest_page("ppwp-2024-plano-p2", SEED_OFFSET, 5, str(absent))
    assert outcome == "ok"
    # Count the glyph labels (digits and X): boxes without one may still give "_" cells (a dash, the dotted guide).
    glyphs = CLASSES.index("_")
    fields_only = [b for b in _truth_boxes("ppwp-2024-plano-p2", 5, absent) if b.char not in "_-" and not b.covered]
    with_rows = [b for b in _truth_boxes("ppwp-2024-plano-p2", 5, absent, rows=True) if b.char not in "_-"]
    assert len(with_rows) > len(fields_only)
    assert len(fields_only) < int((y != glyphs).sum()) <= len(with_rows)


def test_page_cells_refuse_labels_when_registration_slips(tmp_path, monkeypatch):
    """A homography off by one box would pair each cell with its neighbour's label: those boxes are dropped."""
    from ocr import pipeline
    from ocr.read import page_cells

    real_cut = pipeline.cut_page

    def slipped(*a, **k):
        cut = real_cut(*a, **k)
        box_mm = cut.loc.template.fields[0].boxes[0].w
        cut.loc.H = cut.loc.H @ np.array([[1.0, 0, box_mm * 1.3], [0, 1, 0], [0, 0, 1]])
        return cut

    monkeypatch.setattr(pipeline, "cut_page", slipped)
    X, y, outcome = page_cells.harvest_page("ppwp-2024-plano-p1", page_cells.SEED_OFFSET, 3, str(tmp_path / "absent"))
    assert outcome == "misregistered" and len(y) == 0


@needs_shared
def test_training_pages_use_the_training_writers_only():
    from ocr.synth.glyphs import glyph_bank

    bench = glyph_bank(str(SHARED), True, "benchmark")
    train = glyph_bank(str(SHARED), True, "training")
    assert sum(len(v) for v in train.mnist.values()) == 45000  # MNIST 0-44999 = the CNN's own training slice
    assert sum(len(v) for v in bench.mnist.values()) == 10000  # MNIST 50000-59999
    assert sum(len(v) for v in train.usps.values()) == 5400
    with pytest.raises(ValueError):
        glyph_bank(str(SHARED), True, "everyone")


def test_merged_ensemble_is_the_mean_of_its_members_and_the_reader_loads_it(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ocr.errors import BadInput
    from ocr.read import train as train_mod
    from ocr.read.cnn import CnnReader

    members = []
    for seed in (0, 1, 2):
        out = tmp_path / f"m{seed}" / "digits.onnx"
        train_mod.train(data=tmp_path / "absent", out=out, seed=seed, epochs=1, samples=200, val_samples=50,
                        workers=1, cache_dir=None, log=lambda *a, **k: None)
        members.append(out)
    merged = tmp_path / "ens" / "digits.onnx"
    card = train_mod.merge_models(members[:2], merged)

    x = np.random.default_rng(3).random((9, 2, CELL_PX, CELL_PX)).astype(np.float32)
    each = [CnnReader(m).predict_inputs(x) for m in members]
    got = CnnReader(merged).predict_inputs(x)
    assert not np.allclose(each[0], each[1], atol=1e-3)  # the members differ, so the mean is a real test
    np.testing.assert_allclose(got, (each[0] + each[1]) / 2, atol=1e-5)
    assert [m["training"]["seed"] for m in card["training"]["members"]] == [0, 1]
    assert json.loads(merged.with_suffix(".json").read_text())["classes"] == list(CLASSES)

    # An ensemble merged with one more net: every net weighs the same (the two-net member counts twice).
    three = tmp_path / "ens3" / "digits.onnx"
    card3 = train_mod.merge_models([merged, members[2]], three)
    np.testing.assert_allclose(CnnReader(three).predict_inputs(x), sum(each) / 3, atol=1e-5)
    assert card3["member_weights"] == pytest.approx([2 / 3, 1 / 3], abs=1e-6)
    assert train_mod.net_count(card3) == 3

    with pytest.raises(BadInput):
        train_mod.merge_models(members[:1], tmp_path / "one.onnx")


def test_upright_bars_labelled_no_digit_are_left_out_of_the_page_cells():
    from ocr.read.train import drop_upright_bars_labelled_blank

    def glyph(h: int, w: int) -> np.ndarray:
        g = np.zeros((CELL_PX, CELL_PX), np.uint8)
        g[(CELL_PX - h) // 2 : (CELL_PX + h) // 2, (CELL_PX - w) // 2 : (CELL_PX + w) // 2] = 255
        return g

    bar, dash, dot = glyph(24, 5), glyph(4, 24), glyph(5, 5)
    X = np.stack([bar, bar, dash, dot])[:, None]  # one plane: the glyph
    y = np.array([BLANK_INDEX, CLASSES.index("1"), BLANK_INDEX, BLANK_INDEX])
    # a kept box line in an empty box looks like a "1": left out; the same bar labelled "1", a dash, a dot: kept
    assert drop_upright_bars_labelled_blank(X, y).tolist() == [False, True, True, True]


def test_some_training_digits_are_written_small():
    """Real KPPS write some digits (dates above all) a fifth of the box tall: the net must have seen such digits."""
    rng = np.random.default_rng(11)
    bank = GlyphBank()
    heights = []
    for _ in range(300):
        cell = prepare_cell(cells_synth.render_crop(rng, bank, CLASSES.index("1")).crop, 3.5)
        if cell.empty:
            continue
        rows = np.nonzero((cell.interior > 0.5).any(axis=1))[0]
        heights.append(np.ptp(rows) / cell.interior.shape[0])
    heights = np.array(heights)
    # One digit in eight is drawn 0.2-0.4 of the box tall; pen width, blur and hand shake make most of those
    # come out taller than 0.38. Without the small ones none would be under it.
    assert 0.02 < (heights < 0.38).mean() < 0.3


def test_a_glyph_only_net_trains_and_reads_as_v3_did(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ocr.errors import BadInput
    from ocr.read import train as train_mod
    from ocr.read.cnn import CnnReader

    out = tmp_path / "one" / "digits.onnx"
    lines: list[str] = []
    train_mod.train(data=tmp_path / "absent", out=out, seed=2, epochs=1, samples=200, val_samples=50, workers=1,
                    cache_dir=None, planes=1, log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["input"]["shape"] == [1, CELL_PX, CELL_PX] and "--planes 1" in card["training"]["command"]
    assert any("upright bars labelled 'no digit' left out" in line for line in lines)  # glyph-only: bars dropped
    cell = prepare_cell(cells_synth.render_crop(np.random.default_rng(0), GlyphBank(), 3).crop, 3.0)
    assert CnnReader(out).read([cell])[0].ok
    with pytest.raises(BadInput):
        train_mod.train(data=tmp_path / "absent", out=tmp_path / "x.onnx", planes=3, log=lambda *a, **k: None)


def _digit_cells(monkeypatch, n: int, **shares: float) -> list:
    """Prepared cells of digits drawn with the given style shares (P_STRIKE, P_OVERWRITE, P_CROSS; the rest 0)."""
    for name in ("P_STRIKE", "P_OVERWRITE", "P_CROSS"):
        monkeypatch.setattr(cells_synth, name, shares.get(name, 0.0))
    rng = np.random.default_rng(21)
    bank = GlyphBank()
    cells = [prepare_cell(cells_synth.render_crop(rng, bank, int(rng.integers(10))).crop, 3.5) for _ in range(n)]
    return [c for c in cells if not c.empty]


def test_some_training_digits_cross_the_box_line(monkeypatch):
    """A digit pushed over one side of its box (22% of raw misreads on the synthetic pages) is in the training cells."""

    def off_centre(cells) -> np.ndarray:
        out = []
        for c in cells:
            ys, xs = np.nonzero(c.interior > 0.5)
            h, w = c.interior.shape
            out.append(max(abs(xs.mean() / w - 0.5), abs(ys.mean() / h - 0.5)))
        return np.array(out)

    plain = off_centre(_digit_cells(monkeypatch, 60))
    crossing = off_centre(_digit_cells(monkeypatch, 60, P_CROSS=1.0))
    assert np.median(crossing) > 0.12 > np.median(plain)


def test_some_training_digits_are_written_over_another(monkeypatch):
    """An overwritten digit: the label's digit with a heavier pen over a wrong one, so more ink than one digit."""
    plain = np.mean([c.ink_fraction for c in _digit_cells(monkeypatch, 60)])
    over = np.mean([c.ink_fraction for c in _digit_cells(monkeypatch, 60, P_OVERWRITE=1.0)])
    assert over > 1.4 * plain


def test_some_training_cells_are_smeared_by_hand_shake(monkeypatch):
    """Motion blur (half the review on the synthetic pages before v8) is in the training cells, not only in the page
    cells: a smear along one direction takes the edge out of the printed box lines and the ink."""

    def sharpness(p_motion: float) -> float:
        monkeypatch.setattr(cells_synth, "P_MOTION", p_motion)
        rng = np.random.default_rng(5)
        bank = GlyphBank()
        crops = [cells_synth.render_crop(rng, bank, int(rng.integers(10))).crop for _ in range(40)]
        return float(np.mean([cv2.Laplacian(c.astype(np.float32), cv2.CV_32F).var() for c in crops]))

    assert cells_synth.P_MOTION > 0
    assert sharpness(1.0) < 0.6 * sharpness(0.0)


def test_fine_tuning_starts_from_the_chosen_net_of_an_ensemble(tmp_path):
    """`train --init`: the net starts as the chosen member of a merged model, batch norms frozen (folded into the
    stored convolutions), so with a vanishing learning rate the exported net is that member again."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from ocr.errors import BadInput
    from ocr.read import train as train_mod
    from ocr.read.cnn import DEFAULT_MODEL

    if train_mod.net_count(json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())) < 2:
        pytest.skip("the shipped model is a single net")
    x = np.random.default_rng(3).random((12, 2, CELL_PX, CELL_PX)).astype(np.float32)

    def member_probs(k: int) -> np.ndarray:
        net = train_mod.make_model(torch, planes=2)
        train_mod.load_member_into(torch, net, train_mod.onnx_member_weights(DEFAULT_MODEL, k))
        net.eval()
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(x)), 1).numpy()

    nets = train_mod.net_count(json.loads(DEFAULT_MODEL.with_suffix(".json").read_text()))
    members = [member_probs(k) for k in range(nets)]
    # The members, read back into torch, average to what the shipped file computes ...
    np.testing.assert_allclose(np.mean(members, axis=0), train_mod._cv2_forward(DEFAULT_MODEL, x), atol=1e-5)
    # ... and differ from each other (each is its own net, not the first one repeated).
    assert np.abs(members[0] - members[1]).max() > 1e-3

    out = tmp_path / "ft" / "digits.onnx"
    train_mod.train(data=tmp_path / "absent", out=out, seed=4, epochs=1, samples=300, val_samples=50, workers=1,
                    cache_dir=None, init=DEFAULT_MODEL, init_member=1, lr=1e-7, log=lambda *a, **k: None)
    np.testing.assert_allclose(train_mod._cv2_forward(out, x), members[1], atol=2e-3)
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["init"]["member"] == 1 and len(card["training"]["init"]["sha256"]) == 64
    assert f"--init {DEFAULT_MODEL} --init-member 1" in card["training"]["command"]
    with pytest.raises(BadInput):
        train_mod.onnx_member_weights(DEFAULT_MODEL, len(members))
    with pytest.raises(BadInput):  # a glyph-only net cannot start from two-plane weights
        train_mod.train(data=tmp_path / "absent", out=tmp_path / "x.onnx", samples=100, val_samples=20, workers=1,
                        cache_dir=None, planes=1, init=DEFAULT_MODEL, log=lambda *a, **k: None)
