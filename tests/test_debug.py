"""Debug images (`c1ocr read --debug DIR`): one picture per stage, from the bundled samples (no shared data)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from ocr.pipeline import read_page
from ocr.read.fake import FakeReader

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def test_a_read_page_gets_an_image_per_stage_and_a_tile_per_box(tmp_path):
    photo = SAMPLES / "ppwp-2019-c1-l2.jpg"
    reading = read_page(photo, reader=FakeReader(lambda cell: "7"), debug_dir=tmp_path)
    assert reading.status != "unreadable"
    d = tmp_path / photo.stem
    assert {p.name for p in d.iterdir()} == {"1_located.jpg", "2_page.png", "3_cells.png"}
    cells = cv2.imread(str(d / "3_cells.png"))
    # Six tiles a row; a tile is the 96 px box crop and the model's two input planes (glyph, placement), 96 px each.
    assert cells.shape[1] == 6 * 3 * 96
    n_boxes = sum(len(f.boxes) for f in reading.fields.values())
    assert cells.shape[0] == 96 * -(-n_boxes // 6)


@pytest.mark.parametrize("name", ["ppwp-2024-plano-p1-unusable-cut-off.jpg", "ppwp-2024-plano-p2-unusable-blurry.jpg"])
def test_a_refused_photo_still_shows_what_the_locator_saw(tmp_path, name):
    reading = read_page(SAMPLES / name, reader=FakeReader(lambda cell: "7"), debug_dir=tmp_path)
    assert reading.status == "unreadable"
    d = tmp_path / Path(name).stem
    assert (d / "1_located.jpg").is_file() and cv2.imread(str(d / "1_located.jpg")) is not None
    assert not (d / "3_cells.png").exists()
