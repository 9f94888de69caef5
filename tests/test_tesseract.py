"""TesseractReader: the real binary on printed-font cells, the list-file batching, and its failure paths."""

from __future__ import annotations

import logging
import stat

import cv2
import numpy as np
import pytest

from ocr.cells import BOX_PX, CROP_PX, MARGIN_PX, prepare_cell
from ocr.errors import ExitCode, MissingDependency
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES, X_INDEX, CellPrediction
from ocr.read import tesseract as T

needs_tesseract = pytest.mark.skipif(not T.has_tesseract(), reason="tesseract-ocr is not installed")

BORDER_PX = 3.0


def printed_cell(char: str, font: int = cv2.FONT_HERSHEY_DUPLEX):
    """A canonical 96x96 darkness crop: a 3 px box border and `char` drawn in a printed font -> prepare_cell."""
    crop = np.zeros((CROP_PX, CROP_PX), np.uint8)
    a, b = MARGIN_PX, MARGIN_PX + BOX_PX
    for s in (slice(a - 1, a + 2), slice(b - 1, b + 2)):
        crop[s, a - 1 : b + 2] = 230
        crop[a - 1 : b + 2, s] = 230
    if char:
        (w, h), _ = cv2.getTextSize(char, font, 1.6, 4)
        org = (MARGIN_PX + (BOX_PX - w) // 2, MARGIN_PX + (BOX_PX + h) // 2)
        cv2.putText(crop, char, org, font, 1.6, 220, 4, cv2.LINE_AA)
    return prepare_cell(crop, BORDER_PX)


def garbage_cell(seed: int = 0):
    """Dense random blotches: ink, but no character."""
    rng = np.random.default_rng(seed)
    crop = np.zeros((CROP_PX, CROP_PX), np.uint8)
    inner = crop[MARGIN_PX + 6 : MARGIN_PX + BOX_PX - 6, MARGIN_PX + 6 : MARGIN_PX + BOX_PX - 6]
    inner[:] = (rng.random(inner.shape) > 0.5).astype(np.uint8) * 230
    return prepare_cell(crop, BORDER_PX)


def argmax_char(pred: CellPrediction) -> str:
    return CLASSES[int(np.argmax(pred.probs))]


# --- pure parts (no binary needed) ---------------------------------------------------------------------------------

TSV_HEADER = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"


def test_parse_tsv_maps_by_page_number_including_empty_pages():
    tsv = (
        TSV_HEADER
        + "1\t1\t0\t0\t0\t0\t0\t0\t90\t90\t-1\t\n"
        + "5\t1\t1\t1\t1\t1\t30\t30\t20\t30\t91.5\t7\n"
        + "1\t2\t0\t0\t0\t0\t0\t0\t90\t90\t-1\t\n"  # nothing recognised on page 2
        + "1\t3\t0\t0\t0\t0\t0\t0\t90\t90\t-1\t\n"
        + "5\t3\t1\t1\t1\t1\t30\t30\t20\t30\t40.0\tx\n"
    )
    out = T.parse_tsv(tsv, 3)
    assert [c.text for c in out] == ["7", "", "x"]
    assert out[0].conf == pytest.approx(91.5)


def test_parse_tsv_refuses_a_result_that_does_not_map_back():
    tsv = TSV_HEADER + "1\t1\t0\t0\t0\t0\t0\t0\t90\t90\t-1\t\n" + "1\t3\t0\t0\t0\t0\t0\t0\t90\t90\t-1\t\n"
    with pytest.raises(T.TesseractFailure):
        T.parse_tsv(tsv, 3)  # page 2 missing: never shift page 3's answer onto cell 2
    with pytest.raises(T.TesseractFailure):
        T.parse_tsv(tsv, 2)
    with pytest.raises(T.TesseractFailure):
        T.parse_tsv("garbage\n", 1)


def test_char_probs_turns_answers_into_distributions():
    p = T.char_probs(T.TesseractChar("4", 90.0), ink_fraction=0.15)
    assert p.shape == (N_CLASSES,) and p.sum() == pytest.approx(1.0)
    assert argmax_char(CellPrediction(p)) == "4" and p[4] == pytest.approx(T.MAX_P)
    assert np.argmax(T.char_probs(T.TesseractChar("x", 80.0), 0.15)) == X_INDEX
    assert np.argmax(T.char_probs(T.TesseractChar("-", 80.0), 0.05)) == BLANK_INDEX
    # Nothing recognised: little ink -> mostly blank; a lot of ink -> we know nothing (flat).
    low = T.char_probs(T.TesseractChar("", 0.0), ink_fraction=0.01)
    assert np.argmax(low) == BLANK_INDEX and low[BLANK_INDEX] > 0.5
    flat = T.char_probs(T.TesseractChar("", 0.0), ink_fraction=0.2)
    assert np.allclose(flat, 1.0 / N_CLASSES)


def test_missing_binary_is_a_clear_missing_dependency():
    with pytest.raises(MissingDependency) as ei:
        T.tesseract_version("/nonexistent/tesseract-c1ocr")
    assert "apt-get install -y tesseract-ocr" in ei.value.message
    assert ei.value.exit_code == ExitCode.MISSING_DEPENDENCY
    assert not T.has_tesseract("/nonexistent/tesseract-c1ocr")


def test_cell_image_is_black_on_white_with_a_margin():
    img = T.cell_image(printed_cell("8"))
    assert img.dtype == np.uint8
    assert (img[: T.PAD_PX] == 255).all() and (img[:, -T.PAD_PX :] == 255).all()
    assert (img == 0).mean() > 0.02  # the glyph is there, in black
    # The printed box border is not part of the image (it would read as "1" or "-").
    inner = img[T.PAD_PX : -T.PAD_PX, T.PAD_PX : -T.PAD_PX]
    assert (inner[:, :3] == 255).all() and (inner[:3, :] == 255).all()


# --- the real binary -----------------------------------------------------------------------------------------------


@needs_tesseract
def test_version_is_probed():
    v = T.tesseract_version()
    assert int(v.split(".")[0]) >= 4


@needs_tesseract
def test_list_file_batch_returns_one_result_per_cell_in_order():
    chars = ["1", "2", "", "3", "4", "6", "7", "8", "X"]
    cells = [printed_cell(c) for c in chars] + [garbage_cell(1)]
    assert cells[2].empty and not cells[-1].empty
    reader = T.TesseractReader(timeout_s=30)
    preds = reader.read(cells)
    assert len(preds) == len(cells)
    assert all(p.ok for p in preds), [p.error for p in preds]
    for p in preds:
        assert p.probs.shape == (N_CLASSES,) and p.probs.sum() == pytest.approx(1.0)
    got = [argmax_char(p) for p in preds]
    # Clean printed digits are what tesseract is built for: each lands on its own cell, in order.
    assert got[:2] == ["1", "2"] and got[3:9] == ["3", "4", "6", "7", "8", "X"]
    assert got[2] == "_" and preds[2].probs[BLANK_INDEX] > 0.9  # skipped, empty_prediction()
    # The garbage cell gets no confident digit.
    assert preds[-1].probs.max() < 0.5


@needs_tesseract
def test_batch_survives_unreadable_images_without_shifting_results():
    good = [T.cell_image(printed_cell(c)) for c in ("1", "7")]
    weird = [np.full((1, 1), 255, np.uint8), np.zeros((5, 300), np.uint8)]
    out = T.run_tesseract_batch([good[0], weird[0], weird[1], good[1]], timeout_s=30)
    assert len(out) == 4
    assert out[0].text == "1" and out[3].text == "7"
    assert out[1].text == ""


def _fake_tesseract(tmp_path, body: str) -> str:
    """A shell script standing in for the tesseract binary (answers --version like 5.3.0, then runs `body`)."""
    exe = tmp_path / "tesseract"
    exe.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--version" ]; then echo "tesseract 5.3.0"; exit 0; fi\n' + body + "\n",
        encoding="utf-8",
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_hung_tesseract_gives_per_cell_errors(tmp_path):
    exe = _fake_tesseract(tmp_path, "sleep 30")
    reader = T.TesseractReader(timeout_s=0.5, cmd=exe)
    cells = [printed_cell("1"), printed_cell(""), printed_cell("2")]
    preds = reader.read(cells)
    assert len(preds) == 3
    assert not preds[0].ok and "timed out" in preds[0].error
    assert preds[1].ok  # the empty cell never went to tesseract
    assert not preds[2].ok


def test_crashing_tesseract_gives_per_cell_errors_and_logs_stderr(tmp_path, caplog):
    exe = _fake_tesseract(tmp_path, 'echo "Error: simulated crash" >&2; exit 139')
    reader = T.TesseractReader(timeout_s=5, cmd=exe, retry_chunk=2)
    cells = [printed_cell(c) for c in ("1", "2", "3")]
    with caplog.at_level(logging.WARNING, logger="ocr.read.tesseract"):
        preds = reader.read(cells)
    assert [p.ok for p in preds] == [False, False, False]
    assert "139" in preds[0].error
    assert any("simulated crash" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


def test_output_that_does_not_map_back_is_retried_in_chunks(tmp_path):
    # A stand-in that reports only the first page of whatever list it is given: a whole-page batch cannot be mapped
    # back; chunks of one cell can.
    body = (
        'out="$2"\n'
        "printf 'level\\tpage_num\\tblock_num\\tpar_num\\tline_num\\tword_num\\tleft\\ttop\\twidth\\theight\\tconf\\ttext\\n"
        "1\\t1\\t0\\t0\\t0\\t0\\t0\\t0\\t9\\t9\\t-1\\t\\n5\\t1\\t1\\t1\\t1\\t1\\t0\\t0\\t9\\t9\\t88\\t5\\n' > \"$out.tsv\""
    )
    exe = _fake_tesseract(tmp_path, body)
    reader = T.TesseractReader(timeout_s=5, cmd=exe, retry_chunk=1)
    preds = reader.read([printed_cell(c) for c in ("1", "2", "3")])
    assert all(p.ok for p in preds)
    assert [argmax_char(p) for p in preds] == ["5", "5", "5"]
    # With chunks of 2 the 2-cell chunk still cannot be mapped: errors there, never a shifted answer.
    reader2 = T.TesseractReader(timeout_s=5, cmd=exe, retry_chunk=2)
    preds2 = reader2.read([printed_cell(c) for c in ("1", "2", "3")])
    assert [p.ok for p in preds2] == [False, False, True]


def test_tesseract_runs_with_one_omp_thread(tmp_path):
    seen = tmp_path / "env.txt"
    exe = _fake_tesseract(tmp_path, f'echo "$OMP_THREAD_LIMIT" > {seen}; exit 1')
    T.TesseractReader(timeout_s=5, cmd=exe).read([printed_cell("1")])
    assert seen.read_text().strip() == "1"


def test_env_override_of_the_binary(tmp_path, monkeypatch):
    monkeypatch.setenv("C1OCR_TESSERACT", "/nonexistent/tess-from-env")
    with pytest.raises(MissingDependency):
        T.TesseractReader()
