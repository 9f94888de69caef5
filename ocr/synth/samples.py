"""Regenerate the bundled `samples/`: a dozen synthetic photos across the templates, each with its truth JSON.

    python -m ocr.synth.samples [--out samples] [--data ../shared/data]

Includes one complete PPWP 2024 form (pages 1-3 of one polling station), the older and KWK layouts, an unusable
photo, a wrong page for its slot and a form carrying a KPPS arithmetic mistake. Photos are about 3 MP to keep the
folder small.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ocr.synth.corpus import SynthOptions, generate_page
from ocr.synth.glyphs import REPO_ROOT
from ocr.templates import list_templates

SEED = 2024
BASE = SynthOptions(megapixels=(2.5, 3.2), force_reason="", force_wrong_page=False, mistake_rate=0.0)

# (file stem, slot template, index, option overrides)
SAMPLES: list[tuple[str, str, int, dict]] = [
    ("ppwp-2024-plano-p1", "ppwp-2024-plano-p1", 1, {}),
    ("ppwp-2024-plano-p2", "ppwp-2024-plano-p2", 1, {}),
    ("ppwp-2024-plano-p3", "ppwp-2024-plano-p3", 1, {}),
    ("ppwp-2024-plano-p3-kpps-mistake", "ppwp-2024-plano-p3", 7, {"mistake_rate": 1.0}),
    ("ppwp-2024-plano-p2-unusable-blurry", "ppwp-2024-plano-p2", 2, {"force_reason": "blurry"}),
    ("ppwp-2024-plano-p1-unusable-cut-off", "ppwp-2024-plano-p1", 3, {"force_reason": "cut_off"}),
    ("ppwp-2024-plano-p2-slot-wrong-page", "ppwp-2024-plano-p2", 4, {"force_wrong_page": True}),
    ("ppwp-2019-plano-l2", "ppwp-2019-plano-l2", 1, {}),
    ("ppwp-2019-c1-l2", "ppwp-2019-c1-l2", 1, {}),
    ("ppwp-2014-c1-lampiran1", "ppwp-2014-c1-lampiran1", 1, {}),
    ("kwk-2024-3-p2", "kwk-2024-3-p2", 1, {}),
    ("kwk-2024-tunggal-p2", "kwk-2024-tunggal-p2", 1, {}),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "samples")
    ap.add_argument("--data", type=str, default=None, help="shared data folder (default ../shared/data)")
    args = ap.parse_args(argv)
    known = {t.id for t in list_templates()}
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for stem, slot, index, over in SAMPLES:
        if slot not in known:
            print(f"skip {stem}: template {slot} is not built in")
            continue
        opts = replace(BASE, data_dir=args.data, **over)
        data, truth = generate_page(slot, SEED, index, opts, image_name=stem + ".jpg")
        (args.out / f"{stem}.jpg").write_bytes(data)
        (args.out / f"{stem}.json").write_text(truth.model_dump_json(indent=1), encoding="utf-8")
        total += len(data)
        print(f"{stem}.jpg  {truth.photo.width}x{truth.photo.height}  {len(data) // 1024} KiB  "
              f"reason={truth.unreadable_reason}  consistent={truth.form.consistent}")
    print(f"total {total / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
