"""Gate stage: each retake reason from a controlled defect of an otherwise good photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ocr.config import GateThresholds
from ocr.errors import UnreadableReason
from ocr.gate import gate
from ocr.locate import Located, locate
from ocr.templates import get_template
from ocr.templates.render import blank_page
from photo_sim import photograph, tilted_corners

TID = "ppwp-2024-plano-p2"


@pytest.fixture(scope="module")
def good():
    t = get_template(TID)
    photo, H = photograph(blank_page(t, 4.0), 4.0, t, tilted_corners(), background=90)
    bgr = cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR)
    loc = locate(photo)
    assert isinstance(loc, Located)
    return bgr, loc


def test_good_photo_passes(good):
    bgr, loc = good
    res = gate(bgr, loc, GateThresholds())
    assert res.ok, res.unreadable
    assert res.metrics["min_box_px"] > 50 and res.metrics["blur_mm"] < 0.5


def test_blur_is_rejected(good):
    bgr, loc = good
    res = gate(cv2.GaussianBlur(bgr, (0, 0), 6), loc, GateThresholds())
    assert not res.ok and res.unreadable.reason is UnreadableReason.BLURRY


def test_dark_photo_is_rejected(good):
    bgr, loc = good
    res = gate((bgr * 0.15).astype(np.uint8), loc, GateThresholds())
    assert not res.ok and res.unreadable.reason is UnreadableReason.TOO_DARK


def test_glare_on_boxes_is_rejected(good):
    bgr, loc = good
    out = (bgr.astype(np.float32) * 0.85).astype(np.uint8)  # paper well below saturation
    f = loc.template.fields[0]
    from ocr.geometry import project

    cx, cy = project(loc.H, [f.boxes[1].center])[0]
    cv2.circle(out, (int(cx), int(cy)), 90, (255, 255, 255), -1)  # a washed-out spot over a box
    res = gate(out, loc, GateThresholds())
    assert not res.ok and res.unreadable.reason is UnreadableReason.GLARE


def test_small_page_is_rejected():
    t = get_template(TID)
    size = (3000, 4000)
    corners = [(1200, 1600), (1500, 1600), (1500, 2050), (1200, 2050)]  # the page fills a tenth of the photo
    photo, _ = photograph(blank_page(t, 4.0), 4.0, t, corners, size=size)
    loc = locate(photo)
    if not isinstance(loc, Located):  # too small to even find the tag is also a correct refusal
        return
    res = gate(cv2.cvtColor(photo, cv2.COLOR_GRAY2BGR), loc, GateThresholds())
    assert not res.ok and res.unreadable.reason is UnreadableReason.TOO_SMALL


def test_cut_off_page_is_rejected(good):
    bgr, loc = good
    # Crop the right part of the photo away: boxes of page 2 sit at the right side.
    w = bgr.shape[1]
    cut = bgr[:, : int(w * 0.78)].copy()
    res = gate(cut, loc, GateThresholds())
    assert not res.ok and res.unreadable.reason is UnreadableReason.CUT_OFF


def test_thresholds_are_configuration(good):
    bgr, loc = good
    strict = GateThresholds(min_box_px=10_000)
    res = gate(bgr, loc, strict)
    assert not res.ok and res.unreadable.reason is UnreadableReason.TOO_SMALL
