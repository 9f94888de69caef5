"""The one way through the reader: load -> locate -> gate -> cells -> read -> decode (-> rules, in decode).

    reading = read_page(Path("photo.jpg"))            # a PageReading, never an exception for a bad photo
    quick = check_page(data, expected_template=...)  # load + locate + gate only: the immediate retake answer

Bad *requests* (bytes that are not an image, too large, an unknown template id) raise `C1Error` subclasses; a broken
installation (no tesseract, no model) raises `MissingDependency`. Everything a photo can do wrong is a value.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from time import perf_counter

import numpy as np

from ocr import __version__
from ocr.cells import CellCrop, darkness_image, extract_cells
from ocr.config import Settings, get_settings
from ocr.errors import Unreadable, UnreadableReason
from ocr.gate import gate, photo_level_reason
from ocr.load import LoadedImage, load_image
from ocr.locate import Located, locate
from ocr.read.base import DigitReader
from ocr.results import Instruction, LocationInfo, PageReading
from ocr.templates import get_template

_reader_lock = threading.Lock()


@lru_cache(maxsize=8)
def _cached_reader(name: str) -> DigitReader:
    from ocr.read.ensemble import make_reader

    return make_reader(name)


def get_reader(name: str) -> DigitReader:
    with _reader_lock:
        return _cached_reader(name)


def _ms(t0: float) -> float:
    return round((perf_counter() - t0) * 1000.0, 1)


def _location_info(loc: Located, img: LoadedImage) -> LocationInfo:
    # Report coordinates in the original photo's pixels (the working image may be reduced).
    s = 1.0 / img.scale
    return LocationInfo(
        method=loc.method,
        marker_id=loc.marker_id,
        page_corners_px=[(float(x * s), float(y * s)) for x, y in loc.page_corners_px()],
        frame_points_px=[(float(x * s), float(y * s)) for x, y in loc.frame_points_px],
        reprojection_error_mm=None if loc.reprojection_error_mm is None else round(loc.reprojection_error_mm, 3),
        px_per_mm=round(loc.px_per_mm * s, 3),
        rotation_deg=loc.rotation_deg,
    )


def _unreadable(base: dict, u: Unreadable) -> PageReading:
    return PageReading(
        **base,
        status="unreadable",
        reason=u.reason.value,
        detail=u.detail,
        instruction=Instruction(id=u.instruction_id, en=u.instruction_en),
        page_status="unreadable",
        page_reasons=[u.reason.value],
    )


def _front(source, image_name, expected_template, engine, settings):
    """Load, locate and gate. Returns (base fields, LoadedImage, Located | None, PageReading | None-if-ok)."""
    timings: dict[str, float] = {}
    t = perf_counter()
    expected = get_template(expected_template) if expected_template else None
    img = load_image(source, settings.load)
    timings["load"] = _ms(t)
    base = dict(
        image=image_name,
        sha256=img.sha256,
        engine=engine,
        expected_template=expected_template,
        timings_ms=timings,
        reader_version=__version__,
    )
    t = perf_counter()
    loc = locate(img.gray, expected=expected, bgr=img.bgr)
    timings["locate"] = _ms(t)
    if isinstance(loc, Unreadable):
        if loc.reason in (UnreadableReason.NOT_FOUND, UnreadableReason.CUT_OFF):
            # a dark or smeared photo explains a missing tag better than framing does
            loc = photo_level_reason(img.gray, settings.gate) or loc
        return base, img, None, _unreadable(base, loc)
    base.update(
        template=loc.template.id,
        template_version=loc.template.version,
        template_hash=loc.template.content_hash,
        location=_location_info(loc, img),
    )
    if expected is not None and loc.template.id != expected.id:
        u = Unreadable(
            UnreadableReason.WRONG_PAGE,
            f"this is {loc.template.id} ({loc.template.title}), the slot expects {expected.id}",
        )
        return base, img, loc, _unreadable(base, u)
    t = perf_counter()
    g = gate(img.bgr, loc, settings.gate)
    timings["gate"] = _ms(t)
    base["gate"] = g.metrics
    if not g.ok:
        return base, img, loc, _unreadable(base, g.unreadable)
    return base, img, loc, None


def check_page(
    source: bytes | str | Path,
    *,
    image_name: str = "<upload>",
    expected_template: str | None = None,
    engine: str | None = None,
    settings: Settings | None = None,
) -> PageReading:
    """Load, locate and gate only: tells an officer at once whether to retake the photo."""
    settings = settings or get_settings()
    t0 = perf_counter()
    base, _, _, bad = _front(source, image_name, expected_template, engine or settings.reader.engine, settings)
    if bad is not None:
        bad.timings_ms["total"] = _ms(t0)
        return bad
    base["timings_ms"]["total"] = _ms(t0)
    return PageReading(**base, status="read")


@dataclass
class CutPage:
    """A photo taken through load -> locate -> gate -> cells: what the readers get, or why it was refused."""

    base: dict  # PageReading fields known so far (image, template, location, gate metrics, timings)
    img: LoadedImage | None
    loc: Located | None
    refused: PageReading | None  # set when the photo is unusable (then `cells` is empty)
    dark: np.ndarray | None = None
    cells: list[CellCrop] = field(default_factory=list)  # every field's boxes, then the tally-row totals read


def cut_page(
    source: bytes | str | Path,
    *,
    image_name: str = "<bytes>",
    expected_template: str | None = None,
    engine: str | None = None,
    settings: Settings | None = None,
) -> CutPage:
    """The reader's front half: the prepared box cells of a usable photo (also how training cells are cut)."""
    settings = settings or get_settings()
    base, img, loc, bad = _front(source, image_name, expected_template, engine or settings.reader.engine, settings)
    if bad is not None:
        return CutPage(base, img, loc, bad)
    t = perf_counter()
    dark = darkness_image(img.bgr)
    cells = extract_cells(dark, loc.H, loc.template)
    flat = [c for box_cells in cells.values() for c in box_cells]
    base["timings_ms"]["cells"] = _ms(t)
    return CutPage(base, img, loc, None, dark, flat)


def read_page(
    source: bytes | str | Path,
    *,
    image_name: str | None = None,
    expected_template: str | None = None,
    engine: str | None = None,
    settings: Settings | None = None,
    reader: DigitReader | None = None,
    debug_dir: Path | None = None,
) -> PageReading:
    """Read every digit box of one page photo (the tally-row totals too: they feed the R14 cross-check only)."""
    from ocr.decode import BoxEvidence, decode_page
    from ocr.read.ensemble import read_cells
    from ocr.read.omr import read_omr

    settings = settings or get_settings()
    engine = engine or settings.reader.engine
    if image_name is None:
        image_name = str(source) if isinstance(source, (str, Path)) else "<bytes>"
    t0 = perf_counter()
    cut = cut_page(source, image_name=image_name, expected_template=expected_template, engine=engine, settings=settings)
    base, img, loc, bad, dark, flat = cut.base, cut.img, cut.loc, cut.refused, cut.dark, cut.cells
    timings = base["timings_ms"]
    if bad is not None:
        bad.timings_ms["total"] = _ms(t0)
        if debug_dir is not None:
            from ocr.debug import write_debug

            write_debug(debug_dir, image_name, img, loc, None, bad)
        return bad
    template = loc.template

    t = perf_counter()
    reader = reader or get_reader(engine)
    preds = read_cells(reader, [c.cell for c in flat], timeout_s=settings.reader.tesseract_timeout_s)
    timings["read"] = _ms(t)

    # Keyed by field id, and by row id for the tally-row totals (decode_page cross-checks them, R14).
    evidence: dict[str, list[BoxEvidence]] = {}
    for c, p in zip(flat, preds):
        combined = p.combined
        evidence.setdefault(c.field_id, []).append(
            BoxEvidence(
                probs=None if combined.probs is None else np.asarray(combined.probs, dtype=np.float64),
                engines={name: ep.topk(settings.reader.topk) for name, ep in p.engines.items()},
                ink=c.cell.ink_fraction,
                empty=c.cell.empty,
                touches_border=c.cell.touches_border,
                error=combined.error,
            )
        )
    t = perf_counter()
    omr = {f.id: read_omr(dark, loc.H, f, template) for f in template.fields if f.omr}
    timings["omr"] = _ms(t)

    t = perf_counter()
    decoded = decode_page(
        template,
        evidence,
        omr,
        profile=settings.profile(template.election),
        settings=settings,
        form_id=img.sha256,
    )
    timings["decode"] = _ms(t)
    timings["total"] = _ms(t0)
    reading = PageReading(
        **base,
        status="read",
        page_status=decoded.status,
        page_reasons=decoded.reasons,
        fields=decoded.fields,
        rules=decoded.rules,
    )
    if debug_dir is not None:
        from ocr.debug import write_debug

        write_debug(debug_dir, image_name, img, loc, flat, reading)
    return reading
