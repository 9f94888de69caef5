"""Generate synthetic filled-form photos with ground truth.

    from ocr.synth.corpus import generate_page, SynthOptions
    jpeg_bytes, truth = generate_page("ppwp-2024-plano-p2", seed=7, index=0)

Deterministic: the photo of (template, seed, index, options) is the same bytes on every run. Pages with the same
(seed, index) of one form set share one polling station's tally and one writer, so a corpus of p1/p2/p3 holds
complete, cross-page-consistent forms.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from ocr.errors import UnreadableReason
from ocr.geometry import local_scale_px_per_mm, project
from ocr.synth.camera import inside, page_corners, plan_shot, take_photo
from ocr.synth.fill import draw_writer, fill_page
from ocr.synth.glyphs import glyph_bank
from ocr.synth.page import blank_page_gray, quantise_dpmm
from ocr.synth.tally import draw_form_tally, pages_of, qualify
from ocr.synth.truth import FieldTruth, FormTruth, PageTruth, PhotoTruth
from ocr.templates import get_template, list_templates

# Reasons the generator can produce on purpose, with the reader's vocabulary (ocr.errors.UnreadableReason).
UNUSABLE_REASONS: tuple[str, ...] = (
    UnreadableReason.CUT_OFF.value,
    UnreadableReason.BLURRY.value,
    UnreadableReason.TOO_DARK.value,
    UnreadableReason.GLARE.value,
    UnreadableReason.TOO_SMALL.value,
    UnreadableReason.OCCLUDED.value,
)


@dataclass(frozen=True)
class SynthOptions:
    megapixels: tuple[float, float] = (2.0, 12.0)
    unusable_rate: float = 0.1
    mistake_rate: float = 0.1
    wrong_page_rate: float = 0.03
    correction_rate: float = 0.03
    occluder_rate: float = 0.08  # usable photos with a finger/pen away from the boxes
    nonplanar_rate: float = 0.6  # photos whose paper is curled or folded (within the truth's nonplanar_max_px)
    data_dir: str | None = None  # shared data folder (None: default location)
    use_shared_data: bool = True  # False: procedural strokes only (fast tests, no data needed)
    writers: str = "benchmark"  # "training": the digit model's writer slices (ocr/read/page_cells.py only)
    force_reason: str | None = None  # "" forces a usable photo; a reason forces that defect
    force_wrong_page: bool | None = None
    max_canvas_dpmm: float = 8.0


def _key(s: str) -> int:
    return zlib.crc32(s.encode("utf-8"))


def _rng(*parts: int) -> np.random.Generator:
    return np.random.default_rng([int(p) & 0xFFFFFFFF for p in parts])


def _wrong_page_for(slot_id: str, rng: np.random.Generator) -> str:
    """Another page: of the same form set when it has several, else any other template."""
    fs, templates = pages_of(slot_id)
    others = [t.id for t in templates if t.id != slot_id]
    if not others:
        others = [t.id for t in list_templates() if t.id != slot_id]
    return others[int(rng.integers(len(others)))]


def generate_page(
    template_id: str, seed: int, index: int, options: SynthOptions | None = None, image_name: str | None = None
) -> tuple[bytes, PageTruth]:
    """One synthetic photo of the page uploaded for slot `template_id`: (JPEG bytes, truth)."""
    o = options or SynthOptions()
    slot = get_template(template_id)
    rng = _rng(seed, index, _key(template_id), 1)
    wrong = o.force_wrong_page if o.force_wrong_page is not None else bool(rng.random() < o.wrong_page_rate)
    t = get_template(_wrong_page_for(template_id, rng)) if wrong else slot
    if o.force_reason is not None:
        reason = o.force_reason or None
    else:
        reason = str(rng.choice(UNUSABLE_REASONS)) if rng.random() < o.unusable_rate else None

    # One polling station and one writer per (seed, index, form set): all pages of a form agree.
    tally = draw_form_tally(_rng(seed, index, _key(t.form_set), 2), t.id, o.mistake_rate)
    bank = glyph_bank(o.data_dir, o.use_shared_data, o.writers)
    writer = draw_writer(_rng(seed, index, _key(t.form_set), 3), bank, o.correction_rate)

    shot = plan_shot(rng, t, o.megapixels, reason)
    scales = [local_scale_px_per_mm(shot.H, x, y) for x, y in page_corners(t)]
    dpmm = quantise_dpmm(min(max(max(scales) * 1.05, 0.5), o.max_canvas_dpmm))
    canvas = cv2.cvtColor(blank_page_gray(t.id, dpmm), cv2.COLOR_GRAY2BGR)
    page_values = {f.id: tally.values[qualify(t.page, f.id)] for f in t.fields}
    # Tally strokes and row totals count the votes; a KPPS mistake is in the written total only (R14 catches it).
    page_intended = {f.id: tally.intended[qualify(t.page, f.id)] for f in t.fields}
    fields = fill_page(canvas, dpmm, t, page_values, bank, writer, rng, intended=page_intended)

    photo = take_photo(rng, canvas, dpmm, t, shot, noise_seed=_key(f"{seed}:{index}:{template_id}"),
                       occluder_rate=o.occluder_rate, nonplanar_rate=o.nonplanar_rate)
    if photo.covered:
        fields = [_mark_covered(f, photo.covered) for f in fields]
    quality = int(rng.integers(50, 96))
    ok, buf = cv2.imencode(".jpg", photo.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")

    frame_px = project(shot.H, t.frame.points)
    notes = []
    if wrong:
        notes.append(f"wrong page: {t.id} photographed for slot {slot.id}")
    truth = PageTruth(
        seed=seed,
        index=index,
        image=image_name or f"{template_id}-s{seed}-{index:05d}.jpg",
        template_id=t.id,
        template_version=t.version,
        template_hash=t.content_hash,
        expected_template=slot.id,
        unreadable_reason=reason,
        leading_convention=writer.convention,
        ink=writer.ink,
        fields=fields,
        form=FormTruth(
            form_set=tally.form_set,
            consistent=tally.consistent,
            broken=tally.broken,
            mistake=tally.mistake,
            values=tally.values,
        ),
        photo=PhotoTruth(
            width=shot.width,
            height=shot.height,
            jpeg_quality=quality,
            orientation=shot.orientation,
            roll_deg=round(shot.roll_deg, 3),
            tilt_deg=round(shot.tilt_deg, 3),
            homography=[[float(v) for v in row] for row in shot.H],
            page_corners_px=[(float(x), float(y)) for x, y in project(shot.H, page_corners(t))],
            frame_points_px=[(float(x), float(y)) for x, y in frame_px],
            frame_points_inside=[bool(v) for v in inside(frame_px, shot.width, shot.height)],
            box_px=round(shot.box_px, 2),
            nonplanar_max_px=round(photo.nonplanar_px, 2),
            effects=photo.effects,
            occluder=photo.occluder,
        ),
        notes=notes,
    )
    return buf.tobytes(), truth


def _mark_covered(f: FieldTruth, covered: set[tuple[str, int]]) -> FieldTruth:
    boxes = [b.model_copy(update={"covered": (f.id, b.index) in covered}) for b in f.boxes]
    return f.model_copy(update={"boxes": boxes})


# --- corpora ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageJob:
    template_id: str
    seed: int
    index: int
    out_dir: str
    options: SynthOptions = field(default_factory=SynthOptions)


def page_name(template_id: str, seed: int, index: int) -> str:
    return f"{template_id}-s{seed}-{index:05d}"


def run_job(job: PageJob) -> tuple[str, str | None]:
    """Generate one page into `out_dir` (image + truth JSON); returns (name, unreadable reason)."""
    name = page_name(job.template_id, job.seed, job.index)
    data, truth = generate_page(job.template_id, job.seed, job.index, job.options, image_name=name + ".jpg")
    out = Path(job.out_dir)
    (out / (name + ".jpg")).write_bytes(data)
    (out / (name + ".json")).write_text(truth.model_dump_json(indent=1), encoding="utf-8")
    return name, truth.unreadable_reason


def corpus_jobs(template_ids: Iterable[str], n: int, seed: int, out_dir: Path, options: SynthOptions) -> list[PageJob]:
    return [PageJob(tid, seed, i, str(out_dir), options) for tid in template_ids for i in range(n)]


def generate_corpus(
    jobs: list[PageJob], workers: int = 1, on_done: Callable[[str, str | None], None] | None = None
) -> None:
    """Run page jobs, in `workers` processes when > 1 (each page is independent and deterministic)."""
    if jobs:
        Path(jobs[0].out_dir).mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for j in jobs:
            r = run_job(j)
            if on_done:
                on_done(*r)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork") if hasattr(__import__("os"), "fork") else mp.get_context()
    with ctx.Pool(workers) as pool:
        for r in pool.imap_unordered(run_job, jobs, chunksize=2):
            if on_done:
                on_done(*r)


def with_overrides(o: SynthOptions, **kw) -> SynthOptions:
    return replace(o, **kw)
