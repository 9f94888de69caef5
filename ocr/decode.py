"""From per-box probabilities to checked numbers: field decode, constrained joint decoding, statuses and reasons.

Per box the readers give a probability over CLASSES (0-9, "X", "_" = blank or dash). A box's character is its class,
with "_" rendered "-" when the box has ink (a dash) and "_" when it is empty, and "?" when no engine could read it.
A field's number follows kawalc1's rule (R15): leading X / dash / blank / 0 mean zero; an X, dash or blank *after*
a digit means the field is not a number (value None, reason `filler_misplaced`); all filler is 0.

Decoding a page (or the pages of one TPS, ocr/tps.py):
1. Box probabilities are calibrated (temperature, ocr/calibration.py).
2. Per field, candidate values: every combination of the plausible classes of its boxes (p >= `box_floor`, at most
   `max_classes_per_box`), scored by the product of box probabilities; combinations giving the same number add up.
   A confident OMR reading (PPWP page 2 bubbles) is fused in as independent evidence.
3. A field whose best value has probability >= `routing.accept_confidence` is *fixed*: confident digits are never
   changed to satisfy a rule. The other fields are decoded jointly, per connected group of hard rules, under one
   model: an assignment weighs its probability times a penalty per hard rule it breaks (a KPPS may well have written
   inconsistent numbers): `form_error_weight`, and for a broken sum that weight times the probability of what the
   sum is off by under a KPPS mistake (`FormErrorModel`). A field's confidence is a lower bound on the posterior of
   its value:
   - Exact sums (the usual case): each field's exact distribution over every number (`value_distribution`) is split
     into its likeliest values (and the values its sums ask for) and an unlisted rest; variable elimination sums
     the weight over all listed assignments per field and value (a lower bound on the value's support), and again
     with the unlisted rest bounded from above (see `_exact_group`). The chosen value is each field's best-supported
     one.
   - Enumeration, when the exact sums would cost more than `exact_cost_limit`: depth-first with pruning and a node
     budget (a group over budget is enumerated again over its fields' 4, then 2 most likely values; only then
     `search_limit`); the chosen values are the best-weighted assignment, and the assignments not enumerated in
     which the field has another value count in full, as if they satisfied every rule.
   Either way the posterior can only be understated (tests/test_decode.py checks it against brute force).
4. Every rule is evaluated on the chosen values. A hard rule broken by fixed (confident) readings only is a form
   error: `form_inconsistent`, the written numbers kept, unless one field's plausible misread explains it better
   than the KPPS writing one wrong number there (`_misread_suspects`): that field gets `misread_suspected`.
   - A suspect read at `decode.sure_reading_confidence` (0.995) or more is not changed: the rule's message says what
     it may read, and every field of the rule goes to review.
   - A suspect read under that bar, whose value makes every hard rule on every field of its broken sums hold, is
     taken as misread (`_misreads_taken`): it gets the sums' value with the posterior of that explanation as its
     confidence and always goes to review (what was read is its first alternative; the rules' messages say "read
     205, taken as 215"). The other fields of those sums are released, each with its confidence capped by the odds
     that it, not the suspect, is the misread one, so a field the reader is barely surer of stays in review. This
     is a read error told from a form error on the evidence, never a form "fixed" unseen: the number the rules
     chose waits for a person.
   A value that differs from the field's own best reading is a correction: `corrected_by_rules`, sent to review
   unless its posterior confidence reaches the stricter `routing.accept_corrected_confidence` (the issue's "unless
   the corrected reading is itself confident") and it changes no box read at `routing.accept_confidence` or more
   (rules settle ambiguous boxes, never overrule sure ones).
5. Status per field: `unreadable` (no number: `filler_misplaced`, `engine_error`, `not_read`), `accepted` (confidence
   >= threshold and no blocking reason), else `needs_review` with machine-readable reasons (`low_confidence`,
   `rule_failed:<name>`, `form_inconsistent`, `misread_suspected`, `corrected_by_rules`, `omr_disagrees`,
   `row_totals_disagree`, `search_limit`, `audit_sample`). Soft rules only flag (`rule_flagged:<name>`), they do not
   block acceptance. A deterministic sample of fully accepted pages (by `form_id` hash,
   `routing.audit_sample_rate`) goes to review.

Tally-row totals (R14, "Jumlah tiap baris"): when the caller passes evidence under the key `FieldSpec.row_total_id`
(`"<field id>#row<i>"`, one list of boxes per row, every row of the field), their sum is cross-checked against the
field: `R14_row_totals:<field>` carries the row values; it is pending unless every row is confidently read (or when
no row total was written at all), and a disagreement adds `row_totals_disagree`. The rows never change the field's
value and are not fields of the result. The pipeline reads them where each row has a box per digit (ocr/cells.py).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import numpy as np

from ocr.calibration import Calibration, apply_temperature, load_calibration
from ocr.config import ElectionProfile, Settings
from ocr.read.base import BLANK_INDEX, CLASSES, N_CLASSES
from ocr.results import BoxReading, Candidate, FieldReading, OmrReading, RuleResult
from ocr.rules import DateRule, LinearRule, RangeRule, Rule, page_rules, structural_result
from ocr.templates.schema import FieldSpec, Template

FILLERS = frozenset({"X", "_"})
NOT_A_NUMBER = None  # candidate "value" of a box string with a filler after a digit

# Reasons that do not stop a field from being accepted.
NON_BLOCKING_PREFIXES = ("rule_flagged:",)


@dataclass
class BoxEvidence:
    probs: np.ndarray | None  # (12,) combined probability over CLASSES; None if every engine failed
    engines: dict[str, list[tuple[str, float]]]  # per-engine top-k, for the result
    ink: float  # PreparedCell.ink_fraction
    empty: bool  # PreparedCell.empty (no ink at all)
    touches_border: bool
    error: str | None = None


@dataclass
class PageDecode:
    fields: dict[str, FieldReading]
    rules: list[RuleResult]
    status: str  # "accepted" | "needs_review" | "unreadable"
    reasons: list[str]


# ---------------------------------------------------------------------------------------------------------------
# Boxes and single fields


def probs_from_topk(topk: Sequence[tuple[str, float]]) -> np.ndarray:
    """A full probability vector from a recorded top-k list; the unlisted mass is spread over the other classes.

    Characters may be rendered ("-" for a dash) or class labels; both map to CLASSES.
    """
    p = np.zeros(N_CLASSES, dtype=np.float64)
    for ch, prob in topk:
        p[class_index(ch)] += max(0.0, float(prob))
    listed = p > 0
    rest = max(0.0, 1.0 - p.sum())
    if (~listed).any():
        p[~listed] = max(rest, 1e-9) / (~listed).sum()
    return p / p.sum()


def evidence_from_record(fields: dict[str, str | list[dict]], *, sure_p: float = 0.999) -> dict[str, list[BoxEvidence]]:
    """Box evidence from a recorded document (the probability fixtures, the calibration JSONL).

    Per field either a list of boxes `{"topk": [[char, p], ...], "empty": bool, "ink": float}` or, for boxes read
    with no doubt, a string of characters (`"X62"`; `"_"` an empty box, `"-"` a dash), each given `sure_p`.
    """
    out: dict[str, list[BoxEvidence]] = {}
    for fid, spec in fields.items():
        if isinstance(spec, str):
            out[fid] = [
                BoxEvidence(probs_from_topk([(c, sure_p)]), {}, 0.0 if c == "_" else 0.1, c == "_", False) for c in spec
            ]
            continue
        boxes = []
        for b in spec:
            topk = [(str(c), float(p)) for c, p in b.get("topk") or []]
            empty = bool(b.get("empty", False))
            boxes.append(
                BoxEvidence(
                    probs=probs_from_topk(topk) if topk else None,
                    engines={k: [(str(c), float(p)) for c, p in v] for k, v in (b.get("engines") or {}).items()},
                    ink=float(b.get("ink", 0.0 if empty else 0.1)),
                    empty=empty,
                    touches_border=bool(b.get("touches_border", False)),
                    error=b.get("error") if topk else (b.get("error") or "no probabilities recorded"),
                )
            )
        out[fid] = boxes
    return out


def class_index(ch: str) -> int:
    if ch in ("-", "_"):
        return BLANK_INDEX
    return CLASSES.index(ch)


def render(cls: str, empty: bool) -> str:
    """A box character for the output: the "_" class is a dash when the box has ink, "_" when it is empty."""
    if cls == "_":
        return "_" if empty else "-"
    return cls


def value_of(classes: Sequence[str]) -> int | None:
    """The number a row of box classes means (R15): leading fillers and zeros are 0; a filler after a digit: None."""
    started = False
    v = 0
    for c in classes:
        if c in FILLERS:
            if started:
                return NOT_A_NUMBER
        else:
            started = True
            v = v * 10 + int(c)
    return v


def value_probability(box_probs: Sequence[np.ndarray], value: int) -> float:
    """Exact probability that the boxes spell `value` (any leading fillers-then-zeros), from the full vectors."""
    n = len(box_probs)
    digits = str(value)
    if value == 0:
        digits = ""  # zero is all leading fillers / zeros
    k = len(digits)
    if k > n:
        return 0.0
    p_tail = 1.0
    for i, d in enumerate(digits):
        p_tail *= float(box_probs[n - k + i][int(d)])
    m = n - k  # leading positions: fillers* then 0* (a filler after a 0 is not allowed)
    if value == 0 and m == 0:
        return p_tail
    lead = 0.0
    for j in range(m + 1):  # first j boxes filler, the rest zeros
        q = 1.0
        for i in range(j):
            q *= float(box_probs[i][10] + box_probs[i][BLANK_INDEX])
        for i in range(j, m):
            q *= float(box_probs[i][0])
        lead += q
    return lead * p_tail


@dataclass
class FieldDist:
    """Candidate values of one field with their probabilities (not normalised: unenumerated mass is left out)."""

    probs: dict[int | None, float]
    classes: dict[int | None, tuple[str, ...]]  # the most probable box classes spelling each value

    def ranked(self) -> list[tuple[int | None, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])

    @property
    def top(self) -> tuple[int | None, float]:
        return self.ranked()[0]


def field_distribution(box_probs: Sequence[np.ndarray], *, floor: float, max_classes: int) -> FieldDist:
    options: list[list[tuple[str, float]]] = []
    for p in box_probs:
        order = np.argsort(-p)[:max_classes]
        keep = [(CLASSES[i], float(p[i])) for j, i in enumerate(order) if j == 0 or p[i] >= floor]
        options.append(keep)
    probs: dict[int | None, float] = {}
    best: dict[int | None, tuple[float, tuple[str, ...]]] = {}
    for combo in itertools.product(*options):
        prob = math.prod(pr for _, pr in combo)
        classes = tuple(c for c, _ in combo)
        v = value_of(classes)
        probs[v] = probs.get(v, 0.0) + prob
        if v not in best or prob > best[v][0]:
            best[v] = (prob, classes)
    return FieldDist(probs, {v: b[1] for v, b in best.items()})


def _likeliest_filler(p: np.ndarray) -> tuple[str, float]:
    """The box's likelier filler, an X or an empty box (a dash reads as empty), with its probability."""
    return ("X", float(p[10])) if p[10] >= p[BLANK_INDEX] else ("_", float(p[BLANK_INDEX]))


def _overrules_a_sure_box(box_probs: np.ndarray, spelling: Sequence[str], sure: float) -> bool:
    """Whether `spelling` puts another class in a box whose own likeliest class has probability >= `sure` (one
    filler for another does not count: they mean the same)."""
    for p, c in zip(box_probs, spelling):
        top = int(np.argmax(p))
        if p[top] >= sure and CLASSES[top] != c and not (CLASSES[top] in FILLERS and c in FILLERS):
            return True
    return False


def best_spelling(box_probs: Sequence[np.ndarray], value: int | None) -> tuple[str, ...]:
    """The likeliest box classes that spell `value` (leading fillers, then zeros, then its digits), or for None the
    likeliest string with a filler after a digit."""
    n = len(box_probs)
    if value is None:
        top = [CLASSES[int(np.argmax(p))] for p in box_probs]
        best_none: tuple[float, tuple[str, ...]] = (-1.0, tuple(top))
        for i, j in itertools.combinations(range(n), 2):  # a digit at i, a filler at j: never a number
            classes = list(top)
            classes[i] = CLASSES[int(np.argmax(box_probs[i][:10]))]
            classes[j] = _likeliest_filler(box_probs[j])[0]
            p = math.prod(float(box_probs[k][CLASSES.index(c)]) for k, c in enumerate(classes))
            if p > best_none[0]:
                best_none = (p, tuple(classes))
        return best_none[1]
    digits = str(value) if value else ""
    m = n - len(digits)
    best: tuple[float, tuple[str, ...]] | None = None
    for j in range(m + 1):  # the first j boxes are fillers, the next m - j zeros
        lead: list[str] = []
        p = 1.0
        for i in range(m):
            if i < j:
                c, pc = _likeliest_filler(box_probs[i])
                p *= pc
            else:
                c = "0"
                p *= float(box_probs[i][0])
            lead.append(c)
        if best is None or p > best[0]:
            best = (p, tuple(lead))
    return best[1] + tuple(digits)  # type: ignore[index]


def fuse_omr(dist: FieldDist, box_probs: Sequence[np.ndarray], omr: OmrReading, *, min_confidence: float) -> bool:
    """Multiply in the OMR reading as independent evidence: P(omr says o | true v) = c if o == v, else shared.

    Returns whether it was used.
    """
    if omr is None or omr.value is None or omr.confidence < min_confidence:
        return False
    o, c = omr.value, min(omr.confidence, 0.9999)
    n_values = 10 ** len(box_probs)
    if o >= n_values:
        return False
    if o not in dist.probs:
        dist.probs[o] = value_probability(box_probs, o)
        dist.classes[o] = best_spelling(box_probs, o)  # its likeliest spelling in these boxes
    other = (1.0 - c) / (n_values - 1)
    covered = sum(dist.probs.values())
    leftover = max(0.0, 1.0 - covered)
    z = sum(p * (c if v == o else other) for v, p in dist.probs.items()) + leftover * other
    for v in list(dist.probs):
        dist.probs[v] = dist.probs[v] * (c if v == o else other) / z
    return True


# ---------------------------------------------------------------------------------------------------------------
# Joint search


@dataclass
class Var:
    id: str
    cands: list[tuple[int | None, float]]  # ranked, truncated
    fixed: bool
    full: np.ndarray | None = None  # exact distribution over every number, then "no number" (value_distribution)

    @property
    def top(self) -> int | None:
        return self.cands[0][0]


@dataclass(frozen=True)
class FormErrorModel:
    """How likely an assignment that breaks a hard rule is, against one that satisfies it: the prior that the KPPS
    wrote inconsistent numbers rather than the reader erring.

    A broken rule weighs `weight`. A broken sum (an equality) weighs `weight` times the probability of its
    discrepancy d = left - right under a KPPS mistake: a consistent form pins the total to one number, a mistaken
    one spreads its total over many, so charging every discrepancy the full weight would count the mistake
    hypothesis once per number it could have written. Mistakes are a mix of slips (a carry dropped, a digit off by
    one: `slip_share` of them, |d| geometric with mean about `slip_scale`) and anything else (a neighbouring row
    copied, digits transposed: d uniform over +-`spread`). `spread` 0 is the flat model (every discrepancy weighs
    `weight`). A sum with a field that has no number is not a slip: it weighs as "anything else"."""

    weight: float
    slip_share: float = 0.5
    slip_scale: float = 3.0
    spread: int = 0

    @classmethod
    def from_settings(cls, ds) -> FormErrorModel:
        return cls(ds.form_error_weight, ds.form_error_slip_share, ds.form_error_slip_scale, ds.form_error_spread)

    def discrepancy_probability(self, d: np.ndarray | float) -> np.ndarray:
        """Probability of a sum's discrepancy d != 0 under a KPPS mistake (d NaN: a field without a number); 1 when
        flat."""
        d = np.abs(np.asarray(d, dtype=np.float64))
        if self.spread <= 0:
            return np.ones_like(d)
        nan = np.isnan(d)
        out = self._by_size[np.minimum(np.where(nan, 0.0, d), len(self._by_size) - 1).astype(np.int64)]
        return np.where(nan, self._by_size[-1], out)

    @property
    def anything(self) -> float:
        """The probability of any one discrepancy under "anything else" (and of a sum with no number)."""
        return (1.0 - self.slip_share) / (2.0 * self.spread)

    @cached_property
    def _by_size(self) -> np.ndarray:
        """The probability per |d| (index 0 as 1) up to where slips die out (a billionth of "anything else"), then
        "anything else" alone: the model ends its slips there, so it stays exact where it is used."""
        q = math.exp(-1.0 / self.slip_scale)
        scale = self.slip_share * (1.0 - q) / (2.0 * q)
        floor = max(self.anything, 1e-12) * 1e-9
        n = 1 if scale <= floor else int(math.ceil(math.log(floor / scale) / math.log(q)))
        n = max(1, min(self.spread, n))
        size = np.maximum(np.arange(n + 1, dtype=np.float64), 1.0)
        return np.append(scale * q**size, 0.0) + self.anything

    def slip_kernel(self) -> np.ndarray:
        """What each |d| <= the slips' reach adds over "anything else", for d = -reach..reach (0 at d = 0)."""
        half = self._by_size[:-1] - self.anything
        half[0] = 0.0
        return np.concatenate([half[:0:-1], half])

    @property
    def flat(self) -> bool:
        return self.spread <= 0

    def sum_penalty(self, d: np.ndarray | float) -> np.ndarray:
        return self.weight * self.discrepancy_probability(d)

    def date_penalty(self, r: DateRule, parts: dict[int, np.ndarray | float]) -> np.ndarray:
        """Weight of R17 broken by the date parts (position in (day, month, year) -> values, NaN: no number): a KPPS
        mistake in the date is one more thing it could have written, each part that differs from the nearest allowed
        date off by a discrepancy of its own (the same distribution as a sum's)."""
        best: np.ndarray | float = 0.0
        for day in r.allowed:
            likelihood: np.ndarray | float = 1.0
            for i, v in parts.items():
                d = np.asarray(v, dtype=np.float64) - day[i]
                with np.errstate(invalid="ignore"):
                    likelihood = likelihood * np.where(d == 0, 1.0, self.discrepancy_probability(d))
            best = np.maximum(best, likelihood)
        return self.weight * np.asarray(best)

    def penalty(self, r: Rule, values: dict[str, int | None]) -> float:
        """Weight of `r` broken by `values`."""
        if isinstance(r, LinearRule) and r.op == "==":
            s = r.sides(values)
            return float(self.sum_penalty(np.nan if s is None else s[0] - s[1]))
        if isinstance(r, DateRule) and not self.flat:
            parts: dict[int, np.ndarray | float] = {
                i: np.nan if values.get(f) is None else float(values[f]) for i, f in r.parts  # type: ignore[arg-type]
            }
            return float(self.date_penalty(r, parts))
        return self.weight


@dataclass
class Solution:
    values: dict[str, int | None]
    confidence: dict[str, float]
    posterior: dict[str, list[tuple[int | None, float]]]
    limited: set[str] = field(default_factory=set)
    nodes: int = 0
    exact: int = 0  # groups whose marginals were summed exactly


def solve(
    variables: dict[str, Var], rules: Sequence[Rule], *, form_error: FormErrorModel, node_limit: int,
    prune_ratio: float, exact_width: int = 12, exact_cost_limit: float = 2e6,
) -> Solution:
    """Values of the non-fixed fields under the hard rules, with lower bounds on their posterior confidences: exact
    sums per group where affordable, else the best-weighted enumerated assignment (see the module docstring)."""
    values = {vid: v.top for vid, v in variables.items()}
    conf = {vid: v.cands[0][1] for vid, v in variables.items()}
    post = {vid: list(v.cands) for vid, v in variables.items()}
    sol = Solution(values, conf, post)

    # A rule informs the search when it touches an uncertain field and no fixed field in it is missing a number.
    informative: list[Rule] = []
    for r in rules:
        if any(f not in variables for f in r.fields):
            continue
        free = [f for f in r.fields if not variables[f].fixed]
        if not free:
            continue
        if any(variables[f].fixed and variables[f].top is None for f in r.fields):
            continue
        informative.append(r)

    # connected groups of uncertain fields
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for r in informative:
        free = [f for f in r.fields if not variables[f].fixed]
        for f in free[1:]:
            parent[find(f)] = find(free[0])
        find(free[0])
    groups: dict[str, list[str]] = {}
    for f in parent:
        groups.setdefault(find(f), []).append(f)

    for members in groups.values():
        member_set = set(members)
        group_rules = [r for r in informative if any(f in member_set for f in r.fields)]
        degree = {f: sum(f in r.fields for r in group_rules) for f in members}
        order = sorted(members, key=lambda f: (-degree[f], f))
        # fewer listed values per field only loosen the bounds, and cost less
        for width in [exact_width, *(x for x in (8, 4, 2) if x < exact_width)]:
            exact = _exact_group(
                order, group_rules, variables, form_error=form_error, width=width,
                value_floor=EXACT_VALUE_FLOOR, max_table=EXACT_MAX_TABLE, max_cost=exact_cost_limit,
            )
            if exact is not None:
                break
        if exact is not None:
            sol.exact += 1
            for i, f in enumerate(order):
                lo, hi, vals = exact.lo[i], exact.hi[i], exact.values[i]
                j = int(np.argmax(lo))
                values[f] = vals[j]
                conf[f] = float(lo[j] / (lo[j] + exact.hi_total - hi[j]))
                post[f] = sorted(((u, float(lo[k] / exact.hi_total)) for k, u in enumerate(vals)), key=lambda kv: -kv[1])
            continue
        pos = {f: i for i, f in enumerate(order)}
        checks: list[list[Rule]] = [[] for _ in order]
        for r in group_rules:
            checks[max(pos[f] for f in r.fields if f in member_set)].append(r)
        # A group too large to enumerate within the budget is searched again over fewer candidates per field. That
        # is safe: the mass left out counts as if it satisfied every rule, so confidences only come out lower.
        for width in SEARCH_WIDTHS:
            doms = [variables[f].cands[:width] for f in order]
            found = _search_group(
                order, doms, checks, variables, form_error=form_error, node_limit=node_limit,
                prune_ratio=prune_ratio,
            )
            sol.nodes += found.nodes
            if found.best is not None:
                break
        if found.best is None:
            sol.limited.update(members)
            continue
        for i, f in enumerate(order):
            v = found.best[i]
            values[f] = v
            # Posterior of v, bounded from below. The assignments not enumerated are unknown: the ones where this
            # field is not v count in full, as if they satisfied every rule; the ones where it is v count for
            # nothing (adding them to both sides could only raise the ratio). Their mass is exact: the field's own
            # probability of not being v, less what was enumerated with another value.
            support = found.marg[i].get(v, 0.0)
            not_v_left = max(0.0, (1.0 - dict(variables[f].cands)[v]) - (found.p - found.pmarg[i].get(v, 0.0)))
            z = found.z + not_v_left
            conf[f] = support / z
            post[f] = sorted(((u, m / z) for u, m in found.marg[i].items()), key=lambda kv: -kv[1])
    return sol


EXACT_MAX_TABLE = 200_000  # entries of one rule's weight table over its uncertain fields; larger groups are enumerated
EXACT_MAX_BOXES = 5  # a field's exact value distribution has 10^boxes entries
EXACT_VALUE_FLOOR = 1e-3  # the exact sums list a field's likeliest values until all but this much of its mass
SEARCH_WIDTHS = (None, 4, 2)  # candidates per field in the joint search: all kept, then fewer when over budget


@dataclass
class _GroupSearch:
    best: list[int | None] | None  # None: the node budget ran out
    z: float  # total weight enumerated (probability x rule penalties)
    p: float  # total probability enumerated
    marg: list[dict[int | None, float]]  # per field, per value: weight enumerated
    pmarg: list[dict[int | None, float]]  # per field, per value: probability enumerated
    nodes: int


def _search_group(
    order: list[str],
    doms: list[list[tuple[int | None, float]]],
    checks: list[list[Rule]],
    variables: dict[str, Var],
    *,
    form_error: FormErrorModel,
    node_limit: int,
    prune_ratio: float,
) -> _GroupSearch:
    """Depth-first enumeration of one group's assignments (fields in `order`, rules checked as soon as their last
    field is set), pruning assignments `prune_ratio` times less likely than the best reading."""
    best_rest = [1.0] * (len(order) + 1)
    for i in range(len(order) - 1, -1, -1):
        best_rest[i] = best_rest[i + 1] * doms[i][0][1]
    cutoff = prune_ratio * best_rest[0]

    current = {f: variables[f].top for f in variables}
    marg: list[dict[int | None, float]] = [{} for _ in order]
    pmarg: list[dict[int | None, float]] = [{} for _ in order]
    state = {"z": 0.0, "p": 0.0, "best_w": -1.0, "best": None, "nodes": 0, "aborted": False}
    choice: list[int | None] = [None] * len(order)

    def dfs(depth: int, p: float, w: float) -> None:
        if state["aborted"]:
            return
        state["nodes"] += 1
        if state["nodes"] > node_limit:
            state["aborted"] = True
            return
        if depth == len(order):
            pw = p * w
            state["z"] += pw
            state["p"] += p
            for i, v in enumerate(choice):
                marg[i][v] = marg[i].get(v, 0.0) + pw
                pmarg[i][v] = pmarg[i].get(v, 0.0) + p
            if pw > state["best_w"]:
                state["best_w"] = pw
                state["best"] = list(choice)
            return
        f = order[depth]
        for v, pv in doms[depth]:
            np_ = p * pv
            if np_ * w * best_rest[depth + 1] < cutoff:
                break  # candidates are ranked: the rest are less likely still
            current[f] = v
            choice[depth] = v
            nw = w
            for r in checks[depth]:
                if not r.holds(current):  # None (a field without a number) counts as broken
                    nw *= form_error.penalty(r, current)
            dfs(depth + 1, np_, nw)
        current[f] = variables[f].top

    dfs(0, 1.0, 1.0)
    best = None if state["aborted"] else state["best"]
    return _GroupSearch(best, state["z"], state["p"], marg, pmarg, state["nodes"])


# ---------------------------------------------------------------------------------------------------------------
# Exact sums over one group's candidate values


def value_distribution(box_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Exact probability of every number the boxes can spell (index = value), and last of no number at all (R15: a
    filler after a digit), from the full box vectors: leading fillers and zeros are 0."""
    lead = 1.0  # only fillers so far
    num = np.zeros(1)  # started (a digit seen): probability per value so far
    nan = 0.0
    for p in box_probs:
        fill = float(p[10] + p[BLANK_INDEX])
        nan += float(num.sum()) * fill
        started = (num[:, None] * p[None, :10]).reshape(-1)
        started[:10] += lead * p[:10]
        num, lead = started, lead * fill
    num[0] += lead
    return np.append(num, nan)


def _omr_likelihood(full: np.ndarray, omr: OmrReading) -> np.ndarray:
    """`full` with the OMR reading multiplied in, exactly as `fuse_omr` does for the enumerated values."""
    o, c = omr.value, min(omr.confidence, 0.9999)
    n_values = len(full) - 1
    lik = np.full(len(full), (1.0 - c) / (n_values - 1))
    lik[o] = c
    out = full * lik
    return out / out.sum()


@dataclass
class _GroupSums:
    values: list[list[int | None]]  # per field, its listed candidate values
    lo: list[np.ndarray]  # per field, per listed value: weight summed over listed values only (a lower bound)
    hi: list[np.ndarray]  # per field, per state (listed values, then the two unlisted states): an upper bound
    hi_total: float


def _pins(r: Rule, f: str) -> bool:
    """Whether `r` holds for at most one value of `f` once the other fields are set: an equality with `f` once."""
    if not isinstance(r, LinearRule) or r.op != "==":
        return False
    if (r.lhs + r.rhs).count(f) != 1:
        return False
    return not (r.fraction and f in r.rhs)


def _listed(
    f: str, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var]
) -> np.ndarray | float:
    """An uncertain field's listed values (NaN: no number) along its axis among `free`; a fixed field's value."""
    if f in values:
        return np.array([np.nan if v is None else v for v in values[f]], dtype=np.float64).reshape(
            [-1 if g == f else 1 for g in free]
        )
    v = variables[f].top
    return np.nan if v is None else float(v)


def _date_parts(
    r: DateRule, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var],
    skip: str | None = None,
) -> dict[int, np.ndarray | float]:
    """R17's parts (position in (day, month, year) -> `_listed` values), `skip` left out."""
    return {i: _listed(f, free, values, variables) for i, f in r.parts if f != skip}


def _linear_sides(
    r: LinearRule, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var],
    skip: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides of `r` over the listed values of its uncertain fields (NaN: no number), the fixed fields at their
    value; `skip` (one of `free`) left out of its side, its axis of length 1."""
    shape = tuple(1 if f == skip else len(values[f]) for f in free)

    def side(fields: tuple[str, ...]) -> np.ndarray:
        total = np.zeros(shape)
        for f in fields:
            if f != skip:
                total = total + _listed(f, free, values, variables)
        return total

    left = side(r.lhs)
    if r.constant is not None:
        right = np.full(shape, float(r.constant))
    else:
        right = side(r.rhs)
        if r.fraction:
            right = right + np.ceil(np.round(r.fraction * right, 9))
    return left, right


def _rule_table(
    r: Rule, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var], form_error: FormErrorModel
) -> np.ndarray:
    """Weight of `r` over the listed values of its uncertain fields: 1 where it holds, its form-error penalty where it
    breaks (no number breaks it), the fixed fields at their value."""
    w = form_error.weight
    shape = tuple(len(values[f]) for f in free)
    if isinstance(r, LinearRule):
        left, right = _linear_sides(r, free, values, variables)
        with np.errstate(invalid="ignore"):
            ok = {"==": left == right, "<=": left <= right, ">=": left >= right}[r.op]
        if r.op == "==":
            return np.where(ok, 1.0, form_error.sum_penalty(left - right))
        return np.where(ok, 1.0, w)
    if isinstance(r, DateRule):
        ok = np.zeros(shape, dtype=bool)
        for day in r.allowed:
            match = np.ones(shape, dtype=bool)
            for i, f in r.parts:
                if f in values:
                    hit = np.array([v == day[i] for v in values[f]])
                    match = match & hit.reshape([-1 if g == f else 1 for g in free])
                elif variables[f].top != day[i]:
                    match = np.zeros(shape, dtype=bool)
            ok |= match
        if form_error.flat:
            return np.where(ok, 1.0, w)
        penalty = form_error.date_penalty(r, _date_parts(r, free, values, variables))
        return np.where(ok, 1.0, np.broadcast_to(penalty, shape))
    if isinstance(r, RangeRule) and free == [r.field]:
        vals = _listed(r.field, free, values, variables)
        with np.errstate(invalid="ignore"):
            return np.where((vals >= r.lo) & (vals <= r.hi), 1.0, w)
    out = np.empty(shape)
    current = {f: variables[f].top for f in r.fields}
    for idx in itertools.product(*(range(n) for n in shape)):
        for f, i in zip(free, idx):
            current[f] = values[f][i]
        out[idx] = 1.0 if r.holds(current) else form_error.penalty(r, current)
    return out


def _exact_group(
    members: list[str], group_rules: list[Rule], variables: dict[str, Var], *, form_error: FormErrorModel,
    width: int, value_floor: float, max_table: int, max_cost: float,
) -> _GroupSums | None:
    """Sums of the rule-weighted probability over every assignment of one group, per field and value (bucket
    elimination, `_marginals`), or None when a field lacks its full distribution, a rule's table would exceed
    `max_table` entries or the elimination `max_cost` (the caller enumerates instead).

    Each field lists the values its sums ask for (`_implied_values`, up to half of `width`) and its likeliest values
    until all but `value_floor` of its mass, at most `width` in all; the rest of it (rho, exact from
    `value_distribution`) is unlisted. `lo` sums over listed values only: a lower bound. `hi` bounds
    the unlisted values from above with two states: "break", mass rho, which breaks every rule that pins the field
    (an equality allows at most one value of it), and "match", mass m (the likeliest unlisted value), which satisfies
    every rule. For any setting of the other fields, the unlisted values' weight is at most rho * w^k + m (k pinning
    rules), so `hi` can only overstate; a rule with several unlisted fields weighs w only when each of them is in
    "break" and pinned by it. That is the flat model; with form errors weighed by their discrepancy, a pinned field's
    unlisted mass is weighed exactly in one of its sums instead (see below). Either way, a rule whose weight for
    every unlisted value of a field is known to be smaller (`_unlisted_cap`) caps both states."""
    if len(members) > 51 or any(variables[f].full is None for f in members):  # einsum's 52 indices, one for rows
        return None
    axis = {f: i for i, f in enumerate(members)}
    values: dict[str, list[int | None]] = {}
    # One elimination does both sums: row 0 of each field's vector has the unlisted states at 0 (`lo`), row 1 has
    # their bounds (`hi`); the rule tables are the same.
    unary: list[np.ndarray] = []
    tables: dict[tuple[int, ...], np.ndarray] = {}
    unlisted: dict[str, np.ndarray] = {}  # per field: its exact distribution with the listed values at 0
    for f in members:
        full = variables[f].full
        top = np.argpartition(-full, width)[: width + 1] if len(full) > width + 1 else np.arange(len(full))
        order = top[np.argsort(-full[top])]  # the width + 1 likeliest, ranked: the listed ones and m
        # the likeliest values until all but `value_floor` of the mass is listed, at most `width`
        covered = np.cumsum(full[order[:width]])
        n_keep = min(width, int(np.searchsorted(covered, 1.0 - value_floor)) + 1)
        n_values = len(full) - 1
        # A value the sums ask for is listed, however unlikely its own reading: when the likeliest readings break a
        # sum by much, that value may carry most of the posterior, and a lower bound without it says nothing. It
        # takes the place of the least likely listed values, so the tables cost the same.
        likeliest = [int(i) for i in order[:n_keep]]
        asked = [u for u in _implied_values(f, group_rules, variables)
                 if 0 <= u < n_values and full[u] > 0 and u not in likeliest][: width // 2]  # fmt: skip
        keep = likeliest[: width - len(asked)] + asked
        values[f] = [None if i == n_values else i for i in keep]
        p = full[keep]
        rest = max(0.0, 1.0 - float(p.sum()))
        unlisted[f] = full.copy()
        unlisted[f][keep] = 0.0
        m = float(unlisted[f].max())
        unary.append(np.stack([np.append(p, [0.0, 0.0]), np.append(p, [rest, m])]))
    # Sizes alone say whether the sums are affordable: check before building any table (a group over budget is
    # tried again narrower, and the tables are most of the cost of a try).
    frees = [list(dict.fromkeys(f for f in r.fields if f in axis)) for r in group_rules]
    if any(math.prod(len(values[f]) + 2 for f in free) > max_table for free in frees):
        return None
    order, cost = _elimination_order([u.shape[1] for u in unary], list({tuple(axis[f] for f in free) for free in frees}))
    if cost > max_cost:
        return None
    # A discrepancy-weighted model (not flat) weighs a broken sum over orders of magnitude, and bounding every unlisted
    # value by the largest penalty would swamp the listed ones whenever the likeliest reading breaks a sum by much.
    # There, each pinned field's unlisted mass is weighed exactly in one rule that pins it (its carrier): per setting
    # of the rule's other (listed) fields, its unlisted values' mass times their penalty, the value that satisfies
    # the rule at 1; "match" then weighs 0 in the carrier (its mass is in "break"). In its other rules both states
    # weigh at most what any unlisted value can weigh there (`_unlisted_cap`), else 1. So this can only overstate too.
    carrier: dict[str, int] = {}
    if not form_error.flat:
        for i, (r, free) in enumerate(zip(group_rules, frees)):
            for f in free:
                if f not in carrier and _pins(r, f):
                    carrier[f] = i
    for i, (r, free) in enumerate(zip(group_rules, frees)):
        t = _rule_table(r, free, values, variables, form_error)
        hi_t = np.ones(tuple(n + 2 for n in t.shape))
        if form_error.flat and all(_pins(r, f) for f in free):
            # every unlisted field of the rule in "break" (index n), the others listed: the rule is broken
            hi_t[tuple(slice(0, n + 1) for n in t.shape)] = form_error.weight
        for k, f in enumerate(free):
            if carrier.get(f) != i:
                # The most any of f's unlisted values can weigh here, the other fields listed: both its states
                cap = _unlisted_cap(r, f, free, values, variables, unlisted[f], form_error)
                if cap is not None:
                    n = t.shape[k]
                    at = tuple(slice(n, n + 2) if j == k else slice(0, m) for j, m in enumerate(t.shape))
                    hi_t[at] = np.minimum(hi_t[at], cap)
                continue
            n = t.shape[k]
            hi_t[tuple(n + 1 if j == k else slice(None) for j in range(len(free)))] = 0.0
            rest = float(unary[axis[f]][1, n])
            weight = _unlisted_weight(r, f, free, values, variables, unlisted[f], form_error)  # type: ignore[arg-type]
            hi_t[tuple(slice(n, n + 1) if j == k else slice(0, m) for j, m in enumerate(t.shape))] = (
                weight / rest if rest > 0 else 0.0
            )
        hi_t[tuple(slice(0, n) for n in t.shape)] = t
        key = tuple(axis[f] for f in free)
        # rules over the same fields (a field's range rules, say): one table
        tables[key] = tables[key] * hi_t if key in tables else hi_t
    sums = _marginals(unary, tables, order)
    lo = [s_[0, : len(values[f])] for s_, f in zip(sums, members)]
    hi = [s_[1] for s_ in sums]
    return _GroupSums([values[f] for f in members], lo, hi, float(hi[0].sum()))


def _asked_values(r: Rule, f: str, values: dict[str, int | None]) -> list[int]:
    """The values of `f` with which `r` would hold, the other fields at their `values`: the one value of a sum that
    pins `f`, or `f`'s part of each date R17 allows."""
    if f not in r.fields:
        return []
    if isinstance(r, DateRule):
        i = next(i for i, g in r.parts if g == f)
        return list(dict.fromkeys(day[i] for day in r.allowed))
    if not _pins(r, f):
        return []
    sides = r.sides({**values, f: 0})  # type: ignore[union-attr]
    if sides is None:
        return []
    return [int(sides[1] - sides[0] if f in r.lhs else sides[0] - sides[1])]  # type: ignore[union-attr]


def _implied_values(f: str, group_rules: list[Rule], variables: dict[str, Var]) -> list[int]:
    """The values of `f` that satisfy each sum pinning it, every other field at its own likeliest reading, and its
    part of each date R17 allows."""
    return list(
        dict.fromkeys(
            u for r in group_rules for u in _asked_values(r, f, {g: variables[g].top for g in r.fields if g != f})
        )
    )


def _unlisted_cap(
    r: Rule, f: str, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var],
    unlisted: np.ndarray, form_error: FormErrorModel,
) -> np.ndarray | float | None:
    """An upper bound on what `r` weighs for any unlisted value of `f`, the other uncertain fields at their listed
    values (shaped like `r`'s table with `f`'s axis of length 2, or a number), or None for no bound below 1. A
    range (R1, R10) knows its unlisted values; a date (R17) is broken by every one when f's allowed parts are all
    listed; a sum that pins f weighs its unlisted values by how far the nearest one is from the value it asks for
    (1 when that value is itself unlisted)."""
    if isinstance(r, LinearRule) and _pins(r, f):
        left, right = _linear_sides(r, free, values, variables, skip=f)
        target = right - left if f in r.lhs else left - right  # the value of f that satisfies r (NaN: none does)
        held = np.flatnonzero(unlisted[:-1] > 0)  # sorted; "no number" weighs less than any number
        if not len(held):
            return float(form_error.sum_penalty(np.nan))
        t = np.nan_to_num(target, nan=-1e9)
        i = np.clip(np.searchsorted(held, t), 1, len(held) - 1) if len(held) > 1 else np.zeros(t.shape, np.int64)
        nearest = np.minimum(np.abs(held[i] - t), np.abs(held[np.maximum(i - 1, 0)] - t))
        cap = np.where(nearest == 0, 1.0, form_error.sum_penalty(np.maximum(nearest, 1.0)))
        return np.where(np.isnan(target), float(form_error.sum_penalty(np.nan)), cap)
    if isinstance(r, RangeRule) and free == [f]:
        held = np.flatnonzero(unlisted[:-1] > 0)  # "no number" (last) breaks a range too
        return None if ((held >= r.lo) & (held <= r.hi)).any() else form_error.weight
    if isinstance(r, DateRule):
        i = next(i for i, g in r.parts if g == f)
        if any(day[i] not in values[f] for day in r.allowed):
            return None
        if form_error.flat:
            return form_error.weight
        shape = [1 if g == f else len(values[g]) for g in free]
        # f differs from its part of every allowed date by at least 1
        others = _date_parts(r, free, values, variables, skip=f)
        cap = form_error.date_penalty(r, others) * float(form_error.discrepancy_probability(1.0))
        return np.broadcast_to(cap, shape)
    return None


def _unlisted_weight(
    r: LinearRule, f: str, free: list[str], values: dict[str, list[int | None]], variables: dict[str, Var],
    unlisted: np.ndarray, form_error: FormErrorModel,
) -> np.ndarray:
    """For each setting of the listed values of `r`'s other uncertain fields: the sum over `f`'s unlisted values of
    their mass times `r`'s weight (1 where it holds, else its penalty). `r` pins `f`: one value of it satisfies `r`.
    Shaped like `r`'s table with `f`'s axis of length 1."""
    left, right = _linear_sides(r, free, values, variables, skip=f)
    target = (right - left if f in r.lhs else left - right).reshape(-1)  # the value of f that satisfies r
    n_values = len(unlisted) - 1
    numbers = unlisted[:n_values]
    w, anything = form_error.weight, form_error.anything
    rho = float(numbers.sum())
    kernel = form_error.slip_kernel()
    reach = len(kernel) // 2
    # Per target t: its own mass at weight 1, every other unlisted number at w x "anything else", plus the slips
    # within reach of t (a convolution; index j is t = j - reach). No target (NaN): every number breaks r.
    near = np.convolve(numbers, kernel)
    known = ~np.isnan(target)
    t = np.where(known, target, -(2 * reach + 2)).astype(np.int64)
    own = np.where(known & (t >= 0) & (t < n_values), numbers[np.clip(t, 0, n_values - 1)], 0.0)
    slips = np.where((t >= -reach) & (t < n_values + reach), near[np.clip(t + reach, 0, len(near) - 1)], 0.0)
    total = np.where(known, own + w * (anything * (rho - own) + slips), w * anything * rho)
    total = total + unlisted[n_values] * w * anything  # "no number" breaks r
    return total.reshape(left.shape)


_ROWS = 51  # einsum index of the rows of `_marginals`' unary arrays
EINSUM_PLAN_SIZE = 20_000  # a bucket whose joint index space is larger is contracted pair by pair


def _elimination_order(sizes: list[int], scopes: list[tuple[int, ...]]) -> tuple[list[int], float]:
    """A greedy elimination order (each step removes the variable whose neighbourhood table is smallest) and the
    number of table entries the forward pass touches."""
    nbrs = [set() for _ in sizes]
    for sc in scopes:
        for v in sc:
            nbrs[v].update(u for u in sc if u != v)
    left = set(range(len(sizes)))
    order, cost = [], 0.0
    while left:
        v = min(left, key=lambda u: (math.prod(sizes[x] for x in nbrs[u]) * sizes[u], u))
        cost += math.prod(sizes[x] for x in nbrs[v]) * sizes[v]
        for a in nbrs[v]:
            nbrs[a].update(nbrs[v] - {a})
            nbrs[a].discard(v)
        left.remove(v)
        order.append(v)
    return order, cost


def _marginals(unary: list[np.ndarray], tables: dict[tuple[int, ...], np.ndarray], order: list[int]) -> list[np.ndarray]:
    """Per variable, the sum over every other variable of the product of `unary` (one (rows, values) array per
    variable: several sums that share the tables, done at once) and `tables` (keyed by their variables), by bucket
    elimination along `order` and a backward pass down the bucket tree: every marginal for about twice the cost of
    one sum. Returns a (rows, values) array per variable."""
    n = len(unary)
    if n == 1:  # one field: every table is over it alone
        out = unary[0]
        for t in tables.values():
            out = out * t
        return [out]
    rank = {v: i for i, v in enumerate(order)}
    own: list[list[tuple[tuple[int, ...], np.ndarray]]] = [[((_ROWS, v), unary[v])] for v in range(n)]
    for key, t in tables.items():
        own[min(key, key=rank.__getitem__)].append((key, t))
    received: list[list[tuple[int, tuple[int, ...], np.ndarray]]] = [[] for _ in range(n)]  # (child, scope, message)
    sep: list[tuple[int, ...]] = [()] * n
    parent: list[int | None] = [None] * n
    roots: dict[int, np.ndarray] = {}

    def product(parts: list[tuple[tuple[int, ...], np.ndarray]], out: tuple[int, ...]) -> np.ndarray:
        ops: list = []
        dims: dict[int, int] = {}
        for sc, t in parts:
            ops += [t, list(sc)]
            dims.update(zip(sc, t.shape))
        # One joint loop over every index is cheapest for small buckets; a large one is contracted pair by pair
        # (numpy's greedy path), which costs a planning step but sums each index out as early as it can.
        big = len(parts) > 2 and math.prod(dims.values()) > EINSUM_PLAN_SIZE
        return np.einsum(*ops, list(out), optimize="greedy" if big else False)

    for v in order:
        parts = own[v] + [(sc, m) for _, sc, m in received[v]]
        scope = tuple(sorted({u for sc, _ in parts for u in sc} - {v, _ROWS}, key=rank.__getitem__))
        msg = product(parts, (_ROWS, *scope))
        sep[v] = (_ROWS, *scope)
        if scope:
            parent[v] = scope[0]
            received[scope[0]].append((v, sep[v], msg))
        else:
            roots[v] = msg
    total = np.prod(np.stack(list(roots.values())), axis=0)
    down: list[np.ndarray | None] = [None] * n  # message from the parent, over sep[v]
    out: list[np.ndarray] = [np.empty(0)] * n
    root_of: dict[int, int] = {}
    for v in reversed(order):  # a parent comes before its children
        base = list(own[v])
        p = parent[v]
        if p is not None:
            base.append((sep[v], down[v]))
        root_of[v] = v if p is None else root_of[p]
        children = received[v]
        own_sum = roots[root_of[v]]
        with np.errstate(divide="ignore", invalid="ignore"):
            others = np.where(own_sum > 0, total / own_sum, 0.0)  # the other components' sums, per row
        out[v] = product(base + [(sc, m) for _, sc, m in children], (_ROWS, v)) * others[:, None]
        for k, (c, sc, _) in enumerate(children):
            siblings = [(s2, m2) for j, (_, s2, m2) in enumerate(children) if j != k]
            down[c] = product(base + siblings, sc)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Decoding a set of fields (one page, or the pages of one TPS)


@dataclass
class FieldInput:
    """One field to decode: `qid` is its id in the result (qualified "<page>:<id>" across pages)."""

    qid: str
    spec: FieldSpec
    boxes: list[BoxEvidence] | None
    omr: OmrReading | None = None
    row_totals: list[list[BoxEvidence]] | None = None


@dataclass
class _FieldState:
    inp: FieldInput
    probs: np.ndarray | None = None  # calibrated, one row per box
    dist: FieldDist | None = None
    own_top: int | None = None
    own_conf: float = 0.0
    digits_top: int | None = None  # the best value from the digit boxes alone, before OMR is fused in
    omr_used: bool = False
    reasons: list[str] = field(default_factory=list)
    unreadable: str | None = None  # reason the field has no number at all


def audit_selected(form_id: str | None, rate: float) -> bool:
    """Deterministic sampling: the same form id is always in or out of the audit sample."""
    if not form_id or rate <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(form_id.encode("utf-8")).digest()[:8], "big")
    return h / 2**64 < rate


def _calibrated(boxes: list[BoxEvidence], cal: Calibration) -> np.ndarray | None:
    """The field's calibrated box probabilities, one row per box (one array op for the field, not one per box)."""
    if any(b.probs is None for b in boxes):
        return None
    p = np.array([b.probs for b in boxes], dtype=np.float64).reshape(len(boxes), N_CLASSES)
    p /= p.sum(axis=1, keepdims=True)
    return apply_temperature(p, cal.temperature)


def _cand(char: str, p: float) -> dict:
    return {"char": char, "p": round(float(p), 6)}


def _box_readings(st: _FieldState, chosen: tuple[str, ...] | None, k: int) -> list[dict]:
    """Plain dicts, validated once per field by FieldReading (one pydantic-core call is much cheaper than many)."""
    boxes = st.inp.boxes or []
    orders = np.argsort(-st.probs, axis=1)[:, :k] if st.probs is not None else None
    out = []
    for i, b in enumerate(boxes):
        probs = st.probs[i] if st.probs is not None else None
        order = orders[i] if orders is not None else None
        if probs is None and b.probs is not None:
            probs = np.asarray(b.probs, dtype=np.float64)
            order = np.argsort(-probs)[:k]
        if probs is None:
            char, topk = "?", []
        else:
            topk = [_cand(render(CLASSES[j], b.empty), probs[j]) for j in order]
            cls = chosen[i] if chosen is not None else CLASSES[int(order[0])]
            char = render(cls, b.empty)
        out.append(
            {
                "index": i,
                "char": char,
                "topk": topk,
                "ink": round(float(b.ink), 5),
                "touches_border": bool(b.touches_border),
                "engines": {name: [_cand(render(c, b.empty), p) for c, p in tk] for name, tk in b.engines.items()},
                "error": b.error,
            }
        )
    return out


def _row_totals_result(st: _FieldState, value: int | None, settings: Settings, cal: Calibration) -> RuleResult | None:
    rows = st.inp.row_totals
    if not rows:
        return None
    name = f"R14_row_totals:{st.inp.qid}"
    if all(b.empty for boxes in rows for b in boxes):
        # A KPPS who left the whole column blank did not total the rows: nothing to cross-check, not a disagreement.
        return structural_result(name, "R14", ok=None, fields=[st.inp.qid], message="row totals not written")
    row_values: dict[str, int | None] = {}
    confident = True
    for i, boxes in enumerate(rows):
        probs = _calibrated(boxes, cal)
        if probs is None:
            confident = False
            row_values[f"row{i}"] = None
            continue
        v, p = field_distribution(
            probs, floor=settings.decode.box_floor, max_classes=settings.decode.max_classes_per_box
        ).top
        row_values[f"row{i}"] = v
        confident &= v is not None and p >= settings.routing.accept_confidence
    if not confident or value is None:
        return structural_result(
            name, "R14", ok=None, fields=[st.inp.qid], values=row_values, message="row totals not confidently read"
        )
    total = sum(v for v in row_values.values() if v is not None)
    ok = total == value
    return structural_result(
        name, "R14", ok=ok, fields=[st.inp.qid], values={**row_values, st.inp.qid: value},
        message=f"sum of tally-row totals {total} {'=' if ok else '!='} {value}",
    )


def _misread_suspects(
    broken: Sequence[Rule],
    hard: Sequence[Rule],
    values: dict[str, int | None],
    states: dict[str, _FieldState],
    form_error: FormErrorModel,
) -> dict[str, tuple[int, float]]:
    """Fields whose single misread explains broken hard rules better than a KPPS mistake.

    A field f of a broken rule is suspected of reading v (a value a broken rule on f asks for) when every hard rule
    on f holds with v and the reader's odds of v against what it read, P(v) / P(read), beat the weight of the KPPS
    writing that one wrong number in f (`FormErrorModel.penalty` of the broken rule it weighs most). The decode
    still does not change f: confident digits are never corrected. The suspect tells the verifier where to look, and
    keeps `form_inconsistent` for the rules that no plausible misread explains, i.e. for forms the KPPS got wrong.
    Returns field -> (v, odds ratio over the mistake's weight)."""
    out: dict[str, tuple[int, float]] = {}
    broken_names = {r.name for r in broken}
    for f in dict.fromkeys(g for r in broken for g in r.fields):
        st = states.get(f)
        read = values.get(f)
        if st is None or st.probs is None or read is None:
            continue
        on_f = [r for r in hard if f in r.fields]
        failing = [r for r in on_f if r.name in broken_names]
        # One wrong number written in f breaks every rule on f at once: one mistake, not one per broken rule.
        mistake = max((form_error.penalty(r, values) for r in failing), default=0.0)
        p_read = value_probability(st.probs, read)
        if p_read <= 0.0 or mistake <= 0.0:
            continue
        limit = 10 ** len(st.probs)
        for v in dict.fromkeys(v for r in failing for v in _asked_values(r, f, values)):
            if not 0 <= v < limit or v == read:
                continue
            trial = {**values, f: v}
            if not all(r.holds(trial) for r in on_f):
                continue
            ratio = value_probability(st.probs, v) / p_read / mistake
            if ratio > 1.0 and ratio > out.get(f, (0, 0.0))[1]:
                out[f] = (v, ratio)
    return out


@dataclass(frozen=True)
class _MisreadTaken:
    """A reading taken as misread: `field` reads `value`, the one every broken sum on it asks for."""

    field: str
    read: int
    value: int
    share: float  # posterior that `field` is the misread one (and so reads `value`)
    rules: tuple[str, ...]  # the broken rules it explains, all holding with `value`
    culprit: dict[str, float]  # each other field of those rules -> posterior that it is the misread one instead


def _misreads_taken(
    broken: Sequence[Rule],
    hard: Sequence[Rule],
    values: dict[str, int | None],
    states: dict[str, _FieldState],
    form_error: FormErrorModel,
    suspects: dict[str, tuple[int, float]],
    sure: float,
) -> list[_MisreadTaken]:
    """Suspected misreads under the `sure` bar that are taken as misreads, so that the rest of their sums is free.

    Three explanations compete for the broken rules on a suspect f: the KPPS wrote one wrong number (weight 1 in the
    units of `_misread_suspects`' odds), f is misread as its suspect value v, or another field g of those rules is
    misread as a value a broken rule on g asks for (its odds P(u) / P(read) over the same mistake weight). f is taken
    when its reading is under `sure`, it is a suspect (its odds beat the KPPS mistake), and with v every hard rule
    on every field of its broken rules holds (nothing else is broken there). Its share of the weight is the
    posterior that v is right; each other field's share is the posterior that it is the misread one, which caps its
    confidence, so a field the reader is barely surer of than f is not accepted on f's account. A reading at `sure`
    or above is never changed (confident digits are kept; it stays `misread_suspected`)."""
    taken: list[_MisreadTaken] = []
    claimed: set[str] = set()
    for f, (v, _) in sorted(suspects.items(), key=lambda kv: -kv[1][1]):
        st = states[f]
        read = values.get(f)
        if st.own_conf >= sure or read is None or st.probs is None:
            continue
        rules = [r for r in broken if f in r.fields]
        fields = list(dict.fromkeys(g for r in rules for g in r.fields))
        if claimed.intersection(fields):
            continue
        trial = {**values, f: v}
        if any(r.holds(trial) is False for r in hard if any(g in r.fields for g in fields)):
            continue
        mistake = max(form_error.penalty(r, values) for r in rules)
        weights: dict[str, float] = {}
        for g in fields:
            sg, read_g = states.get(g), values.get(g)
            if sg is None or sg.probs is None or read_g is None:
                continue
            p_read = value_probability(sg.probs, read_g)
            if g == f:
                asked = {v}
            else:
                asked = {u for r in rules for u in _asked_values(r, g, values) if 0 <= u < 10 ** len(sg.probs)}
                asked.discard(read_g)
            odds = max((value_probability(sg.probs, u) for u in asked), default=0.0) / max(p_read, 1e-300)
            weights[g] = odds / mistake
        total = 1.0 + sum(weights.values())
        taken.append(
            _MisreadTaken(
                field=f, read=read, value=v, share=weights[f] / total, rules=tuple(r.name for r in rules),
                culprit={g: w / total for g, w in weights.items() if g != f},
            )
        )
        claimed.update(fields)
    return taken


def decode_fields(
    inputs: Sequence[FieldInput],
    rules: Sequence[Rule],
    *,
    settings: Settings,
    form_id: str | None = None,
    calibration: Calibration | None = None,
) -> PageDecode:
    """Decode fields jointly under `rules` (ids as in `FieldInput.qid`); see the module docstring."""
    ds = settings.decode
    threshold = settings.routing.accept_confidence
    cal = calibration or load_calibration(ds.calibration_file)
    states: dict[str, _FieldState] = {}
    rule_results: list[RuleResult] = []

    for inp in inputs:
        st = _FieldState(inp)
        states[inp.qid] = st
        n_boxes = len(inp.spec.boxes)
        if inp.boxes is None or len(inp.boxes) != n_boxes:
            st.unreadable = "not_read"
            continue
        if any(b.probs is None for b in inp.boxes):
            st.unreadable = "engine_error"
            continue
        st.probs = _calibrated(inp.boxes, cal)
        st.dist = field_distribution(st.probs, floor=ds.box_floor, max_classes=ds.max_classes_per_box)
        st.digits_top = st.dist.top[0]
        st.omr_used = fuse_omr(st.dist, st.probs, inp.omr, min_confidence=ds.omr_min_confidence)
        st.own_top, st.own_conf = st.dist.top

    variables: dict[str, Var] = {}
    for qid, st in states.items():
        if st.dist is None:
            variables[qid] = Var(qid, [(None, 0.0)], fixed=True)
            continue
        ranked = st.dist.ranked()[: ds.max_values_per_field]
        var = variables[qid] = Var(qid, ranked, fixed=st.own_conf >= threshold)
        if not var.fixed and len(st.probs) <= EXACT_MAX_BOXES:
            var.full = value_distribution(st.probs)
            if st.omr_used:
                var.full = _omr_likelihood(var.full, st.inp.omr)  # type: ignore[arg-type]

    hard = [r for r in rules if r.severity == "hard"]
    form_error = FormErrorModel.from_settings(ds)
    sol = solve(
        variables, hard, form_error=form_error, node_limit=ds.search_node_limit,
        prune_ratio=ds.prune_ratio, exact_width=ds.exact_values_per_field, exact_cost_limit=ds.exact_cost_limit,
    )
    values = dict(sol.values)

    # Suspected misreads under the sure bar that explain every sum they break are taken as misreads (see
    # `_misreads_taken`): the value the sums ask for, in review, and the rest of those sums no longer held by them.
    broken = [r for r in hard if r.holds(values) is False]
    suspects = _misread_suspects(broken, hard, values, states, form_error) if broken else {}
    taken = {
        t.field: t
        for t in _misreads_taken(broken, hard, values, states, form_error, suspects, ds.sure_reading_confidence)
    }
    for t in taken.values():
        values[t.field] = t.value
        states[t.field].reasons.append("misread_suspected")
    culprit_share: dict[str, float] = {}
    for t in taken.values():
        for g, share in t.culprit.items():
            culprit_share[g] = max(culprit_share.get(g, 0.0), share)

    # Rule results on the chosen values. Per-field range rules are listed only when they fail (they would be noise).
    for r in rules:
        res = r.result(values)
        if isinstance(r, RangeRule) and res.status != "fail":
            continue
        rule_results.append(res)
    for t in taken.values():
        for res in rule_results:
            if res.name in t.rules:
                res.message += f"; {t.field} read {t.read}, taken as {t.value} (misread suspected)"

    for qid, st in states.items():
        v = values[qid]
        if st.dist is not None and v is None and st.unreadable is None:
            st.unreadable = "filler_misplaced"
        if st.unreadable == "filler_misplaced":
            rule_results.append(
                structural_result(
                    f"R15_filler:{qid}", "R15", ok=False, fields=[qid],
                    message="an X, dash or blank after a digit: not a number",
                )
            )
        if st.omr_used:
            # The independent readings are compared as read: the digit boxes alone against the bubbles. The chosen
            # value may follow the OMR, but a disagreement always goes to a person.
            omr_v, dig = st.inp.omr.value, st.digits_top  # type: ignore[union-attr]
            ok = omr_v == dig
            rule_results.append(
                structural_result(
                    f"R14_omr:{qid}", "R14", ok=ok, fields=[qid], values={"digits": dig, "omr": omr_v},
                    message=f"OMR bubbles read {omr_v}, digit boxes {'agree' if ok else f'read {dig}'}",
                )
            )
            if not ok:
                st.reasons.append("omr_disagrees")
        rows = _row_totals_result(st, v, settings, cal)
        if rows is not None:
            rule_results.append(rows)
            if rows.status == "fail":
                st.reasons.append("row_totals_disagree")

    # Attribute rule failures to fields. A hard rule broken by confident readings is the KPPS's mistake
    # (`form_inconsistent`) unless one field's plausible misread explains it better (`misread_suspected` on that field:
    # the rule's message says what it may read). Either way every field of the rule goes to review.
    def confident(res: RuleResult) -> bool:
        return all(variables[f].fixed and values[f] == variables[f].top for f in res.fields if f in states)

    if taken:  # the sums the taken misreads explain hold now: the suspects among what is still broken
        broken = [r for r in hard if r.holds(values) is False]
        suspects = _misread_suspects(broken, hard, values, states, form_error) if broken else {}
    for res in rule_results:
        if res.status != "fail" or res.rule in ("R14", "R15"):
            continue
        involved = [f for f in res.fields if f in states]
        if res.severity == "soft":
            for f in involved:
                states[f].reasons.append(f"rule_flagged:{res.name}")
            continue
        explained = [f for f in involved if f in suspects]
        if explained:
            res.message += "; " + ", ".join(f"{f} may read {suspects[f][0]} (misread suspected)" for f in explained)
        for f in involved:
            if f in suspects:
                states[f].reasons.append("misread_suspected")
            elif confident(res) and not explained:
                states[f].reasons.append("form_inconsistent")
            states[f].reasons.append(f"rule_failed:{res.name}")

    fields: dict[str, FieldReading] = {}
    for qid, st in states.items():
        v = values[qid]
        spec = st.inp.spec
        if st.unreadable is not None:
            chosen = st.dist.classes.get(None) if st.dist is not None else None
            if chosen is None and st.probs is not None and len(st.probs) > 1:
                chosen = best_spelling(st.probs, None)
            reasons = [st.unreadable, *st.reasons]
            fields[qid] = _reading(st, spec, None, chosen, 0.0, "unreadable", reasons, [], settings)
            continue
        conf = sol.confidence[qid]
        alts = [(u, p) for u, p in sol.posterior[qid] if u != v][:3]
        if qid in taken:  # the posterior that the sums' value is right, against what was read
            conf = taken[qid].share
            alts = [(taken[qid].read, 1.0 - conf), *[(u, p) for u, p in alts if u != taken[qid].read]][:3]
        elif qid in culprit_share:  # the posterior that this reading, not the taken one, is the misread
            conf = min(conf, 1.0 - culprit_share[qid])
        chosen = st.dist.classes.get(v)
        if chosen is None:  # a value the exact sums listed but the box enumeration did not
            chosen = best_spelling(st.probs, v)  # type: ignore[arg-type]
        # A correction is accepted only when its posterior clears the stricter bar and it changes no box the reader
        # was sure of: the rules may settle an ambiguous box, never overrule a confident one.
        corrected = v != st.own_top
        corrected_ok = (
            corrected
            and conf >= settings.routing.accept_corrected_confidence
            and not _overrules_a_sure_box(st.probs, chosen, threshold)  # type: ignore[arg-type]
        )
        if corrected:
            st.reasons.append("corrected_by_rules")
        if qid in sol.limited:
            st.reasons.append("search_limit")
        if conf < threshold:
            st.reasons.append("low_confidence")
        blocking = [
            r for r in st.reasons
            if not r.startswith(NON_BLOCKING_PREFIXES) and not (r == "corrected_by_rules" and corrected_ok)
        ]  # fmt: skip
        status = "needs_review" if blocking else "accepted"
        fields[qid] = _reading(st, spec, v, chosen, conf, status, st.reasons, alts, settings)

    if fields and all(f.status == "accepted" for f in fields.values()) and audit_selected(
        form_id, settings.routing.audit_sample_rate
    ):
        for f in fields.values():
            f.status = "needs_review"
            f.reasons.append("audit_sample")

    return PageDecode(fields=fields, rules=rule_results, status=page_status(fields.values()), reasons=_page_reasons(fields))


def _dedupe(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _reading(
    st: _FieldState,
    spec: FieldSpec,
    value: int | None,
    chosen: tuple[str, ...] | None,
    conf: float,
    status: str,
    reasons: Sequence[str],
    alts: Sequence[tuple[int | None, float]],
    settings: Settings,
) -> FieldReading:
    boxes = _box_readings(st, chosen, settings.reader.topk)
    return FieldReading.model_validate(
        {
            "id": st.inp.qid,
            "label": spec.label,
            "value": value,
            "text": "".join(b["char"] for b in boxes) if boxes else "?" * len(spec.boxes),
            "confidence": round(float(conf), 6),
            "status": status,
            "reasons": _dedupe(reasons),
            "boxes": boxes,
            "alternatives": [_cand("?" if u is None else str(u), p) for u, p in alts],
            "omr": st.inp.omr,
        }
    )


def page_status(fields) -> str:
    fields = list(fields)
    if not fields or all(f.status == "unreadable" for f in fields):
        return "unreadable"
    if all(f.status == "accepted" for f in fields):
        return "accepted"
    return "needs_review"


def _page_reasons(fields: dict[str, FieldReading]) -> list[str]:
    return sorted({r for f in fields.values() for r in f.reasons})


def decode_page(
    template: Template,
    evidence: dict[str, list[BoxEvidence]],
    omr: dict[str, OmrReading],
    *,
    profile: ElectionProfile,
    settings: Settings,
    form_id: str | None = None,
    calibration: Calibration | None = None,
) -> PageDecode:
    """Decode one page's fields jointly under its rules (see the module docstring)."""
    inputs = [
        FieldInput(
            qid=f.id,
            spec=f,
            boxes=evidence.get(f.id),
            omr=omr.get(f.id),
            row_totals=_row_evidence(evidence, f),
        )
        for f in template.fields
    ]
    rules = _page_rules_cached(template, profile)
    return decode_fields(inputs, rules, settings=settings, form_id=form_id, calibration=calibration)


_RULE_CACHE: dict[tuple[int, ElectionProfile], tuple[Template, list[Rule]]] = {}


def _page_rules_cached(template: Template, profile: ElectionProfile) -> list[Rule]:
    # Templates and profiles are immutable; the identity check guards against a recycled id().
    key = (id(template), profile)
    hit = _RULE_CACHE.get(key)
    if hit is None or hit[0] is not template:
        if len(_RULE_CACHE) > 256:
            _RULE_CACHE.clear()
        hit = _RULE_CACHE[key] = (template, page_rules(template, profile))
    return hit[1]


def _row_evidence(evidence: dict[str, list[BoxEvidence]], f: FieldSpec) -> list[list[BoxEvidence]] | None:
    if not f.row_totals:
        return None
    rows = [evidence.get(f.row_total_id(i)) for i in range(len(f.row_totals))]
    if any(r is None for r in rows):
        return None
    return rows  # type: ignore[return-value]


__all__ = [
    "BoxEvidence",
    "FieldDist",
    "FieldInput",
    "LinearRule",
    "PageDecode",
    "audit_selected",
    "decode_fields",
    "decode_page",
    "evidence_from_record",
    "field_distribution",
    "probs_from_topk",
    "value_of",
    "value_probability",
]
