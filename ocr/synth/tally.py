"""A consistent TPS tally for a whole form set, and real KPPS arithmetic mistakes.

One simulated polling station (DPT by sex, voters per voter list, ballots, votes per paslon, invalid votes, date)
is drawn from the election profile, then written into the fields of every page of the form set. Field ids are
matched to those quantities by name (PPWP 2024 `I.B4.LP`, 2019/2014 `suara_sah_paslon_01`, ...); any field left
over that is the single side of an `==` constraint is derived from the other side, and everything is checked with
`evaluate_constraints`, so a template whose naming the model does not know still gets honest consistency truth.

Values are keyed by qualified ids "<page>:<field id>", as in FormSet constraints.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ocr.config import ElectionProfile, get_settings
from ocr.synth.truth import ConstraintTruth, MistakeTruth
from ocr.templates import get_form_set, get_template, list_form_sets
from ocr.templates.schema import Constraint, FormSet, Template


def qualify(page: int, field_id: str) -> str:
    return f"{page}:{field_id}"


def pages_of(set_or_template: str) -> tuple[FormSet | None, list[Template]]:
    """The form set a template belongs to and its page templates (a lone template is a one-page set)."""
    t = get_template(set_or_template)
    try:
        fs = get_form_set(t.form_set)
    except Exception:  # a template whose set document is missing: treat it as a one-page form
        return None, [t]
    return fs, [get_template(p.template) for p in sorted(fs.pages, key=lambda p: p.page)]


def _rhs_value(c: Constraint, values: dict[str, int], profile: ElectionProfile, qual) -> float:
    if c.rhs_param:
        return float(getattr(profile, c.rhs_param))
    base = sum(values[qual(f)] for f in c.rhs)
    if c.rhs_plus_fraction_param:
        base += math.ceil(base * float(getattr(profile, c.rhs_plus_fraction_param)))
    return float(base)


def constraint_holds(c: Constraint, values: dict[str, int], profile: ElectionProfile, qual=lambda f: f) -> bool | None:
    """Evaluate `sum(lhs) op rhs`; None when a value it needs is missing."""
    try:
        lhs = float(sum(values[qual(f)] for f in c.lhs))
        rhs = _rhs_value(c, values, profile, qual)
    except KeyError:
        return None
    if c.op == "==":
        return lhs == rhs
    if c.op == "<=":
        return lhs <= rhs
    return lhs >= rhs


def all_constraints(templates: list[Template], fs: FormSet | None) -> list[tuple[Constraint, callable]]:
    """(constraint, qualifier) for every page constraint and every cross-page constraint of the set."""
    out = []
    for t in templates:
        out.extend((c, (lambda f, p=t.page: qualify(p, f))) for c in t.constraints)
    if fs is not None:
        out.extend((c, (lambda f: f)) for c in fs.constraints)
    return out


def evaluate_constraints(
    templates: list[Template], fs: FormSet | None, values: dict[str, int], profile: ElectionProfile
) -> list[ConstraintTruth]:
    res = []
    for c, qual in all_constraints(templates, fs):
        h = constraint_holds(c, values, profile, qual)
        if h is None:
            continue
        res.append(ConstraintTruth(name=c.name, rule=c.rule, severity=c.severity, holds=h))
    return res


# --- the simulated polling station ------------------------------------------------------------------------------


@dataclass
class Station:
    dpt: tuple[int, int]  # L, P
    voters: list[tuple[int, int]]  # per voter list (DPT, DPTb, DPK / DPPh ...), L and P
    disabled: tuple[int, int]
    received: int
    returned: int
    paslon_votes: list[int]
    invalid: int
    date: tuple[int, int, int]
    registered_extra: list[tuple[int, int]] = field(default_factory=list)  # DPPh / DPTb lists (KWK rows A.2, A.3)

    @property
    def voters_total(self) -> int:
        return sum(l + p for l, p in self.voters)

    @property
    def valid(self) -> int:
        return sum(self.paslon_votes)


def draw_station(rng: np.random.Generator, profile: ElectionProfile, n_paslon: int, field_max: int = 999) -> Station:
    cap = min(profile.max_voters_per_tps, field_max)
    reserve = profile.reserve_ballot_pct
    while True:
        dpt_total = int(rng.integers(max(40, cap // 3), cap + 1))
        dpt_l = int(rng.binomial(dpt_total, rng.uniform(0.46, 0.54)))
        dpt = (dpt_l, dpt_total - dpt_l)
        turnout = rng.uniform(0.55, 0.95)
        b1 = (int(rng.binomial(dpt[0], turnout)), int(rng.binomial(dpt[1], turnout)))
        extra_lists = [(int(rng.integers(0, 9)), int(rng.integers(0, 9))), (int(rng.integers(0, 5)), int(rng.integers(0, 5)))]
        if rng.random() < 0.3:
            extra_lists = [(0, 0), (0, 0)]
        voters = [b1, *extra_lists]
        total = sum(l + p for l, p in voters)
        received = dpt_total + math.ceil(dpt_total * reserve)
        returned = int(rng.choice([0, 0, 0, 1, 1, 2, 3]))
        if total > cap or total + returned > received:
            continue
        invalid = int(min(total, rng.choice([0, 1, 2, 3, 5, 8, 12, 20])))
        valid = total - invalid
        shares = rng.dirichlet(np.full(n_paslon, 1.2)) if n_paslon > 0 else np.zeros(0)
        votes = np.floor(shares * valid).astype(int) if n_paslon > 0 else np.zeros(0, int)
        if n_paslon > 0:
            votes[int(rng.integers(n_paslon))] += valid - int(votes.sum())
        registered_extra = [(l + int(rng.integers(0, 3)), p + int(rng.integers(0, 3))) for l, p in extra_lists]
        dis_l = int(rng.integers(0, min(4, b1[0]) + 1))
        dis_p = int(rng.integers(0, min(4, b1[1]) + 1))
        return Station(
            dpt=dpt,
            voters=voters,
            disabled=(dis_l, dis_p),
            received=received,
            returned=returned,
            paslon_votes=[int(v) for v in votes],
            invalid=invalid,
            date=(0, 0, 0),
            registered_extra=registered_extra,
        )


_PASLON_RES = [
    re.compile(r"^IV\.(\d+)$"),
    re.compile(r"paslon_?0*(\d+)$"),
    re.compile(r"^paslon\.?0*(\d+)$"),
    re.compile(r"candidate_?0*(\d+)$"),
]


def paslon_number(field_id: str) -> int | None:
    for r in _PASLON_RES:
        m = r.search(field_id)
        if m:
            return int(m.group(1))
    return None


def _semantic_value(fid: str, st: Station, kolom_kosong_votes: int | None) -> int | None:
    """The station quantity a field id names, or None when the name is not known."""
    low = fid.lower()
    sex = {"L": 0, "P": 1}
    m = re.match(r"^I\.(A|A[1-4]|B[1-4])\.(L|P|LP)$", fid)
    if m:
        row, col = m.groups()
        if row in ("A", "A1"):
            pair = st.dpt
        elif row == "A4":  # KWK: all registered voters, A.1 + A.2 + A.3
            lists = [st.dpt, *st.registered_extra]
            pair = (sum(v[0] for v in lists), sum(v[1] for v in lists))
        elif row in ("A2", "A3"):
            pair = st.registered_extra[int(row[1]) - 2]
        elif row == "B4":
            pair = (sum(v[0] for v in st.voters), sum(v[1] for v in st.voters))
        else:
            pair = st.voters[int(row[1]) - 1]
        return pair[0] + pair[1] if col == "LP" else pair[sex[col]]
    m = re.match(r"^III\.(L|P|LP)$", fid)
    if m:
        col = m.group(1)
        return sum(st.disabled) if col == "LP" else st.disabled[sex[col]]
    if fid == "II.1":
        return st.received
    if fid == "II.2":
        return st.voters_total
    if fid == "II.3":
        return st.returned
    if fid == "II.4":
        return st.received - st.voters_total - st.returned
    if "kosong" in low:
        return kolom_kosong_votes
    n = paslon_number(fid)
    n_paslon = len(st.paslon_votes) - (1 if kolom_kosong_votes is not None else 0)
    if n is not None and 1 <= n <= n_paslon:
        return st.paslon_votes[n - 1]
    if fid == "V.A" or ("suara_sah" in low and "tidak" not in low and "dan" not in low and "paslon" not in low):
        return st.valid
    if fid == "V.B" or "tidak_sah" in low and "dan" not in low:
        return st.invalid
    if fid == "V.C" or "sah_dan_tidak_sah" in low or "total" in low:
        return st.valid + st.invalid
    if low in ("tanggal", "day"):
        return st.date[0]
    if low in ("bulan", "month"):
        return st.date[1]
    if low in ("tahun", "year"):
        return st.date[2]
    return None


@dataclass
class FormTally:
    form_set: str
    values: dict[str, int]  # qualified id -> written value
    intended: dict[str, int]  # qualified id -> the consistent value
    checks: list[ConstraintTruth]
    mistake: MistakeTruth | None

    @property
    def consistent(self) -> bool:
        return all(c.holds for c in self.checks)

    @property
    def broken(self) -> list[str]:
        return [c.name for c in self.checks if not c.holds]


def _derive_from_equalities(
    templates: list[Template], fs: FormSet | None, values: dict[str, int], unknown: set[str]
) -> None:
    """Fill unknown fields that are the single side of an `==` constraint (a printed total) from the other side."""
    cons = [(c, q) for c, q in all_constraints(templates, fs) if c.op == "==" and c.rhs]
    for _ in range(4):
        changed = False
        for c, q in cons:
            lhs, rhs = [q(f) for f in c.lhs], [q(f) for f in c.rhs]
            for single, other in ((rhs, lhs), (lhs, rhs)):
                if len(single) == 1 and single[0] in unknown and all(o in values and o not in unknown for o in other):
                    values[single[0]] = sum(values[o] for o in other)
                    unknown.discard(single[0])
                    changed = True
        if not changed:
            break


def _clamp_to_field(t: Template, fid: str, v: int) -> int:
    f = t.field(fid)
    return int(min(max(v, f.min), f.max))


def _inject_mistake(
    rng: np.random.Generator, templates: list[Template], fs: FormSet | None, values: dict[str, int], profile
) -> MistakeTruth | None:
    """Change one written number the way a tired KPPS member does; keep it only if some constraint breaks."""
    count_fields = [
        (t, f.id) for t in templates for f in t.fields if f.kind == "count" and any(
            f.id in (*c.lhs, *c.rhs) for c in t.constraints
        ) or (fs is not None and f.kind == "count" and any(
            qualify(t.page, f.id) in (*c.lhs, *c.rhs) for c in fs.constraints))
    ]
    if not count_fields:
        return None
    for _ in range(20):
        t, fid = count_fields[int(rng.integers(len(count_fields)))]
        q = qualify(t.page, fid)
        old = values[q]
        kind = str(rng.choice(["wrong_sum", "transposed", "off_by_one_row"]))
        if kind == "transposed":
            s = f"{old:03d}".lstrip("0") or "0"
            if len(s) < 2 or len(set(s)) < 2:
                continue
            i = int(rng.integers(len(s) - 1))
            if s[i] == s[i + 1]:
                continue
            s2 = s[:i] + s[i + 1] + s[i] + s[i + 2 :]
            new = int(s2)
        elif kind == "off_by_one_row":
            # the value of a neighbouring row copied into this one
            others = [values[qualify(t.page, f.id)] for f in t.fields if f.kind == "count" and f.id != fid]
            if not others:
                continue
            new = int(others[int(rng.integers(len(others)))])
        else:
            new = old + int(rng.choice([-10, -3, -2, -1, 1, 2, 3, 10]))
        new = _clamp_to_field(t, fid, new)
        if new == old:
            continue
        trial = dict(values)
        trial[q] = new
        checks = evaluate_constraints(templates, fs, trial, profile)
        if all(c.holds for c in checks):
            continue
        values[q] = new
        return MistakeTruth(kind=kind, field=q, intended=old, written=new)
    return None


def draw_form_tally(rng: np.random.Generator, template_id: str, mistake_rate: float = 0.0) -> FormTally:
    """Values for every field of every page of `template_id`'s form set."""
    fs, templates = pages_of(template_id)
    election = templates[0].election
    profile = get_settings().profile(election)
    paslon_ids = sorted(
        {paslon_number(f.id) for t in templates for f in t.fields if f.kind == "count" and paslon_number(f.id)}
    )
    n_paslon = max(paslon_ids) if paslon_ids else 0
    has_kosong = any("kosong" in f.id.lower() for t in templates for f in t.fields)
    field_max = min((f.max for t in templates for f in t.fields if f.kind == "count"), default=999)
    n_options = n_paslon + (1 if has_kosong else 0)
    st = draw_station(rng, profile, max(n_options, 1), field_max)
    # the "kolom kosong" (empty column of a single-candidate race) is the last option; it counts as valid votes
    kosong = st.paslon_votes[-1] if has_kosong else None
    # The forms are dated on polling day (R17 also allows the next day; a generated form keeps to the day itself).
    voting = profile.polling_day or date(2024, 2, 14)
    st.date = (voting.day, voting.month, voting.year)

    values: dict[str, int] = {}
    unknown: set[str] = set()
    for t in templates:
        for f in t.fields:
            q = qualify(t.page, f.id)
            v = _semantic_value(f.id, st, kosong)
            if v is None:
                unknown.add(q)
                v = int(rng.integers(f.min, min(f.max, 60) + 1)) if f.kind == "count" else f.min
            values[q] = int(min(max(v, f.min), f.max))
    _derive_from_equalities(templates, fs, values, unknown)
    intended = dict(values)
    mistake = None
    if mistake_rate > 0 and rng.random() < mistake_rate:
        mistake = _inject_mistake(rng, templates, fs, values, profile)
    checks = evaluate_constraints(templates, fs, values, profile)
    set_id = fs.id if fs is not None else templates[0].form_set
    return FormTally(form_set=set_id, values=values, intended=intended, checks=checks, mistake=mistake)


def known_form_sets() -> list[str]:
    return [fs.id for fs in list_form_sets()]
