"""Consistency rules R1-R16 (domain.md §4), and R17 (the date), as named, versioned rule objects over field ids.

Rules are built from data, never from template ids:
- each template `Constraint` (`sum(lhs) OP sum(rhs)`, or `OP profile parameter`, optionally with the reserve
  fraction `rhs_plus_fraction_param` rounded up) becomes a `LinearRule`;
- each field's own range `[min, max]` becomes an R1 `RangeRule`, and its `cap_param` an R10 `RangeRule` against the
  election profile, grown by `cap_plus_fraction_param` of itself rounded up (the reserve ballots; skipped when a
  template constraint already caps that field with the same parameter);
- the date fields (kinds date_day / date_month / date_year) become one R17 `DateRule`: polling day or the next;
- R14 (OMR and tally-row totals against the digits), R15 (filler placement) and R16 (pages present) are structural:
  ocr/decode.py and ocr/tps.py report them with `structural_result`.

A rule's `holds(values)` is True / False, or None when a value it needs is missing (an unreadable field, a page not
read yet); `result(values)` gives the `RuleResult` of the JSON output, with the numbers that failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal, Mapping, Protocol, Sequence

from ocr.config import ElectionProfile
from ocr.errors import TemplateError
from ocr.results import RuleResult
from ocr.templates.schema import Constraint, Template

RULES_VERSION = "1.1.0"

Severity = Literal["hard", "soft", "cross_check"]
Values = Mapping[str, int | None]


@dataclass(frozen=True)
class RuleInfo:
    id: str
    title: str
    severity: Severity


# domain.md §4. The severity here is the default; a template constraint states its own.
CATALOGUE: dict[str, RuleInfo] = {
    r.id: r
    for r in [
        RuleInfo("R1", "each number within its field's range (0-999 for 3 boxes)", "hard"),
        RuleInfo("R2", "L + P = L+P for every row of I and III", "hard"),
        RuleInfo("R3", "B4 = B1 + B2 + B3 (per column)", "hard"),
        RuleInfo("R4", "voters from DPT <= DPT", "hard"),
        RuleInfo("R5", "ballots received = used + returned + unused", "hard"),
        RuleInfo("R6", "ballots used = voters who voted", "hard"),
        RuleInfo("R7", "total valid = sum of paslon votes", "hard"),
        RuleInfo("R8", "total = valid + invalid", "hard"),
        RuleInfo("R9", "total votes = voters who voted", "soft"),
        RuleInfo("R10", "every count <= TPS cap + reserve ballots", "hard"),
        RuleInfo("R11", "DPT <= TPS cap", "hard"),
        RuleInfo("R12", "ballots received <= DPT + reserve", "soft"),
        RuleInfo("R13", "disabled voters <= voters", "soft"),
        RuleInfo("R14", "independent readings agree (OMR bubbles, tally-row totals vs digits)", "cross_check"),
        RuleInfo("R15", "X, dash or blank only in leading boxes", "hard"),
        RuleInfo("R16", "all pages of the form present, each in its slot", "hard"),
        # Not in domain.md's list: the date boxes are numbers the reader must not accept when impossible either.
        RuleInfo("R17", "the form is dated polling day or the day after (counting past midnight)", "hard"),
    ]
}


class Rule(Protocol):
    name: str
    rule: str
    severity: Severity
    version: str

    @property
    def fields(self) -> tuple[str, ...]: ...

    def holds(self, values: Values) -> bool | None: ...

    def result(self, values: Values) -> RuleResult: ...


def _param(profile: ElectionProfile, name: str, where: str) -> float:
    value = getattr(profile, name, None)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TemplateError(f"{where}: election profile {profile.name!r} has no numeric parameter {name!r}")
    return value


def _grown(n: int, fraction: float | None) -> int:
    """n plus `fraction` of it, rounded up (the reserve ballots on top of a cap or a DPT)."""
    # round() first: 0.02 * 250 is 5.000000000000001 in floating point, which must not ceil to 6
    return n + math.ceil(round(fraction * n, 9)) if fraction else n


def _missing(fields: Sequence[str], values: Values) -> list[str]:
    return [f for f in fields if values.get(f) is None]


@dataclass(frozen=True)
class LinearRule:
    """`sum(lhs) OP sum(rhs) [+ ceil(fraction * sum(rhs))]`, or `sum(lhs) OP constant`."""

    name: str
    rule: str
    severity: Severity
    lhs: tuple[str, ...]
    op: Literal["==", "<=", ">="]
    rhs: tuple[str, ...] = ()
    constant: int | None = None  # from rhs_param
    fraction: float | None = None  # from rhs_plus_fraction_param
    description: str = ""
    version: str = RULES_VERSION

    @property
    def fields(self) -> tuple[str, ...]:
        return self.lhs + self.rhs

    def sides(self, values: Values) -> tuple[int, int] | None:
        if _missing(self.fields, values):
            return None
        left = sum(values[f] for f in self.lhs)  # type: ignore[misc]
        if self.constant is not None:
            return left, self.constant
        return left, _grown(sum(values[f] for f in self.rhs), self.fraction)  # type: ignore[misc]

    def holds(self, values: Values) -> bool | None:
        s = self.sides(values)
        if s is None:
            return None
        left, right = s
        if self.op == "==":
            return left == right
        if self.op == "<=":
            return left <= right
        return left >= right

    def result(self, values: Values) -> RuleResult:
        vals = {f: values.get(f) for f in self.fields}
        ok = self.holds(values)
        if ok is None:
            missing = _missing(self.fields, values)
            return RuleResult(
                name=self.name, rule=self.rule, severity=self.severity, status="pending", fields=list(self.fields),
                values=vals, message=f"not checked: no value for {', '.join(missing)}",
            )
        left, right = self.sides(values)  # type: ignore[misc]
        rhs_text = str(self.constant) if self.constant is not None else " + ".join(self.rhs)
        if self.fraction:
            rhs_text = f"({rhs_text}) + ceil({self.fraction:g} x ({rhs_text}))"
        expr = f"{' + '.join(self.lhs)} {self.op} {rhs_text}"
        if ok:
            return RuleResult(
                name=self.name, rule=self.rule, severity=self.severity, status="pass", fields=list(self.fields),
                values=vals, message=f"{expr}: {left} {self.op} {right}",
            )
        return RuleResult(
            name=self.name, rule=self.rule, severity=self.severity, status="fail", fields=list(self.fields), values=vals,
            message=f"{self.description or expr} fails: {expr} gives {left} vs {right}",
        )


@dataclass(frozen=True)
class RangeRule:
    """`lo <= value <= hi` for one field (R1 from the field's own range, R10 from the profile cap)."""

    name: str
    rule: str
    severity: Severity
    field: str
    lo: int
    hi: int
    description: str = ""
    version: str = RULES_VERSION

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    def holds(self, values: Values) -> bool | None:
        v = values.get(self.field)
        if v is None:
            return None
        return self.lo <= v <= self.hi

    def result(self, values: Values) -> RuleResult:
        v = values.get(self.field)
        ok = self.holds(values)
        status = "pending" if ok is None else ("pass" if ok else "fail")
        if ok is None:
            msg = f"not checked: no value for {self.field}"
        elif ok:
            msg = f"{self.lo} <= {v} <= {self.hi}"
        else:
            msg = f"{self.description or 'out of range'}: {self.field} = {v} is outside [{self.lo}, {self.hi}]"
        return RuleResult(
            name=self.name, rule=self.rule, severity=self.severity, status=status, fields=[self.field],
            values={self.field: v}, message=msg,
        )


DATE_PARTS = ("date_day", "date_month", "date_year")  # FieldSpec.kind of the date boxes, in (day, month, year) order


@dataclass(frozen=True)
class DateRule:
    """R17: the date fields of a page read as polling day or the day after. Only the parts a page has are checked."""

    name: str
    rule: str
    severity: Severity
    parts: tuple[tuple[int, str], ...]  # (position in (day, month, year), field id)
    allowed: tuple[tuple[int, int, int], ...]  # (day, month, year)
    version: str = RULES_VERSION

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for _, f in self.parts)

    def holds(self, values: Values) -> bool | None:
        if _missing(self.fields, values):
            return None
        return any(all(values[f] == d[i] for i, f in self.parts) for d in self.allowed)

    def result(self, values: Values) -> RuleResult:
        vals = {f: values.get(f) for f in self.fields}
        ok = self.holds(values)
        status = "pending" if ok is None else ("pass" if ok else "fail")
        days = " or ".join(f"{d:02d}-{m:02d}-{y}" for d, m, y in self.allowed)
        read = "-".join("?" if values.get(f) is None else str(values.get(f)) for f in self.fields)
        msg = {None: "not checked: a date part has no value", True: f"dated {read}", False: f"dated {read}, not {days}"}
        return RuleResult(
            name=self.name, rule=self.rule, severity=self.severity, status=status, fields=list(self.fields),
            values=vals, message=msg[ok],
        )


def date_rule(template: Template, profile: ElectionProfile, *, qualify: str = "") -> DateRule | None:
    if profile.polling_day is None:
        return None
    parts = tuple(
        (DATE_PARTS.index(f.kind), qualify + f.id) for f in template.fields if f.kind in DATE_PARTS
    )
    if not parts:
        return None
    days = (profile.polling_day, profile.polling_day + timedelta(days=1))
    allowed = tuple((d.day, d.month, d.year) for d in days)
    return DateRule(f"R17_polling_date:{qualify}date", "R17", "hard", tuple(sorted(parts)), allowed)


def bind_constraint(c: Constraint, profile: ElectionProfile, *, qualify: str = "") -> LinearRule:
    """A template (or form-set) constraint with its election parameters filled in; `qualify` prefixes field ids."""
    where = f"constraint {c.name!r}"
    constant = None
    fraction = None
    if c.rhs_plus_fraction_param is not None:
        fraction = float(_param(profile, c.rhs_plus_fraction_param, where))
    if c.rhs_param is not None:
        constant = _grown(int(math.floor(_param(profile, c.rhs_param, where))), fraction)
        fraction = None  # folded into the constant
    return LinearRule(
        name=c.name,
        rule=c.rule,
        severity=c.severity,
        lhs=tuple(qualify + f for f in c.lhs),
        op=c.op,
        rhs=tuple(qualify + f for f in c.rhs),
        constant=constant,
        fraction=fraction,
        description=c.description,
    )


def page_rules(template: Template, profile: ElectionProfile, *, qualify: str = "") -> list[Rule]:
    """Every rule of one page: its constraints, plus per-field R1 ranges and R10 caps."""
    rules: list[Rule] = [bind_constraint(c, profile, qualify=qualify) for c in template.constraints]
    capped_by_constraint = {
        (c.lhs[0], c.rhs_param) for c in template.constraints if len(c.lhs) == 1 and c.rhs_param and c.op == "<="
    }
    for f in template.fields:
        fid = qualify + f.id
        rules.append(RangeRule(f"R1_range:{fid}", "R1", "hard", fid, f.min, f.max, "value outside the field's range"))
        if f.cap_param and (f.id, f.cap_param) not in capped_by_constraint:
            where = f"field {f.id!r}"
            fraction = _param(profile, f.cap_plus_fraction_param, where) if f.cap_plus_fraction_param else None
            cap = _grown(int(math.floor(_param(profile, f.cap_param, where))), fraction)
            above = f"above {f.cap_param}" + (f" + {f.cap_plus_fraction_param}" if fraction else "")
            rules.append(RangeRule(f"R10_cap:{fid}", "R10", "hard", fid, f.min, cap, above))
    dated = date_rule(template, profile, qualify=qualify)
    if dated is not None:
        rules.append(dated)
    return rules


def structural_result(
    name: str, rule: str, *, ok: bool | None, fields: Sequence[str], values: Values | None = None, message: str = ""
) -> RuleResult:
    """A RuleResult for the structural rules (R14, R15, R16) that decode/tps check themselves."""
    status = "pending" if ok is None else ("pass" if ok else "fail")
    return RuleResult(
        name=name, rule=rule, severity=CATALOGUE[rule].severity, status=status, fields=list(fields),
        values=dict(values or {}), message=message,
    )
