"""Blank pages: drawn pages have the right size and dark marks where the template says; `forms render` output."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ocr.cli import app
from ocr.templates import get_template, list_templates
from ocr.templates.render import blank_page, render_page

DPMM = 2.0


def _mean(img: np.ndarray, x: float, y: float, w: float, h: float, dpmm: float = DPMM) -> float:
    return float(img[int(round(y * dpmm)) : int(round((y + h) * dpmm)), int(round(x * dpmm)) : int(round((x + w) * dpmm))].mean())


@pytest.mark.parametrize("t", list_templates(), ids=lambda t: t.id)
def test_render_page_size_and_white_paper(t):
    img = render_page(t, DPMM)
    assert img.dtype == np.uint8 and img.ndim == 2
    assert img.shape == (round(t.page_size.height_mm * DPMM), round(t.page_size.width_mm * DPMM))
    assert np.median(img) == 255


@pytest.mark.parametrize("t", list_templates(), ids=lambda t: t.id)
def test_render_page_draws_box_borders_and_leaves_box_insides_clear(t):
    img = render_page(t, 4.0)
    b2 = t.box_border_mm / 2
    for f in t.fields:
        for b in f.boxes:
            # a strip along the top border is dark; the middle of the box has no ink
            assert _mean(img, b.x + b.w * 0.3, b.y - b2, b.w * 0.4, t.box_border_mm, 4.0) < 128, f.id
            assert _mean(img, b.x + b.w * 0.35, b.y + b.h * 0.35, b.w * 0.1, b.h * 0.1, 4.0) > 200, f.id


def test_checker_fiducials_are_dark_where_the_frame_says():
    t = get_template("ppwp-2024-plano-p1")
    img = render_page(t, DPMM)
    s = t.frame.square_mm
    for x, y in t.frame.points:
        # 2x2 checker around the touch point: top-left and bottom-right black, the others white
        assert _mean(img, x - s * 0.8, y - s * 0.8, s * 0.6, s * 0.6) < 30
        assert _mean(img, x + s * 0.2, y + s * 0.2, s * 0.6, s * 0.6) < 30
        assert _mean(img, x + s * 0.2, y - s * 0.8, s * 0.6, s * 0.6) > 225
        assert _mean(img, x - s * 0.8, y + s * 0.2, s * 0.6, s * 0.6) > 225


def test_corner_squares_are_centred_on_the_frame_points():
    t = get_template("ppwp-2019-c1-l2")
    img = render_page(t, 8.0)
    s = t.frame.square_mm
    for x, y in t.frame.points:
        assert _mean(img, x - s * 0.4, y - s * 0.4, s * 0.8, s * 0.8, 8.0) < 20
        assert _mean(img, x + s * 0.6, y - s * 0.4, s * 0.3, s * 0.8, 8.0) > 230  # just right of the square


def test_drawn_apriltag_is_detected_with_its_id_and_rotation():
    t = get_template("ppwp-2024-plano-p2")
    img = render_page(t, 4.0)
    det = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_APRILTAG_36h10))
    corners, ids, _ = det.detectMarkers(img)
    assert ids is not None and ids.ravel().tolist() == [t.marker.id]
    c = corners[0].reshape(4, 2) / 4.0  # detector corner order: the tag's own top-left first
    r = t.marker.rect
    # printed rotated 180 degrees: the tag's top-left corner is the page's bottom-right of the rect
    assert np.allclose(c[0], (r.x + r.w, r.y + r.h), atol=1.0)
    assert np.allclose(c[2], (r.x, r.y), atol=1.0)


def test_blank_page_uses_the_reference_when_there_is_one_and_caches():
    t = get_template("ppwp-2019-plano-l2")
    a = blank_page(t, DPMM)
    assert a.shape == (round(t.page_size.height_mm * DPMM), round(t.page_size.width_mm * DPMM))
    assert not a.flags.writeable
    assert blank_page(t, DPMM) is a
    # the reference (official blank rendering) differs from our own drawing
    assert np.abs(a.astype(int) - render_page(t, DPMM).astype(int)).mean() > 1.0


def test_blank_page_without_reference_is_the_drawing():
    t = get_template("ppwp-2019-c1-l2")
    assert t.reference is None
    assert np.array_equal(blank_page(t, DPMM), render_page(t, DPMM))


runner = CliRunner()


def test_forms_render_png_has_dpmm_pixels_per_mm(tmp_path):
    out = tmp_path / "page.png"
    r = runner.invoke(app, ["forms", "render", "ppwp-2014-c1-lampiran1", "--out", str(out), "--dpmm", "3"])
    assert r.exit_code == 0, r.output
    im = Image.open(out)
    assert im.size == (630, 891)
    assert round(im.info["dpi"][0]) == round(3 * 25.4)


def test_forms_render_pdf_has_the_physical_page_size(tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    out = tmp_path / "page.pdf"
    r = runner.invoke(app, ["forms", "render", "ppwp-2019-c1-l2", "--out", str(out), "--dpmm", "2"])
    assert r.exit_code == 0, r.output
    w_pt, h_pt = pdfium.PdfDocument(str(out))[0].get_size()
    assert w_pt * 25.4 / 72 == pytest.approx(210.0, abs=0.5)
    assert h_pt * 25.4 / 72 == pytest.approx(297.0, abs=0.5)


def test_forms_render_2024_falls_back_to_reference_without_the_pdf(tmp_path, monkeypatch):
    monkeypatch.setenv("C1OCR_SHARED_DATA", str(tmp_path / "nowhere"))
    out = tmp_path / "p3.png"
    r = runner.invoke(app, ["forms", "render", "ppwp-2024-plano-p3", "--out", str(out), "--dpmm", "1"])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (600, 900)


def test_forms_render_rejects_other_suffixes(tmp_path):
    r = runner.invoke(app, ["forms", "render", "ppwp-2019-c1-l2", "--out", str(tmp_path / "page.jpg")])
    assert r.exit_code != 0


def test_forms_validate_reports_bad_key_and_exit_code(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(get_template("ppwp-2019-c1-l2").model_dump_json(), encoding="utf-8")
    doc = get_template("ppwp-2019-c1-l2").model_dump(mode="json")
    doc["frame"]["colour"] = "black"
    bad = tmp_path / "bad.json"
    import json

    bad.write_text(json.dumps(doc), encoding="utf-8")
    assert runner.invoke(app, ["forms", "validate", str(good)]).exit_code == 0
    r = runner.invoke(app, ["forms", "validate", str(good), str(bad)])
    assert r.exit_code == 2
    assert "frame.colour" in r.output


def test_forms_list_and_show():
    r = runner.invoke(app, ["forms", "list"], env={"COLUMNS": "240"})
    assert r.exit_code == 0
    for t in list_templates():
        assert t.id in r.output and t.content_hash[7:19] in r.output
    r = runner.invoke(app, ["forms", "show", "ppwp-2014-c1-lampiran1"])
    assert r.exit_code == 0
    import json

    assert json.loads(r.output)["id"] == "ppwp-2014-c1-lampiran1"
