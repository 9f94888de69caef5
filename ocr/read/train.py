"""`c1ocr train`: train the digit CNN on synthetic cells and export it to ONNX for `ocr.read.cnn.CnnReader`.

Data: synthetic box crops from ocr/read/cells_synth.py (MNIST 0-49999 / USPS 0-5999 writers, handwriting fonts,
procedural X / dash / seven-segment glyphs), passed through `ocr.cells.prepare_cell`. The real form crops are never
trained on; `evaluate_real_crops` only measures the shipped model on them (see ocr/read/TRAINING.md).

torch is imported lazily: the rest of c1ocr runs without it.
"""

from __future__ import annotations

import csv
import json
import os
import time
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Annotated, Sequence

import cv2
import numpy as np
import typer

from ocr.cells import BOX_PX, CELL_PX, CROP_PX, MARGIN_PX, prepare_cell
from ocr.errors import BadInput, MissingDependency
from ocr.read import cells_synth
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES
from ocr.read.cells_synth import GlyphBank, default_data_dir
from ocr.read.cnn import DEFAULT_MODEL, CnnReader, input_planes, model_card_path, read_model_card
from ocr.read.datacache import cached_arrays, source_fingerprint

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE = REPO_ROOT / "runs" / "cells-cache"
CHUNK = 2000  # samples per generator chunk (one seed each: the data do not depend on the worker count)
ONNX_OPSET = 13  # read by OpenCV 5.0's dnn importer (checked after every export)


def _torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise MissingDependency(
            "Training the digit model needs torch and onnx: pip install -e .[train]", code="train_extra_missing"
        ) from e
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise MissingDependency("Exporting the digit model needs onnx: pip install -e .[train]") from e
    return torch


# --------------------------------------------------------------------------------------------------------------------
# Data


_BANK: GlyphBank | None = None


def _init_worker(bank: GlyphBank) -> None:
    global _BANK
    _BANK = bank
    cv2.setNumThreads(1)


def _chunk_job(args: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    n, seed, chunk = args
    assert _BANK is not None
    return cells_synth.make_cells(_BANK, n, seed, chunk)


def build_cells(
    bank: GlyphBank, n: int, seed: int, *, chunk0: int = 0, workers: int = 2, cache_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic prepared cells (uint8 n x 2 x 32 x 32, 255 = ink; the planes of PreparedCell.channels) and labels;
    chunk k uses generator seed (seed, chunk0 + k)."""
    code = source_fingerprint("ocr/read/cells_synth.py", "ocr/cells.py")
    key = f"{seed}-{chunk0}-{n}-{'+'.join(bank.sources)}-{code}"

    def build() -> dict[str, np.ndarray]:
        jobs = [(min(CHUNK, n - start), seed, chunk0 + k) for k, start in enumerate(range(0, n, CHUNK))]
        if workers > 1 and len(jobs) > 1:
            with get_context("fork").Pool(workers, initializer=_init_worker, initargs=(bank,)) as pool:
                parts = pool.map(_chunk_job, jobs)
        else:
            _init_worker(bank)
            parts = [_chunk_job(j) for j in jobs]
        return {"X": np.concatenate([p[0] for p in parts]), "y": np.concatenate([p[1] for p in parts])}

    d = cached_arrays(cache_dir, "cells", key, build)
    return d["X"], d["y"]


# --------------------------------------------------------------------------------------------------------------------
# Model


def make_model(torch, dropout: float = 0.3, planes: int = 1):
    """Three conv blocks (conv-BN-ReLU-pool) and a small head: ~290k parameters, ~1.2 MB as float32 ONNX. `planes`:
    input planes (PreparedCell.channels)."""
    nn = torch.nn

    def block(i: int, o: int):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(
        block(planes, 32),  # 32 -> 16
        block(32, 64),  # 16 -> 8
        block(64, 128),  # 8 -> 4
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(128 * 4 * 4, 96),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(96, N_CLASSES),
    )


def onnx_member_weights(path: Path, member: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (weight, bias) pairs of one net in an ONNX digit model, in the order of `make_model`'s layers (three
    convolutions, then the two fully connected layers): member `member` of a merged ensemble (`merge_models`), or the
    only net of a single model. The export folds each batch norm into its convolution, so a convolution here has a
    bias and no batch norm follows it."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise BadInput(f"Model {path} not found.", code="model_missing")
    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    for node in graph.node:
        if node.op_type == "BatchNormalization":
            raise BadInput(f"Model {path} keeps its batch norms unfolded; c1ocr's export folds them.",
                           code="model_corrupt")
        if node.op_type not in ("Conv", "Gemm"):
            continue
        if len(node.input) < 3 or any(name not in weights for name in node.input[1:3]):
            raise BadInput(f"Model {path}: layer {node.name or node.op_type} has no stored weight and bias.",
                           code="model_corrupt")
        w, b = weights[node.input[1]], weights[node.input[2]]
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            w = w.T  # torch's Linear stores (out, in); a Gemm without transB stores (in, out)
        layers.append((np.array(w, np.float32), np.array(b, np.float32)))
    per_net = 5
    nets = len(layers) // per_net
    if len(layers) % per_net or not 0 <= member < nets:
        raise BadInput(
            f"Model {path} holds {nets} net(s) of c1ocr's digit architecture; member {member} is not one of them.",
            code="invalid_request",
        )
    return layers[member * per_net : (member + 1) * per_net]


def load_member_into(torch, model, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Start `make_model`'s net from a trained net's folded weights (`onnx_member_weights`). Each batch norm becomes
    the identity plus the folded bias (mean 0, variance 1 - eps, scale 1): the net computes exactly what the ONNX
    file does, as long as the batch norms are kept in eval mode while training (see `train`)."""
    nn = torch.nn
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for (w, b), conv, bn in zip(layers[:3], convs, norms):
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise BadInput(f"A convolution of the initial model is {tuple(w.shape)}, this net's is "
                               f"{tuple(conv.weight.shape)} (another number of input planes?).", code="invalid_request")
            conv.weight.copy_(torch.from_numpy(w))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        for (w, b), lin in zip(layers[3:], linears):
            if tuple(w.shape) != tuple(lin.weight.shape):
                raise BadInput(f"A dense layer of the initial model is {tuple(w.shape)}, this net's is "
                               f"{tuple(lin.weight.shape)}.", code="invalid_request")
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))


def _augment(torch, x, gen):
    """Small random affine jitter (±1.5 px, ±6°, ±8% scale) on a batch: the cell stage centres glyphs by mass, so
    larger moves would teach a distribution the reader never produces."""
    n = x.shape[0]
    F = torch.nn.functional
    ang = (torch.rand(n, generator=gen) - 0.5) * 2 * 0.105
    sc = 1 + (torch.rand(n, generator=gen) - 0.5) * 0.16
    t = (torch.rand(n, 2, generator=gen) - 0.5) * 2 * (1.5 / (CELL_PX / 2))
    cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")


def _predict(torch, model, X: np.ndarray, planes: int, batch: int = 1024) -> np.ndarray:
    """Softmax of `model` over cells X (uint8 n x 2 x 32 x 32), given their first `planes` planes."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(X), batch):
            xb = torch.from_numpy(X[i : i + batch, :planes].astype(np.float32) / 255.0)
            out.append(torch.softmax(model(xb), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), np.float32)


def export_onnx(torch, model, path: Path, check_inputs: np.ndarray) -> float:
    """Export with softmax inside the graph; reload with cv2.dnn and return the max |difference| to torch.
    `check_inputs`: uint8 cells, n x planes x 32 x 32."""
    import warnings

    class WithSoftmax(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return torch.softmax(self.m(x), dim=1)

    wrapped = WithSoftmax(model).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".onnx.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated but is what cv2.dnn reads best
        torch.onnx.export(
            wrapped,
            (torch.zeros(1, check_inputs.shape[1], CELL_PX, CELL_PX),),
            str(tmp),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["glyph"],
            output_names=["probs"],
            dynamic_axes={"glyph": {0: "n"}, "probs": {0: "n"}},
        )
    # The exporter restores the wrapper's training flag recursively: evaluate in eval mode again.
    wrapped.eval()
    xs = check_inputs.astype(np.float32) / 255.0
    with torch.no_grad():
        ref = wrapped(torch.from_numpy(xs)).numpy()
    net = cv2.dnn.readNetFromONNX(str(tmp))
    net.setInput(np.ascontiguousarray(xs))
    got = net.forward()
    diff = float(np.abs(got - ref).max())
    if diff > 1e-4:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ONNX export check failed: cv2.dnn and torch differ by {diff:.2e}")
    os.replace(tmp, path)
    return diff


# --------------------------------------------------------------------------------------------------------------------
# Real crops: a sanity measurement only (never training data)


@dataclass
class RealCropResult:
    path: str
    truth: str
    predicted: str
    confidence: float


@dataclass
class RealCropReport:
    n: int
    correct: int
    skipped: int  # rows that are not single-cell labels (multi-digit examples, whole pages) or unreadable files
    results: list[RealCropResult] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")


def _group_lines(profile: np.ndarray, thr: float) -> list[tuple[float, int]]:
    """Runs of profile > thr as (centre, width)."""
    on = profile > thr
    out = []
    i = 0
    while i < len(on):
        if on[i]:
            j = i
            while j < len(on) and on[j]:
                j += 1
            out.append(((i + j - 1) / 2, j - i))
            i = j
        else:
            i += 1
    return out


def _box_spans(lines: list[tuple[float, int]], size: int) -> list[tuple[float, float]]:
    """Pairs of printed lines that could bound the box: around the crop centre, at least 45% of the crop apart."""
    out = []
    for a in range(len(lines)):
        for b in range(a + 1, len(lines)):
            lo, hi = lines[a][0], lines[b][0]
            if hi - lo >= 0.45 * size and lo < size / 2 < hi:
                out.append((lo, hi))
    return out


def _pick_box(
    xs: list[tuple[float, float]], ys: list[tuple[float, float]], w: int, h: int
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """The boxes are square: with both axes, the most square pair of pairs (ties: the larger); with one axis, the
    widest pair that still fits the other dimension (a neighbouring box's line is farther out)."""
    if xs and ys:
        best = min(((x, y) for x in xs for y in ys), key=lambda p: abs((p[0][1] - p[0][0]) - (p[1][1] - p[1][0]))
                   - 0.01 * ((p[0][1] - p[0][0]) + (p[1][1] - p[1][0])))
        return best
    if xs:
        fit = [x for x in xs if x[1] - x[0] <= 1.1 * h] or xs
        return max(fit, key=lambda x: x[1] - x[0]), None
    if ys:
        fit = [y for y in ys if y[1] - y[0] <= 1.1 * w] or ys
        return None, max(fit, key=lambda y: y[1] - y[0])
    return None, None


def real_crop_to_canonical(img: np.ndarray, ink_is_bright: bool) -> tuple[np.ndarray, float]:
    """A labelled real crop -> (canonical 96x96 darkness crop, border px), as the cells stage would have cut it.

    Box crops with printed borders are registered on their box lines; crops without lines (28x28 normalised
    glyphs, tight strips) are placed inside a drawn box so they follow the same path through `prepare_cell`.
    """
    gray = img if img.ndim == 2 else img.min(axis=2)
    dark = gray.astype(np.float32) if ink_is_bright else 255.0 - gray.astype(np.float32)
    h, w = dark.shape
    if not ink_is_bright and min(h, w) >= 40:
        col = dark[h // 5 : h - h // 5].mean(axis=0)
        row = dark[:, w // 5 : w - w // 5].mean(axis=1)
        vx, vy = _pick_box(_box_spans(_group_lines(col, 140), w), _box_spans(_group_lines(row, 140), h), w, h)
        if vx or vy:
            if vx and vy:
                (x0, x1), (y0, y1) = vx, vy
            elif vx:
                x0, x1 = vx
                y0 = h / 2 - (x1 - x0) / 2
                y1 = y0 + (x1 - x0)
            else:
                y0, y1 = vy
                x0 = w / 2 - (y1 - y0) / 2
                x1 = x0 + (y1 - y0)
            sx, sy = BOX_PX / (x1 - x0), BOX_PX / (y1 - y0)
            M = np.float32([[sx, 0, MARGIN_PX - x0 * sx], [0, sy, MARGIN_PX - y0 * sy]])
            crop = cv2.warpAffine(dark, M, (CROP_PX, CROP_PX), flags=cv2.INTER_AREA, borderValue=0)
            widths = [wd for _, wd in _group_lines(col, 140)] or [3]
            return np.clip(crop, 0, 255).astype(np.uint8), float(np.median(widths) * sx)
    # No printed box: draw one and fit the glyph inside it.
    border = 3.0
    crop = np.zeros((CROP_PX, CROP_PX), np.float32)
    cv2.rectangle(crop, (MARGIN_PX, MARGIN_PX), (MARGIN_PX + BOX_PX, MARGIN_PX + BOX_PX), 230, int(border))
    inner = BOX_PX - 2 * int(border) - 4
    s = inner / max(h, w)
    g = cv2.resize(dark, (max(1, int(round(w * s))), max(1, int(round(h * s)))), interpolation=cv2.INTER_LINEAR)
    y0 = (CROP_PX - g.shape[0]) // 2
    x0 = (CROP_PX - g.shape[1]) // 2
    crop[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]] = np.maximum(crop[y0 : y0 + g.shape[0], x0 : x0 + g.shape[1]], g)
    return np.clip(crop, 0, 255).astype(np.uint8), border


def _truth_class(label: str) -> str | None:
    label = label.strip()
    if label in ("-", "blank"):
        return "_"
    if label.upper() == "X":
        return "X"
    if len(label) == 1 and label.isdigit():
        return label
    return None  # "multi: ...", "page: ..."


def evaluate_real_crops(data_dir: str | Path | None = None, model_path: str | Path | None = None) -> RealCropReport:
    """Accuracy of the CNN (cells stage + model) on the hand-labelled real digit crops (election_forms/labels/
    digit_crops.csv). Empty cells count as "_" (the reader never runs the net on them)."""
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    ef = data_dir / "election_forms"
    table = ef / "labels" / "digit_crops.csv"
    if not table.is_file():
        raise BadInput(f"Labelled crops not found at {table}; pass --data pointing at shared/data.")
    reader = CnnReader(model_path)
    rows = list(csv.DictReader(table.open()))
    cells, truths, paths = [], [], []
    skipped = 0
    for r in rows:
        truth = _truth_class(r["label"])
        img = cv2.imread(str(ef / r["path"]), cv2.IMREAD_UNCHANGED)
        if truth is None or img is None:
            skipped += 1
            continue
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[:, :, :3]
        gray = img if img.ndim == 2 else img.min(axis=2)
        # Normalised crops (MNIST-like) are white ink on black; box crops and strips are dark ink on paper.
        ink_is_bright = float(np.median(gray)) < 128
        crop, border = real_crop_to_canonical(img, ink_is_bright)
        cells.append(prepare_cell(crop, border))
        truths.append(truth)
        paths.append(r["path"])
    preds = reader.read(cells)
    report = RealCropReport(n=len(cells), correct=0, skipped=skipped)
    for p, t, pred in zip(paths, truths, preds):
        if pred.ok:
            top, conf = pred.topk(1)[0]
        else:
            top, conf = "?", 0.0
        report.results.append(RealCropResult(p, t, top, conf))
        report.correct += int(top == t)
    return report


# --------------------------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    out: Path
    val_accuracy: float
    val_n: int
    confusion: np.ndarray
    onnx_max_diff: float
    card: dict


UPRIGHT_BAR_ASPECT = 2.5  # a prepared glyph this many times taller than wide is a bar: to the net, a "1"


def drop_upright_bars_labelled_blank(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Which cells (uint8 n x planes x 32 x 32, glyph first) to keep: not those labelled "no digit" whose glyph is an
    upright bar.

    In a page cell that is a box line the cell stage kept in an empty box; in a synthetic one, a short vertical
    line fragment, which normalisation magnifies. Either looks like a "1": labelled "no digit", it pulls real thick
    "1"s towards a dash."""
    ink = X[:, 0] > 127
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    height = np.where(rows.any(axis=1), rows.shape[1] - np.argmax(rows[:, ::-1], axis=1) - np.argmax(rows, axis=1), 0)
    width = np.where(cols.any(axis=1), cols.shape[1] - np.argmax(cols[:, ::-1], axis=1) - np.argmax(cols, axis=1), 0)
    upright = height > UPRIGHT_BAR_ASPECT * np.maximum(width, 1)
    return ~((y == BLANK_INDEX) & upright)


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    cm = np.zeros((N_CLASSES, N_CLASSES), np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def _page_val_accuracy(torch, model, X: np.ndarray | None, y: np.ndarray | None, planes: int) -> float | None:
    if X is None or not len(X):
        return None
    return float((_predict(torch, model, X, planes).argmax(1) == y).mean())


def train(
    *,
    data: Path | None,
    out: Path,
    seed: int = 0,
    epochs: int = 5,
    samples: int = 40000,
    val_samples: int | None = None,
    workers: int = 2,
    cache_dir: Path | None = DEFAULT_CACHE,
    use_fonts: bool = True,
    pages: int = 0,
    label_smoothing: float = 0.0,
    planes: int = 2,
    init: Path | None = None,
    init_member: int = 0,
    lr: float | None = None,
    log=print,
) -> TrainResult:
    """Train one net. `init`: start from a trained model's weights (member `init_member` of an ensemble) rather
    than at random, with its batch norms frozen (they are folded into the stored convolutions); `lr`: the one-cycle
    schedule's peak learning rate (3e-3 from scratch, 5e-4 from `init` unless given)."""
    if planes not in (1, 2):
        raise BadInput(f"A digit model takes 1 or 2 input planes, not {planes}.", code="invalid_request")
    torch = _torch()
    torch.set_num_threads(2)
    torch.manual_seed(seed)
    t0 = time.time()
    data_dir = Path(data) if data is not None else default_data_dir()
    bank = GlyphBank.load(data_dir, "train", use_fonts=use_fonts)
    val_bank = GlyphBank.load(data_dir, "val", use_fonts=use_fonts)
    n_val = val_samples if val_samples is not None else max(2000, samples // 10)
    log(f"data: train {bank.sources}; val {val_bank.sources}")
    def kept(X: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
        # A short vertical box-line fragment in the "no digit" class comes out of normalisation as a thick upright
        # bar. Given the glyph alone, the net can only learn from it that such a bar (a thick "1") is no digit: it is
        # left out. Given its placement too, it is what teaches the net that a bar hugging the box's side is no "1".
        if planes == 2:
            return np.ones(len(y), bool)
        keep = drop_upright_bars_labelled_blank(X, y)
        log(f"{what}: {int((~keep).sum())} upright bars labelled 'no digit' left out")
        return keep

    X, y = build_cells(bank, samples, seed, workers=workers, cache_dir=cache_dir)
    keep = kept(X, y, "synthetic cells")
    X, y = X[keep], y[keep]
    # Validation chunks use a disjoint chunk range so they never share a generator stream with training.
    Xv, yv = build_cells(val_bank, n_val, seed, chunk0=1_000_000, workers=workers, cache_dir=cache_dir)
    Xp = yp = Xpv = ypv = None
    if pages:
        from ocr.read.page_cells import DEFAULT_CACHE as PAGE_CACHE, build_page_cells

        P, py, page = build_page_cells(
            pages, seed, data_dir, workers=workers, cache_dir=None if cache_dir is None else PAGE_CACHE, log=log
        )
        keep = kept(P, py, "page cells")
        P, py, page = P[keep], py[keep], page[keep]
        held = page % 10 == 9  # every tenth page is held out, whole pages (one writer each) at a time
        Xp, yp, Xpv, ypv = P[~held], py[~held], P[held], py[held]
        X, y = np.concatenate([X, Xp]), np.concatenate([y, yp])
    t_data = time.time() - t0
    log(
        f"cells: {len(X)} train ({0 if Xp is None else len(Xp)} from pages), {len(Xv)} val"
        f"{'' if Xpv is None else f' + {len(Xpv)} page val'} in {t_data:.0f}s; "
        f"class counts {np.bincount(y, minlength=N_CLASSES).tolist()}"
    )

    model = make_model(torch, planes=planes)
    init_card = None
    if init is not None:
        import hashlib

        load_member_into(torch, model, onnx_member_weights(Path(init), init_member))
        init_card = {"model": str(init), "sha256": hashlib.sha256(Path(init).read_bytes()).hexdigest(),
                     "member": init_member}
    max_lr = lr if lr is not None else (5e-4 if init is not None else 3e-3)
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batch = 128
    steps = epochs * ((len(X) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=max(1, steps), pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    val_acc = float("nan")
    page_acc: float | None = None  # measured after every epoch; the last one goes in the card
    for ep in range(epochs):
        model.train()
        if init is not None:  # the folded batch norms stay the identity plus a bias (`load_member_into`)
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        perm = torch.randperm(len(X), generator=gen)
        tot, correct, seen = 0.0, 0, 0
        te = time.time()
        for i in range(0, len(X), batch):
            idx = perm[i : i + batch]
            xb = Xt[idx, :planes].float().div_(255.0)
            xb = _augment(torch, xb, gen)
            yb = yt[idx]
            logits = model(xb)
            loss = loss_fn(logits, yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
            seen += len(idx)
        pv = _predict(torch, model, Xv, planes).argmax(1)
        val_acc = float((pv == yv).mean()) if len(yv) else float("nan")
        page_acc = _page_val_accuracy(torch, model, Xpv, ypv, planes)
        log(
            f"epoch {ep + 1}/{epochs}: loss {tot / max(seen, 1):.4f}  train acc {correct / max(seen, 1):.4f}  "
            f"val acc {val_acc:.4f}{'' if page_acc is None else f'  page val acc {page_acc:.4f}'}  "
            f"({time.time() - te:.0f}s)"
        )
    pv = _predict(torch, model, Xv, planes).argmax(1)
    cm = _confusion(yv, pv)
    diff = export_onnx(torch, model, Path(out), (Xv[:64] if len(Xv) else X[:64])[:, :planes])
    import onnx

    card = {
        "classes": list(CLASSES),
        "input": {
            "shape": [planes, CELL_PX, CELL_PX],
            "dtype": "float32",
            "meaning": f"ocr.cells.prepare_cell(...).channels({planes}): 1 = ink; the glyph centred by mass, longest "
            "side 24 px" + ("; then the kept ink at box scale (where the mark sits in the box)" if planes == 2 else ""),
        },
        "output": "softmax probabilities over classes",
        "architecture": f"{planes}-plane input, 3 x (conv3x3-BN-ReLU-maxpool) 32/64/128 + dropout + FC 96 + FC 12",
        "parameters": int(n_params),
        "onnx_opset": ONNX_OPSET,
        "training": {
            "command": f"c1ocr train --seed {seed} --epochs {epochs} --samples {samples} --pages {pages}"
            f" --label-smoothing {label_smoothing:g} --planes {planes}"
            + ("" if init is None else f" --init {init} --init-member {init_member}")
            + ("" if lr is None else f" --lr {lr:g}"),
            "seed": seed,
            "init": init_card,
            "max_lr": max_lr,
            "epochs": epochs,
            "samples": int(len(X)),
            "page_cells": 0 if Xp is None else int(len(Xp)),
            "label_smoothing": label_smoothing,
            "data": bank.sources
            + ["procedural: seven-segment, stroke 1/4/7, Hershey, X, dash/dot/smudge"]
            + ([f"cells cut from {pages} synthetic page photos (training writers, ocr/read/page_cells.py)"] if pages else []),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "opencv": cv2.__version__,
            "seconds": round(time.time() - t0, 1),
        },
        "validation": {
            "samples": int(len(Xv)),
            "data": val_bank.sources,
            "accuracy": round(val_acc, 5),
            "note": "held-out synthetic cells: MNIST 45000-49999 / USPS 5400-5999 writers, fresh renders; fonts shared",
            "page_cells": None if Xpv is None else int(len(Xpv)),
            "page_cells_accuracy": None if page_acc is None else round(page_acc, 5),
            "page_cells_note": "cells of every tenth training page (whole pages held out; training writer slices)",
        },
        "onnx_vs_torch_max_abs_diff": diff,
    }
    model_card_path(Path(out)).write_text(json.dumps(card, indent=2) + "\n")
    return TrainResult(Path(out), val_acc, int(len(Xv)), cm, diff, card)


# --------------------------------------------------------------------------------------------------------------------
# Ensembles: several trained nets in one ONNX file


def net_count(card: dict) -> int:
    """How many trained nets a model card describes: an ensemble's card keeps its members' cards."""
    members = (card.get("training") or {}).get("members")
    if isinstance(members, list) and members:
        return sum(net_count(m) if isinstance(m, dict) else 1 for m in members)
    return 1


def merge_models(members: Sequence[Path], out: Path, check_inputs: np.ndarray | None = None) -> dict:
    """One ONNX graph that runs every member net on the same input and averages their probabilities (a glyph-only
    member among two-plane ones reads the first plane, the glyph). Every net weighs the same: a member that is itself
    an ensemble of k nets weighs k times a single net, so merging an ensemble with new nets averages all of them.

    Nets trained from different seeds and data draws err on different cells, so their mean is both more accurate and
    better ranked by confidence than any one of them (Sirekap ran 15). The reader is unchanged: it still loads one
    file through cv2.dnn. Returns the merged model card (also written beside `out`), which keeps each member's card.
    """
    _torch()  # onnx is part of the same 'train' extra
    import onnx
    from onnx import compose, helper

    if len(members) < 2:
        raise BadInput("An ensemble needs at least two member models.", code="ensemble_too_small")
    cards = []
    for path in map(Path, members):
        if not path.is_file():
            raise BadInput(f"Member model {path} not found.", code="model_missing")
        cards.append(read_model_card(path) or {"path": str(path)})
    member_planes = [input_planes(c) for c in cards]
    if not set(member_planes) <= {1, 2}:
        raise BadInput(f"Member models take {sorted(set(member_planes))} input planes; a member takes 1 or 2.",
                       code="ensemble_mismatch")
    # The ensemble takes the most planes any member takes; a glyph-only member reads the first plane of it (the
    # planes are ordered so that this is the glyph, see PreparedCell.channels).
    n_planes = max(member_planes)
    outputs, nodes, inits = [], [], []
    for k, path in enumerate(members):
        m = compose.add_prefix(onnx.load(str(path)), prefix=f"m{k}_")
        g = m.graph
        (inp,) = g.input
        (outp,) = g.output
        source = "glyph"
        if member_planes[k] < n_planes:
            source = f"m{k}_planes"
            for name, value in (("starts", 0), ("ends", member_planes[k]), ("axes", 1)):
                inits.append(helper.make_tensor(f"m{k}_slice_{name}", onnx.TensorProto.INT64, [1], [value]))
            nodes.append(helper.make_node(
                "Slice", ["glyph", f"m{k}_slice_starts", f"m{k}_slice_ends", f"m{k}_slice_axes"], [source]
            ))
        for node in g.node:  # every member reads the shared input
            node.input[:] = [source if name == inp.name else name for name in node.input]
        nodes += list(g.node)
        inits += list(g.initializer)
        outputs.append(outp.name)
    counts = [net_count(c) for c in cards]
    weights = [n / sum(counts) for n in counts]
    weighted = []
    for k, (name, wk) in enumerate(zip(outputs, weights)):
        inits.append(helper.make_tensor(f"m{k}_weight", onnx.TensorProto.FLOAT, [], [wk]))
        nodes.append(helper.make_node("Mul", [name, f"m{k}_weight"], [f"m{k}_weighted"]))
        weighted.append(f"m{k}_weighted")
    nodes.append(helper.make_node("Sum", weighted, ["probs"]))
    graph = helper.make_graph(
        nodes,
        "digits_ensemble",
        [helper.make_tensor_value_info("glyph", onnx.TensorProto.FLOAT, ["n", n_planes, CELL_PX, CELL_PX])],
        [helper.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, ["n", N_CLASSES])],
        initializer=inits,
    )
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    merged.ir_version = onnx.load(str(members[0])).ir_version
    onnx.checker.check_model(merged)

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".onnx.tmp")
    onnx.save(merged, str(tmp))
    # Check: the merged file through cv2.dnn equals the weighted mean of the members through cv2.dnn.
    xs = check_inputs if check_inputs is not None else np.random.default_rng(0).random((16, n_planes, CELL_PX, CELL_PX))
    xs = np.asarray(xs, np.float32).reshape(-1, n_planes, CELL_PX, CELL_PX)
    want = sum(wk * _cv2_forward(Path(p), xs[:, :n]) for p, n, wk in zip(members, member_planes, weights))
    got = _cv2_forward(tmp, xs)
    diff = float(np.abs(got - want).max())
    if diff > 1e-5:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"merged model differs from the mean of its members by {diff:.1e}")
    os.replace(tmp, out)
    card = {
        "classes": list(CLASSES),
        "input": cards[member_planes.index(n_planes)].get("input"),
        "output": "mean of the member nets' softmax probabilities, each net weighing the same",
        "member_weights": [round(wk, 6) for wk in weights],
        "architecture": f"ensemble of {sum(counts)} nets: " + "; ".join(str(c.get("architecture")) for c in cards),
        "parameters": int(sum(int(c.get("parameters", 0)) for c in cards)),
        "onnx_opset": ONNX_OPSET,
        "training": {
            "command": "c1ocr merge-models " + " ".join(str(p) for p in members) + f" --out {out}",
            "members": cards,
        },
        "merged_vs_members_max_abs_diff": diff,
    }
    model_card_path(out).write_text(json.dumps(card, indent=2) + "\n")
    return card


def _cv2_forward(path: Path, xs: np.ndarray) -> np.ndarray:
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(np.ascontiguousarray(xs))
    return np.asarray(net.forward(), np.float64)


def merge_command(
    members: Annotated[list[Path], typer.Argument(help="member ONNX models (each with its .json card beside it)")],
    out: Annotated[Path, typer.Option("--out", help="where to write the ensemble ONNX")] = DEFAULT_MODEL,
) -> None:
    """Merge trained digit nets into one ONNX model that averages their probabilities (see ocr/read/TRAINING.md)."""
    from rich.console import Console

    card = merge_models(members, out)
    Console().print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB): {net_count(card)} nets, member weights "
                    f"{card['member_weights']}, max difference to their weighted mean "
                    f"{card['merged_vs_members_max_abs_diff']:.1e}")


def _print_confusion(console, cm: np.ndarray) -> None:
    from rich.table import Table

    t = Table(title="held-out confusion (rows = truth, columns = predicted)")
    t.add_column("")
    for c in CLASSES:
        t.add_column(c, justify="right")
    t.add_column("acc", justify="right")
    for i, c in enumerate(CLASSES):
        row = [str(v) if v else "." for v in cm[i]]
        row[i] = f"[bold]{cm[i, i]}[/]"
        acc = cm[i, i] / max(cm[i].sum(), 1)
        t.add_row(c, *row, f"{acc:.3f}")
    console.print(t)


def train_command(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="shared data folder (default ../shared/data or $C1OCR_SHARED_DATA)"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="where to write the ONNX model (a .json card goes beside it)")] = (
        DEFAULT_MODEL
    ),
    seed: Annotated[int, typer.Option("--seed", help="seed of data generation, order and initialisation")] = 0,
    epochs: Annotated[int, typer.Option("--epochs", min=1)] = 5,
    samples: Annotated[int, typer.Option("--samples", min=100, help="synthetic training cells")] = 40000,
    pages: Annotated[
        int, typer.Option("--pages", min=0, help="synthetic page photos to cut training cells from (page_cells.py)")
    ] = 0,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", min=0.0, max=0.5)] = 0.0,
    planes: Annotated[
        int,
        typer.Option("--planes", min=1, max=2, help="input planes: 1 = the glyph; 2 = the glyph and where it sits in the box"),
    ] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="tiny run (600 cells, 1 epoch) to check the pipeline")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="processes generating cells")] = 2,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not read or write runs/cells-cache")] = False,
    init: Annotated[
        Path | None,
        typer.Option("--init", help="start from this trained ONNX model's weights (fine-tuning) instead of at random"),
    ] = None,
    init_member: Annotated[
        int, typer.Option("--init-member", min=0, help="which net of an ensemble --init starts from (0 = first)")
    ] = 0,
    lr: Annotated[
        float | None,
        typer.Option("--lr", min=1e-6, max=1.0, help="peak learning rate (default 3e-3; 5e-4 with --init)"),
    ] = None,
) -> None:
    """Train the digit CNN on synthetic cells and export it to ONNX (see ocr/read/TRAINING.md)."""
    from rich.console import Console

    console = Console()
    if quick:
        samples, epochs, pages = 600, 1, min(pages, 4)
    res = train(
        data=data,
        out=out,
        seed=seed,
        epochs=epochs,
        samples=samples,
        val_samples=200 if quick else None,
        workers=workers,
        cache_dir=None if no_cache or quick else DEFAULT_CACHE,
        pages=pages,
        label_smoothing=label_smoothing,
        planes=planes,
        init=init,
        init_member=init_member,
        lr=lr,
        log=console.print,
    )
    _print_confusion(console, res.confusion)
    console.print(
        f"wrote {res.out} ({res.out.stat().st_size / 1024:.0f} KiB), held-out accuracy {res.val_accuracy:.4f} "
        f"on {res.val_n} cells; cv2.dnn vs torch max diff {res.onnx_max_diff:.1e}"
    )
    data_dir = Path(data) if data is not None else default_data_dir()
    if (data_dir / "election_forms" / "labels" / "digit_crops.csv").is_file():
        rep = evaluate_real_crops(data_dir, res.out)
        console.print(f"sanity (not used for training): real labelled crops {rep.correct}/{rep.n} = {rep.accuracy:.3f}")
