"""Confidence calibration: temperature scaling of the box probabilities, fitted on held-out readings.

The readers' softmax is over-confident (a misread "351" at 99.9%). The decoder (ocr/decode.py) turns every box
probability vector p into p ** (1 / T), renormalised, before it builds field candidates; field confidences are
products and sums of these, so one temperature calibrates the whole chain. `c1ocr calibrate` fits T by minimising
the negative log-likelihood of the true box class on a train split, reports on a held-out split (split by form, so
the boxes of one form never sit on both sides), and writes the file the reader loads
(`ocr/read/models/calibration.json`, or `settings.decode.calibration_file`).

Input: JSON lines, one `FieldRecord` per field read (the benchmark writes them; `records_from_reading` builds them
from a PageReading and the truth):

    {"form_id": "synth-00017",                 # one form = one photo; the split is by form
     "template": "ppwp-2024-plano-p1", "field": "I.B4.LP",
     "boxes": [{"topk": [["8", 0.93], ["X", 0.05]], "empty": false}, ...],   # RAW reader top-k (before calibration)
     "true_text": "X86",                       # what is written, one char per box ("-" dash, "_" empty); optional
     "true_value": 86,                         # null when the field is not a number (X after a digit)
     "value": 86, "confidence": 0.97,          # what the decoder said (for the sweep)
     "status": "needs_review", "reasons": ["low_confidence"]}

Box-level fitting needs `true_text`; records without it still count in the field-level report and the sweep.
`sweep_curve` (and `bench/sweep.py`) gives accepted-field error against review rate over the accept threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Iterable, Sequence

import numpy as np
import typer
from pydantic import BaseModel, ConfigDict, Field

SHIPPED_PATH = Path(__file__).parent / "read" / "models" / "calibration.json"

# Reasons that do not stop acceptance at a lower threshold: the sweep re-decides only on confidence.
THRESHOLD_REASONS = frozenset({"low_confidence", "audit_sample"})


class Calibration(BaseModel):
    """What the reader loads: box probabilities p become p ** (1 / temperature), renormalised."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    method: str = "temperature"
    temperature: float = Field(default=1.0, gt=0)
    fitted_on: str = "identity (not fitted)"
    report: dict = Field(default_factory=dict)


class BoxRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    topk: list[tuple[str, float]]
    empty: bool = False


class FieldRecord(BaseModel):
    """One field read, with the truth: a line of the calibration / sweep JSONL (see the module docstring)."""

    model_config = ConfigDict(extra="ignore")

    form_id: str
    template: str = ""
    field: str
    boxes: list[BoxRecord]
    true_text: str | None = None
    true_value: int | None
    value: int | None = None
    confidence: float = 0.0
    status: str = ""
    reasons: list[str] = Field(default_factory=list)


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=-1, keepdims=True)
    q = np.exp(logp)
    return q / q.sum(axis=-1, keepdims=True)


@lru_cache(maxsize=8)
def load_calibration(path: str | None = None) -> Calibration:
    p = Path(path) if path else SHIPPED_PATH
    if not p.exists():
        return Calibration()
    return Calibration.model_validate_json(p.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------------
# Records


def read_records(path: Path) -> list[FieldRecord]:
    out = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(FieldRecord.model_validate_json(line))
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not a field record: {e}") from None
    return out


def records_from_reading(
    reading, truth: dict[str, tuple[str, int | None]], form_id: str, *, temperature: float = 1.0
) -> list[dict]:
    """FieldRecords (as dicts) from a PageReading and, per field id, the written text and the value it means (a real
    form's label may give the value of a field whose boxes are not all legible: text "???").

    The reading's box top-k are calibrated with `temperature`; it is undone here so the records hold raw top-k.
    """
    from ocr.decode import probs_from_topk

    out = []
    for fid, f in reading.fields.items():
        if fid not in truth:
            continue
        text, true_value = truth[fid]
        boxes = []
        for b in f.boxes:
            topk = [(c.char, c.p) for c in b.topk]
            if topk and temperature != 1.0:
                raw = apply_temperature(probs_from_topk(topk), 1.0 / temperature)
                topk = [(ch, float(raw[_idx(ch)])) for ch, _ in topk]
            boxes.append({"topk": topk, "empty": b.char == "_"})
        out.append(
            {
                "form_id": form_id, "template": reading.template or "", "field": fid, "boxes": boxes,
                "true_text": text, "true_value": true_value,
                "value": f.value, "confidence": f.confidence, "status": f.status, "reasons": list(f.reasons),
            }
        )  # fmt: skip
    return out


def _idx(ch: str) -> int:
    from ocr.decode import class_index

    return class_index(ch)


def split_by_form(records: Sequence[FieldRecord], holdout: float) -> tuple[list[FieldRecord], list[FieldRecord]]:
    """Deterministic split by form id hash: every field of one form lands on the same side."""
    train, test = [], []
    for r in records:
        h = int.from_bytes(hashlib.sha256(r.form_id.encode("utf-8")).digest()[:8], "big") / 2**64
        (test if h < holdout else train).append(r)
    return train, test


# ---------------------------------------------------------------------------------------------------------------
# Fitting and measuring


def _box_arrays(records: Iterable[FieldRecord]) -> tuple[np.ndarray, np.ndarray]:
    from ocr.decode import class_index, probs_from_topk

    probs, truth = [], []
    for r in records:
        if not r.true_text or len(r.true_text) != len(r.boxes):
            continue
        for b, ch in zip(r.boxes, r.true_text):
            if not b.topk:
                continue
            probs.append(probs_from_topk(b.topk))
            truth.append(class_index(ch))
    if not probs:
        return np.zeros((0, 12)), np.zeros(0, dtype=int)
    return np.stack(probs), np.asarray(truth, dtype=int)


def box_nll(probs: np.ndarray, truth: np.ndarray, temperature: float) -> float:
    if len(truth) == 0:
        return float("nan")
    q = apply_temperature(probs, temperature)
    return float(-np.mean(np.log(np.clip(q[np.arange(len(truth)), truth], 1e-12, 1.0))))


def fit_temperature(probs: np.ndarray, truth: np.ndarray, lo: float = 0.2, hi: float = 20.0) -> float:
    """The temperature minimising box NLL (golden-section search on log T; NLL is unimodal in T here)."""
    if len(truth) == 0:
        return 1.0
    a, b = math.log(lo), math.log(hi)
    g = (math.sqrt(5) - 1) / 2
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = box_nll(probs, truth, math.exp(c)), box_nll(probs, truth, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = box_nll(probs, truth, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = box_nll(probs, truth, math.exp(d))
    return round(math.exp((a + b) / 2), 4)


def field_scores(records: Iterable[FieldRecord], temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """Per field: the confidence of its own best value under `temperature`, and whether that value is right."""
    from ocr.decode import field_distribution, probs_from_topk

    conf, right = [], []
    for r in records:
        if any(not b.topk for b in r.boxes):
            continue
        probs = [apply_temperature(probs_from_topk(b.topk), temperature) for b in r.boxes]
        v, p = field_distribution(probs, floor=0.02, max_classes=4).top
        conf.append(p)
        right.append(v == r.true_value and v is not None)
    return np.asarray(conf, dtype=float), np.asarray(right, dtype=bool)


def expected_calibration_error(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    if len(conf) == 0:
        return float("nan")
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for k in range(bins):
        m = idx == k
        if m.any():
            ece += m.mean() * abs(conf[m].mean() - right[m].mean())
    return float(ece)


class SweepRow(BaseModel):
    threshold: float
    accepted: Annotated[float, Field(description="share of fields accepted")]
    review: float
    unreadable: float
    accepted_error: float  # wrong accepted fields / accepted fields
    wrong_accepted: int
    fields: int


def sweep_curve(
    records: Sequence[FieldRecord], thresholds: Sequence[float], *, corrected_threshold: float = 0.995
) -> list[SweepRow]:
    """Accepted-field error against review rate, re-deciding each field on its recorded confidence.

    A field is accepted at threshold t when it has a value, its confidence >= t, and no reason other than low
    confidence (or the audit sample) held it back; rule failures and OMR disagreements stay blocking. A correction
    by the rules (`corrected_by_rules`) needs the stricter `corrected_threshold` too
    (`routing.accept_corrected_confidence`).
    """
    rows = []
    n = len(records)
    for t in thresholds:
        acc = rev = unr = wrong = 0
        for r in records:
            if r.value is None:
                unr += 1
                continue
            blocking = [x for x in r.reasons if x not in THRESHOLD_REASONS and not x.startswith("rule_flagged:")]
            if blocking == ["corrected_by_rules"] and r.confidence >= corrected_threshold:
                blocking = []
            if r.confidence >= t and not blocking:
                acc += 1
                wrong += r.value != r.true_value
            else:
                rev += 1
        rows.append(
            SweepRow(
                threshold=t, accepted=acc / n if n else 0.0, review=rev / n if n else 0.0,
                unreadable=unr / n if n else 0.0, accepted_error=wrong / acc if acc else 0.0,
                wrong_accepted=wrong, fields=n,
            )
        )  # fmt: skip
    return rows


DEFAULT_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999, 0.9999)


def calibrate(records: Sequence[FieldRecord], *, holdout: float = 0.3, threshold: float = 0.98) -> Calibration:
    """Fit the temperature on the train split and report both temperatures on the held-out split."""
    train, test = split_by_form(records, holdout)
    tp, tt = _box_arrays(train)
    temperature = fit_temperature(tp, tt)
    hp, ht = _box_arrays(test)
    report: dict = {"train_fields": len(train), "test_fields": len(test), "train_boxes": int(len(tt)),
                    "test_boxes": int(len(ht)), "threshold": threshold}  # fmt: skip
    for name, temp in (("before", 1.0), ("after", temperature)):
        conf, right = field_scores(test, temp)
        accepted = conf >= threshold
        report[name] = {
            "temperature": temp,
            "box_nll": round(box_nll(hp, ht, temp), 5),
            "field_ece": round(expected_calibration_error(conf, right), 5),
            "field_accuracy": round(float(right.mean()), 5) if len(right) else None,
            "accepted_share": round(float(accepted.mean()), 5) if len(conf) else None,
            "accepted_error": round(float((~right[accepted]).mean()), 6) if accepted.any() else None,
        }
    return Calibration(
        temperature=temperature,
        fitted_on=f"{len(train)} fields ({len(tt)} boxes), held out {len(test)} fields by form",
        report=report,
    )


def calibrate_command(
    input: Path = typer.Option(..., "--input", "-i", help="JSONL of field records (see `ocr/calibration.py`)."),
    output: Path = typer.Option(SHIPPED_PATH, "--output", "-o", help="Where to write the calibration JSON."),
    holdout: float = typer.Option(0.3, "--holdout", help="Share of forms held out for the report."),
    threshold: float = typer.Option(0.98, "--threshold", help="Accept threshold used in the report."),
) -> None:
    """Fit the box-probability temperature on benchmark readings and write the file the reader loads."""
    records = read_records(input)
    if not records:
        raise SystemExit(f"{input}: no field records")
    cal = calibrate(records, holdout=holdout, threshold=threshold)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(cal.model_dump_json(indent=1) + "\n", encoding="utf-8")
    load_calibration.cache_clear()
    r = cal.report
    print(f"temperature {cal.temperature:g}  ({cal.fitted_on})")
    print(f"held-out          {'before':>10} {'after':>10}")
    for key in ("box_nll", "field_ece", "field_accuracy", "accepted_share", "accepted_error"):
        print(f"{key:<17} {str(r['before'][key]):>10} {str(r['after'][key]):>10}")
    print(f"wrote {output}")


def _json_default(o):  # pragma: no cover - used by callers writing JSONL
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


def dump_records(records: Iterable[dict], path: Path) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, default=_json_default) + "\n")
