"""The fault fence (safe_read), the ensemble's pooling and degradation, make_reader, and the test engines."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ocr.cells import CELL_PX, PreparedCell
from ocr.errors import C1Error, ExitCode, MissingDependency
from ocr.read import ensemble as E
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES, CellPrediction, DigitReader
from ocr.read.fake import (
    CachedReader,
    CrashingReader,
    FakeReader,
    GarbageReader,
    HangingReader,
    SlowReader,
    cell_key,
    one_hot,
)


def make_cell(seed: int, empty: bool = False) -> PreparedCell:
    rng = np.random.default_rng(seed)
    glyph = np.zeros((CELL_PX, CELL_PX), np.float32) if empty else rng.random((CELL_PX, CELL_PX)).astype(np.float32)
    return PreparedCell(
        input=glyph,
        ink_fraction=0.0 if empty else 0.15,
        empty=empty,
        line_offset_px=(0.0, 0.0),
        lines_found=4,
        touches_border=False,
        interior=glyph,
    )


CELLS = [make_cell(i) for i in range(5)]


def top(pred: CellPrediction) -> str:
    return CLASSES[int(np.argmax(pred.probs))]


# --- safe_read -----------------------------------------------------------------------------------------------------


def test_safe_read_passes_good_predictions_through():
    preds = E.safe_read(FakeReader(["1", "2", "X", "_", "0"]), CELLS, timeout_s=5)
    assert [top(p) for p in preds] == ["1", "2", "X", "_", "0"]
    assert all(p.ok and p.probs.sum() == pytest.approx(1.0) for p in preds)


def test_crash_becomes_per_cell_errors():
    preds = E.safe_read(CrashingReader(MemoryError("simulated OOM")), CELLS, timeout_s=5)
    assert len(preds) == len(CELLS)
    assert all(not p.ok and "MemoryError" in p.error for p in preds)


def test_hang_is_abandoned_after_the_timeout():
    hanging = HangingReader(seconds=60)
    t0 = time.monotonic()
    preds = E.safe_read(hanging, CELLS, timeout_s=0.3)
    waited = time.monotonic() - t0
    hanging.release()  # let the abandoned thread finish (it is a daemon either way)
    assert hanging.started.is_set()
    assert waited < 30  # returned long before the engine would have (not a speed assert: 60 s vs the 0.3 s timeout)
    assert all(not p.ok and "timed out" in p.error for p in preds)


def test_slow_but_in_time_engine_is_not_cut_off():
    preds = E.safe_read(SlowReader(FakeReader(["4"]), 0.1), CELLS, timeout_s=20)
    assert all(p.ok and top(p) == "4" for p in preds)


@pytest.mark.parametrize("mode", ["nan", "negative", "short_vector", "zeros", "wrong_type"])
def test_garbage_values_become_errors_only_on_the_bad_cells(mode):
    preds = E.safe_read(GarbageReader(mode, every=2), CELLS, timeout_s=5)
    assert [p.ok for p in preds] == [False, True, False, True, False]
    assert all(top(p) == "7" for p in preds if p.ok)


@pytest.mark.parametrize("mode", ["wrong_length", "not_a_list"])
def test_output_that_cannot_be_mapped_to_cells_fails_every_cell(mode):
    preds = E.safe_read(GarbageReader(mode), CELLS, timeout_s=5)
    assert len(preds) == len(CELLS) and not any(p.ok for p in preds)


def test_unnormalised_output_is_renormalised():
    preds = E.safe_read(GarbageReader("unnormalised"), CELLS, timeout_s=5)
    assert all(p.ok and p.probs.sum() == pytest.approx(1.0) and top(p) == "7" for p in preds)


def test_safe_read_of_no_cells_does_not_call_the_engine():
    fake = FakeReader(["1"])
    assert E.safe_read(fake, [], timeout_s=1) == []
    assert fake.calls == 0


# --- pooling and the ensemble --------------------------------------------------------------------------------------


def test_log_linear_pool():
    a = one_hot("3", 0.6)
    b = one_hot("8", 0.9)
    # A weak vote shifts but does not overturn a clear main vote.
    pooled = E.log_linear_pool([(a, 1.0), (b, 0.15)])
    assert np.argmax(pooled) == 3 and pooled.sum() == pytest.approx(1.0)
    assert pooled[8] > a[8]
    # A flat vote changes nothing.
    flat = np.full(N_CLASSES, 1.0 / N_CLASSES)
    assert np.allclose(E.log_linear_pool([(a, 1.0), (flat, 0.15)]), a)
    # Agreement sharpens.
    assert E.log_linear_pool([(a, 1.0), (one_hot("3", 0.9), 0.15)])[3] > a[3]


def test_ensemble_combines_and_keeps_each_engine():
    cnn = FakeReader(["1", "2", "3", "4", "5"], name="cnn", p=0.7)
    tess = FakeReader(["1", "2", "8", "4", "5"], name="tesseract", p=0.9)
    ens = E.EnsembleReader(cnn, tess, tesseract_weight=0.15)
    detailed = ens.read_detailed(CELLS)
    assert [top(d.combined) for d in detailed] == ["1", "2", "3", "4", "5"]
    assert set(detailed[2].engines) == {"cnn", "tesseract"}
    assert top(detailed[2].engines["tesseract"]) == "8"
    # Agreement raises confidence above the CNN's own, disagreement lowers it.
    assert detailed[0].combined.probs.max() > 0.7 > detailed[2].combined.probs.max()
    assert [top(p) for p in ens.read(CELLS)] == ["1", "2", "3", "4", "5"]


def test_ensemble_falls_back_to_the_cnn_when_tesseract_fails_and_records_it():
    cnn = FakeReader(["6"], name="cnn", p=0.8)
    for broken in (CrashingReader(name="tesseract"), GarbageReader("nan", name="tesseract")):
        detailed = E.EnsembleReader(cnn, broken).read_detailed(CELLS)
        assert all(d.combined.ok and top(d.combined) == "6" for d in detailed)
        assert all(d.combined.probs[6] == pytest.approx(0.8) for d in detailed)
        assert all("tesseract_failed" in d.notes and not d.engines["tesseract"].ok for d in detailed)


def test_ensemble_with_a_hung_tesseract_still_answers():
    hanging = HangingReader(seconds=60, name="tesseract")
    ens = E.EnsembleReader(FakeReader(["2"], name="cnn"), hanging, tesseract_timeout_s=0.3)
    detailed = ens.read_detailed(CELLS)
    hanging.release()
    assert all(top(d.combined) == "2" and "tesseract_failed" in d.notes for d in detailed)


def test_ensemble_without_tesseract_is_the_cnn_alone():
    detailed = E.EnsembleReader(FakeReader(["9"], name="cnn"), None, tesseract_unavailable="missing").read_detailed(
        CELLS
    )
    assert all(top(d.combined) == "9" and d.notes == ["tesseract_unavailable"] for d in detailed)
    assert all(set(d.engines) == {"cnn"} for d in detailed)


def test_ensemble_never_lets_tesseract_read_alone():
    ens = E.EnsembleReader(CrashingReader(name="cnn"), FakeReader(["5"], name="tesseract", p=0.99))
    detailed = ens.read_detailed(CELLS)
    assert all(not d.combined.ok for d in detailed)
    assert all(d.engines["tesseract"].ok for d in detailed)  # still visible for review


def test_tesseract_only_reads_the_cells_the_cnn_is_unsure_of():
    cnn = FakeReader(lambda cell: one_hot("1", 0.999) if cell.input.mean() > 0.5 else one_hot("7", 0.6), name="cnn")
    cells = [make_cell(i) for i in range(12)]
    sure = [c.input.mean() > 0.5 for c in cells]
    tess = FakeReader(["7"], name="tesseract")
    detailed = E.EnsembleReader(cnn, tess).read_detailed(cells)
    for d, is_sure in zip(detailed, sure):
        assert ("tesseract" in d.engines) == (not is_sure)
        assert ("tesseract_skipped" in d.notes) == is_sure
    everything = FakeReader(["7"], name="tesseract")
    detailed = E.EnsembleReader(cnn, everything, tesseract_skip_above=None).read_detailed(cells)
    assert all("tesseract" in d.engines for d in detailed)
    nothing_to_ask = FakeReader(["7"], name="tesseract")
    E.EnsembleReader(FakeReader(["4"], p=0.999, name="cnn"), nothing_to_ask).read_detailed(cells)
    assert nothing_to_ask.calls == 0  # no process at all when the CNN is sure of every cell


def test_skipped_tesseract_could_not_have_changed_a_sure_cnn():
    # The claim behind TESSERACT_SKIP_ABOVE: Tesseract's strongest possible disagreement cannot flip a CNN that is
    # at least that sure, and lowers its confidence by at most the mass the CNN left to the other classes.
    from ocr.read.tesseract import TesseractChar, char_probs

    rng = np.random.default_rng(0)
    w = 0.15
    for _ in range(300):
        top_i = int(rng.integers(N_CLASSES))
        rest = rng.dirichlet(np.full(N_CLASSES - 1, 0.3)) * (1 - E.TESSERACT_SKIP_ABOVE)
        cnn = np.insert(rest, top_i, E.TESSERACT_SKIP_ABOVE)
        against = int(np.argsort(cnn)[-2])  # Tesseract backs the CNN's runner-up, as hard as it can
        char = CLASSES[against] if CLASSES[against] != "_" else "-"
        t = char_probs(TesseractChar(char, 100.0), 0.2)
        pooled = E.log_linear_pool([(cnn, 1.0), (t, w)])
        assert int(np.argmax(pooled)) == top_i
        assert cnn[top_i] - pooled[top_i] <= (1 - E.TESSERACT_SKIP_ABOVE) + 1e-4


def test_ensemble_is_a_digit_reader():
    ens = E.EnsembleReader(FakeReader(["1"]), None)
    assert isinstance(ens, DigitReader) and ens.name == "ensemble"


# --- make_reader ---------------------------------------------------------------------------------------------------


def test_unknown_engine_is_a_bad_argument():
    with pytest.raises(C1Error) as ei:
        E.make_reader("gpt")
    assert ei.value.code == "unknown_engine"
    assert ei.value.exit_code == ExitCode.BAD_ARGUMENTS
    assert "ensemble" in ei.value.message


def test_make_reader_tesseract():
    from ocr.read.tesseract import TesseractReader, has_tesseract

    if not has_tesseract():
        with pytest.raises(MissingDependency):
            E.make_reader("tesseract")
        return
    r = E.make_reader("Tesseract")
    assert isinstance(r, TesseractReader) and r.name == "tesseract"


def test_make_reader_ensemble_uses_the_cnn(monkeypatch):
    monkeypatch.setattr(E, "_make_cnn", lambda: FakeReader(["3"], name="cnn"))
    monkeypatch.setattr(E, "_make_tesseract", lambda: (_ for _ in ()).throw(MissingDependency("no tesseract here")))
    r = E.make_reader("ensemble")
    assert isinstance(r, E.EnsembleReader) and r.tesseract is None
    assert r.tesseract_unavailable == "no tesseract here"
    assert [top(p) for p in r.read(CELLS[:2])] == ["3", "3"]


# --- the cached engine ---------------------------------------------------------------------------------------------


def test_cached_reader_records_and_replays(tmp_path):
    inner = FakeReader(lambda cell: "8" if cell.input.mean() > 0.4 else "1", name="tesseract")
    cached = CachedReader(inner)
    first = cached.read(CELLS)
    assert cached.misses == len(CELLS) and inner.calls == 1
    path = tmp_path / "cache.json"
    cached.save(path)
    replay = CachedReader.load(path)  # no inner engine: every answer must come from the cache
    again = replay.read(CELLS)
    assert replay.hits == len(CELLS)
    assert [top(p) for p in again] == [top(p) for p in first]
    assert replay.name == "tesseract"
    with pytest.raises(KeyError):
        replay.read([make_cell(99)])
    # Through the fence, a cache miss with no engine is a per-cell error, not an exception.
    assert not E.safe_read(replay, [make_cell(99)], timeout_s=5)[0].ok


def test_cell_key_depends_on_the_cell_content():
    assert cell_key(make_cell(1)) == cell_key(make_cell(1))
    assert cell_key(make_cell(1)) != cell_key(make_cell(2))
    # The same glyph elsewhere in its box is another input to a two-plane model: another key.
    moved = make_cell(1)
    moved.placement = np.roll(moved.input, 5, axis=1)
    assert cell_key(moved) != cell_key(make_cell(1))


def test_empty_cells_are_blank_by_convention():
    from ocr.read.base import empty_prediction

    assert int(np.argmax(empty_prediction().probs)) == BLANK_INDEX


# --- read_cells (what the pipeline calls) --------------------------------------------------------------------------


def test_read_cells_wraps_a_single_engine_as_its_own_engine():
    out = E.read_cells(FakeReader(["4"], name="cnn"), CELLS[:3], timeout_s=5)
    assert [top(d.combined) for d in out] == ["4", "4", "4"]
    assert all(set(d.engines) == {"cnn"} for d in out)
    crashed = E.read_cells(CrashingReader(), CELLS[:3], timeout_s=5)
    assert len(crashed) == 3 and not any(d.combined.ok for d in crashed)


def test_read_cells_gives_the_ensemble_details():
    ens = E.EnsembleReader(FakeReader(["1"], name="cnn"), FakeReader(["1"], name="tesseract"))
    out = E.read_cells(ens, CELLS[:2], timeout_s=5)
    assert all(set(d.engines) == {"cnn", "tesseract"} and top(d.combined) == "1" for d in out)
