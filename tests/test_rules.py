"""Consistency rules built from template constraints and election profiles (ocr/rules.py)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, strategies as st

from ocr.config import Settings
from ocr.errors import TemplateError
from ocr.rules import CATALOGUE, LinearRule, RangeRule, bind_constraint, page_rules
from ocr.templates import get_template, list_templates
from ocr.templates.schema import Constraint

SETTINGS = Settings()


def reserve_rule(profile_name: str) -> LinearRule:
    c = Constraint(
        name="R12_reserve", rule="R12", severity="soft", lhs=["II.1"], op="<=", rhs=["I.A.LP"],
        rhs_plus_fraction_param="reserve_ballot_pct",
    )  # fmt: skip
    return bind_constraint(c, SETTINGS.profile(profile_name))


def test_catalogue_names_r1_to_r16_and_the_date_rule():
    assert list(CATALOGUE) == [f"R{i}" for i in range(1, 18)]


@pytest.mark.parametrize(
    "day,month,year,ok",
    [(17, 4, 2019, True), (18, 4, 2019, True), (11, 4, 2019, False), (17, 7, 2019, False), (17, 4, 2014, False),
     (None, 4, 2019, None)],
)  # fmt: skip
def test_a_c1_is_dated_polling_day_or_the_day_after(day, month, year, ok):
    from ocr.rules import page_rules
    from ocr.templates import get_template

    t = get_template("ppwp-2019-c1-l2")
    (rule,) = [r for r in page_rules(t, SETTINGS.profile(t.election)) if r.rule == "R17"]
    assert rule.severity == "hard" and rule.fields == ("tanggal", "bulan", "tahun")
    values = {"tanggal": day, "bulan": month, "tahun": year}
    assert rule.holds(values) is ok
    res = rule.result(values)
    assert res.status == {True: "pass", False: "fail", None: "pending"}[ok]
    if ok is False:
        assert "17-04-2019 or 18-04-2019" in res.message


def test_pages_without_date_boxes_have_no_date_rule():
    from ocr.rules import page_rules
    from ocr.templates import get_template

    t = get_template("ppwp-2024-plano-p2")
    assert not [r for r in page_rules(t, SETTINGS.profile(t.election)) if r.rule == "R17"]


@pytest.mark.parametrize(
    "profile,dpt,limit",
    [("pemilu_2024", 250, 255), ("pemilu_2024", 251, 257), ("pemilu_2024", 300, 306), ("pilkada_2024", 600, 615),
     ("pilkada_2024", 41, 43)],
)  # fmt: skip
def test_reserve_is_a_fraction_of_dpt_rounded_up(profile, dpt, limit):
    r = reserve_rule(profile)
    assert r.holds({"II.1": limit, "I.A.LP": dpt}) is True
    assert r.holds({"II.1": limit + 1, "I.A.LP": dpt}) is False


@pytest.mark.parametrize(
    "profile,cap,with_reserve",
    [("pemilu_2024", 300, 306), ("pilkada_2020", 500, 513), ("pilkada_2024", 600, 615)],
)  # fmt: skip
def test_caps_come_from_the_election_profile(profile, cap, with_reserve):
    """The DPT is held to the TPS cap (R11); every other count to the cap plus the reserve ballots, rounded up (R10):
    ballots received include the reserve, and the DPTb / DPK voters on top of the DPT vote with it."""
    t = get_template("ppwp-2024-plano-p1")
    rules = {r.name: r for r in page_rules(t, SETTINGS.profile(profile))}
    r11 = rules["R11_dpt_cap"]
    assert r11.holds({"I.A.LP": cap}) is True and r11.holds({"I.A.LP": cap + 1}) is False
    assert rules["R10_cap:I.A.L"].hi == cap  # the DPT's own columns too
    r10 = rules["R10_voters_cap"]
    assert r10.holds({"I.B4.LP": with_reserve}) is True and r10.holds({"I.B4.LP": with_reserve + 1}) is False
    assert f"{with_reserve + 1} vs {with_reserve}" in r10.result({"I.B4.LP": with_reserve + 1}).message
    # every field with cap_param is capped, once (the template's own R10 constraint is not duplicated)
    assert "R10_cap:I.B4.LP" not in rules
    assert rules["R10_cap:II.1"].hi == rules["R10_cap:II.3"].hi == with_reserve


@pytest.mark.parametrize("template_id", ["ppwp-2024-plano-p1", "kwk-2024-3-p1"])
def test_a_full_tps_with_every_reserve_ballot_breaks_no_rule(template_id):
    """DPT at the cap, every reserve ballot received, and DPTb / DPK voters using some of them: a legal form."""
    t = get_template(template_id)
    profile = SETTINGS.profile(t.election)
    cap = profile.max_voters_per_tps
    received = cap + math.ceil(cap * profile.reserve_ballot_pct)
    a = "I.A" if template_id.startswith("ppwp") else "I.A1"
    extra_voters = received - cap - 1  # all but one reserve ballot used, by voters on top of the DPT
    values = {f.id: 0 for f in t.fields}
    values.update({f"{a}.L": cap // 2, f"{a}.P": cap - cap // 2, f"{a}.LP": cap})
    if a == "I.A1":  # KWK: A.4 = A.1 + A.2 + A.3, the DPTb voters (A.3) registered on top
        values.update({"I.A3.L": extra_voters, "I.A3.LP": extra_voters, "I.A4.L": cap // 2 + extra_voters,
                       "I.A4.P": cap - cap // 2, "I.A4.LP": cap + extra_voters})  # fmt: skip
    voters = cap - 2 + extra_voters
    values.update({
        "I.B1.L": cap // 2 - 2, "I.B1.P": cap - cap // 2, "I.B1.LP": cap - 2,
        "I.B3.L": extra_voters, "I.B3.LP": extra_voters,
        "I.B4.L": cap // 2 - 2 + extra_voters, "I.B4.P": cap - cap // 2, "I.B4.LP": voters,
        "II.1": received, "II.2": voters, "II.4": received - voters,
    })  # fmt: skip
    failed = [r.name for r in page_rules(t, profile) if r.severity == "hard" and r.holds(values) is False]
    assert voters > cap and failed == []
    over = {**values, f"{a}.P": values[f"{a}.P"] + 1, f"{a}.LP": cap + 1}  # one DPT voter over the cap
    assert "R11_dpt_cap" in [r.name for r in page_rules(t, profile) if r.holds(over) is False]


def test_failed_rule_reports_fields_numbers_and_message():
    t = get_template("ppwp-2024-plano-p1")
    r = next(r for r in page_rules(t, SETTINGS.profile("pemilu_2024")) if r.name == "R3_B4_LP")
    res = r.result({"I.B1.LP": 10, "I.B2.LP": 2, "I.B3.LP": 1, "I.B4.LP": 14})
    assert (res.status, res.rule, res.severity) == ("fail", "R3", "hard")
    assert res.fields == ["I.B1.LP", "I.B2.LP", "I.B3.LP", "I.B4.LP"]
    assert res.values["I.B4.LP"] == 14 and "13" in res.message and "14" in res.message
    assert r.result({"I.B1.LP": 10, "I.B2.LP": 2, "I.B3.LP": 1, "I.B4.LP": 13}).status == "pass"
    pending = r.result({"I.B1.LP": 10, "I.B2.LP": None, "I.B3.LP": 1, "I.B4.LP": 13})
    assert pending.status == "pending" and "I.B2.LP" in pending.message


def test_date_fields_have_their_own_range():
    t = get_template("ppwp-2024-plano-p3")
    rules = {r.name: r for r in page_rules(t, SETTINGS.profile("pemilu_2024"))}
    day = rules["R1_range:tanggal"]
    assert isinstance(day, RangeRule)
    assert day.holds({"tanggal": 0}) is False and day.holds({"tanggal": 14}) is True and day.holds({"tanggal": 32}) is False
    assert "R10_cap:tanggal" not in rules  # dates are not counts


def test_unknown_profile_parameter_is_a_template_error():
    c = Constraint(name="x", rule="R10", severity="hard", lhs=["a"], op="<=", rhs_param="no_such_param")
    with pytest.raises(TemplateError, match="no_such_param"):
        bind_constraint(c, SETTINGS.profile("pemilu_2024"))


@pytest.mark.parametrize("template", list_templates(), ids=lambda t: t.id)
def test_every_builtin_template_binds_to_its_profile(template):
    rules = page_rules(template, SETTINGS.profile(template.election))
    assert all(r.rule in CATALOGUE for r in rules)
    assert {f.id for f in template.fields} <= {f for r in rules for f in r.fields}


@given(st.lists(st.integers(0, 999), min_size=4, max_size=4))
def test_sum_rule_holds_exactly_when_the_sum_matches(xs):
    r = LinearRule(name="s", rule="R3", severity="hard", lhs=("a", "b", "c"), op="==", rhs=("d",))
    vals = dict(zip("abcd", xs))
    assert r.holds(vals) == (xs[0] + xs[1] + xs[2] == xs[3])
