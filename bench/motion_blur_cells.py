"""How much hand shake costs the digit model: held-out synthetic digit cells read sharp and smeared.

    python -m bench.motion_blur_cells [--model ocr/read/models/digits.onnx] [--n 3000] [--data ../shared/data]

Cells are drawn by the training renderer (`ocr.read.cells_synth.render_crop`, held-out writers: MNIST 45000-49999,
USPS 5400-5999, fonts), digits and Xs only, with its own motion blur turned off; each smear is then applied to the
whole crop (box lines too, as a shaken camera does) with a line kernel of the given share of the box at a random
angle (`ocr.synth.camera.motion_kernel`), before `prepare_cell`. Every smear reads the same draws (one seed), so the
rows differ by the smear alone. The page camera shakes 15% of usable photos by up to ~0.14 of a box.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from ocr.cells import BOX_PX, prepare_cell
from ocr.read import cells_synth
from ocr.read.base import BLANK_INDEX
from ocr.read.cells_synth import GlyphBank, default_data_dir
from ocr.read.cnn import DEFAULT_MODEL, CnnReader
from ocr.synth.camera import motion_kernel

SMEARS = (0.0, 0.10, 0.15, 0.20)  # smear length as a share of the box


def read_smeared(reader: CnnReader, bank: GlyphBank, n: int, smear: float, seed: int = 7) -> tuple[float, float]:
    """(accuracy, share of cells read right but under 0.99) over n digit / X cells smeared by `smear` of a box."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    while len(ys) < n:
        label = cells_synth.sample_label(rng)
        if label == BLANK_INDEX:
            continue
        r = cells_synth.render_crop(rng, bank, label)
        crop = r.crop
        if smear > 0:
            crop = cv2.filter2D(crop, -1, motion_kernel(rng, BOX_PX * smear * rng.uniform(0.7, 1.3)))
        cell = prepare_cell(crop, r.border_px)
        if cell.empty:
            continue
        xs.append(cell.channels(2))
        ys.append(label)
    p = reader.predict_inputs(np.stack(xs))
    right = p.argmax(1) == np.array(ys)
    return float(right.mean()), float((right & (p.max(1) < 0.99)).mean())


def motion_blur_cells_command(
    model: Path = typer.Option(DEFAULT_MODEL, help="ONNX digit model (two input planes)"),
    n: int = typer.Option(3000, min=100, help="cells per smear"),
    data: Optional[Path] = typer.Option(None, help="shared data folder (default ../shared/data)"),
) -> None:
    bank = GlyphBank.load(data or default_data_dir(), "val", use_fonts=True)
    reader = CnnReader(model)
    cells_synth.P_MOTION = 0.0  # the smear below is the only one
    table = Table(title=f"{model.name}: {n} held-out synthetic digit / X cells per row ({', '.join(bank.sources)})")
    for col in ("smear (share of the box)", "accuracy", "right but < 0.99"):
        table.add_column(col, justify="right")
    for smear in SMEARS:
        acc, unsure = read_smeared(reader, bank, n, smear)
        table.add_row(f"{smear:.2f}", f"{acc:.2%}", f"{unsure:.2%}")
    Console().print(table)


def main(argv: list[str] | None = None) -> None:
    app = typer.Typer(add_completion=False)
    app.command()(motion_blur_cells_command)
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
