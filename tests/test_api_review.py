"""Review queue: leases and their expiry, filters, decisions, blind double entry with arbitration, audit trail."""

from __future__ import annotations

from api.models import Decision, ReviewItem
from api_fixtures import FAR_TPS, api, make_photo, page_script  # noqa: F401 - api is a fixture

P2 = "ppwp-2024-plano-p2"


def _upload_with_review(api, fields: dict[str, list[str]], values: dict[str, int] | None = None) -> str:  # noqa: ANN001
    sid = api.upload(make_photo(page_script(P2, values or {}, fields))).json()["submission_id"]
    api.wait_jobs()
    return sid


def _next(api, who: str, **params):  # noqa: ANN001, ANN202
    return api.client.get("/api/v1/review/next", params=params, headers=api.auth(who))


def _decide(api, who: str, item_id: int, **body):  # noqa: ANN001, ANN202
    return api.client.post(f"/api/v1/review/items/{item_id}/decision", json=body, headers=api.auth(who))


def test_item_payload_has_crop_page_candidates_and_reasons(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.2": ["low_confidence", "omr_disagrees"]}, {"IV.2": 86})
    item = _next(api, "v1").json()
    assert item["field_id"] == "IV.2" and item["page"] == 2
    assert item["machine"]["value"] == 86 and item["machine"]["text"] == "086"
    assert item["machine"]["alternatives"] == [{"value": "886", "p": 0.3}]
    assert item["reasons"] == ["low_confidence", "omr_disagrees"]
    assert len(item["highlight_px"]) == 4
    crop = api.client.get(item["crop_url"], headers=api.auth("v1"))
    assert crop.status_code == 200 and crop.content.startswith(b"\x89PNG")
    page = api.client.get(item["page_url"], headers=api.auth("v1"))
    assert page.status_code == 200 and page.content.startswith(b"\xff\xd8")


def test_a_reading_taken_as_misread_comes_with_the_sums_that_ask_for_its_value(api) -> None:  # noqa: ANN001
    taken = ["misread_suspected", "corrected_by_rules", "low_confidence"]
    rules = [
        {"name": "R7_valid_sum", "rule": "R7", "severity": "hard", "status": "pass", "fields": ["IV.1", "IV.2", "IV.3", "V.A"],
         "message": "IV.1 + IV.2 + IV.3 == V.A: 300 == 300; IV.2 read 86, taken as 96 (misread suspected)"},
        {"name": "R10_paslon_1_cap", "rule": "R10", "severity": "hard", "status": "pass", "fields": ["IV.1"]},
        {"name": "R10_paslon_2_cap", "rule": "R10", "severity": "hard", "status": "pass", "fields": ["IV.2"]},
    ]  # fmt: skip
    sid = api.upload(make_photo(page_script(P2, {"IV.2": 96}, {"IV.2": taken, "IV.1": ["low_confidence"]}, rules=rules)))
    assert sid.status_code == 202, sid.text
    api.wait_jobs()
    seen = {}
    for _ in range(2):
        item = _next(api, "v1").json()
        seen[item["field_id"]] = item
        assert _decide(api, "v1", item["item_id"], action="skip").status_code == 200
    assert seen["IV.2"]["reasons"] == taken and seen["IV.2"]["failing_rules"] == []
    assert [r["name"] for r in seen["IV.2"]["misread_rules"]] == ["R7_valid_sum"]
    assert "IV.2 read 86, taken as 96" in seen["IV.2"]["misread_rules"][0]["message"]
    assert seen["IV.1"]["misread_rules"] == []  # a field that is only unsure gets no such rules


def test_two_verifiers_never_hold_the_same_item_and_leases_expire(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]})
    first = _next(api, "v1")
    assert first.status_code == 200
    assert _next(api, "v2").status_code == 204  # the only item is leased
    api.clock.advance(119)
    assert _next(api, "v2").status_code == 204
    api.clock.advance(2)  # past the 120 s lease
    second = _next(api, "v2")
    assert second.status_code == 200 and second.json()["item_id"] == first.json()["item_id"]
    # v1's lease is gone: its decision is refused, v2's is taken
    r = _decide(api, "v1", first.json()["item_id"], action="approve")
    assert r.status_code == 409 and r.json()["code"] == "not_leased"
    assert _decide(api, "v2", second.json()["item_id"], action="approve").json()["state"] == "resolved"


def test_decision_after_own_lease_expired_is_refused(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]})
    item = _next(api, "v1").json()
    api.clock.advance(121)
    r = _decide(api, "v1", item["item_id"], action="approve")
    assert r.status_code == 409 and r.json()["code"] == "lease_expired"


def test_filters_by_reason_and_region_and_scope(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"], "IV.3": ["rule_failed"]})
    assert _next(api, "v1", reason="rule_failed").json()["field_id"] == "IV.3"
    assert _next(api, "v2", reason="no_such_reason").status_code == 204
    assert _next(api, "v2", region="35").status_code == 204
    assert _next(api, "v_far").status_code == 204  # Jawa Timur verifier, Jawa Barat item
    assert _next(api, "v2", region="3201").json()["field_id"] == "IV.1"


def test_approve_and_single_entry_decisions(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]}, {"IV.1": 62})
    item = _next(api, "v1").json()
    r = _decide(api, "v1", item["item_id"], action="approve", note="clear 62")
    assert r.json() == {"item_id": item["item_id"], "state": "resolved", "final": {"action": "approve", "value": 62}}
    assert _next(api, "v2").status_code == 204
    r = _decide(api, "v1", item["item_id"], action="approve")
    assert r.status_code == 409 and r.json()["code"] == "item_closed"


def test_correction_of_a_count_needs_a_blind_second_entry(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]}, {"IV.1": 941})
    item = _next(api, "v1").json()
    r = _decide(api, "v1", item["item_id"], action="correct", value=62)
    assert r.json()["state"] == "second_entry" and r.json()["final"] is None
    assert _next(api, "v1").status_code == 204  # nobody enters the same item twice
    second = _next(api, "v2").json()
    assert second["item_id"] == item["item_id"] and second["stage"] == "second"
    assert "entries" not in second and second["machine"]["value"] == 941  # blind: v1's 62 is not shown
    r = _decide(api, "v2", item["item_id"], action="correct", value=62)
    assert r.json() == {"item_id": item["item_id"], "state": "resolved", "final": {"action": "correct", "value": 62}}
    with api.svc.sessions() as db:
        rows = db.query(Decision).filter_by(item_id=item["item_id"]).order_by(Decision.id).all()
        assert [(d.stage, d.action, d.old_value, d.value) for d in rows] == [
            ("first", "correct", 941, 62),
            ("second", "correct", 941, 62),
        ]


def test_mismatch_goes_to_a_third_verifier(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]}, {"IV.1": 886})
    item_id = _next(api, "v1").json()["item_id"]
    _decide(api, "v1", item_id, action="correct", value=86)
    _next(api, "v2")
    assert _decide(api, "v2", item_id, action="approve").json()["state"] == "arbitration"
    assert _next(api, "v1").status_code == 204 and _next(api, "v2").status_code == 204
    third = _next(api, "v3").json()
    assert third["stage"] == "arbitration"
    assert sorted(third["entries"], key=str) == sorted([{"action": "correct", "value": 86},
                                                        {"action": "approve", "value": 886}], key=str)
    r = _decide(api, "v3", item_id, action="correct", value=86)
    assert r.json()["final"] == {"action": "correct", "value": 86}


def test_skip_releases_the_item_to_others_only(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]})
    item_id = _next(api, "v1").json()["item_id"]
    assert _decide(api, "v1", item_id, action="skip").json()["state"] == "open"
    assert _next(api, "v1").status_code == 204
    assert _next(api, "v2").json()["item_id"] == item_id


def test_unreadable_and_invalid_decisions(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]})
    item_id = _next(api, "v1").json()["item_id"]
    r = _decide(api, "v1", item_id, action="correct")
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
    r = _decide(api, "v1", item_id, action="correct", value=1000)
    assert r.status_code == 422 and r.json()["code"] == "value_out_of_range"
    r = _decide(api, "v1", item_id, action="unreadable", note="ink smudged, needs the paper form")
    assert r.json()["final"] == {"action": "unreadable", "value": None}


def test_verifier_outside_region_cannot_decide(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"]})
    item_id = _next(api, "v1").json()["item_id"]
    r = _decide(api, "v_far", item_id, action="approve")
    assert r.status_code == 404 and r.json()["code"] == "review_item_not_found"


def test_next_is_idempotent_while_leased_and_back_shows_own_decision(api) -> None:  # noqa: ANN001
    _upload_with_review(api, {"IV.1": ["low_confidence"], "IV.2": ["low_confidence"]})
    a = _next(api, "v1").json()["item_id"]
    assert _next(api, "v1").json()["item_id"] == a  # a reload gets the same leased item back
    _decide(api, "v1", a, action="approve")
    b = _next(api, "v1").json()["item_id"]
    assert b != a
    back = api.client.get(f"/api/v1/review/items/{a}", headers=api.auth("v1")).json()
    assert back["your_decision"]["action"] == "approve" and back["final"]["value"] == back["machine"]["value"]
    assert back["leased_by_you"] is False


def test_far_tps_items_only_reach_their_region(api) -> None:  # noqa: ANN001
    api.make_token("kpps_far", "kpps", tps_kode=FAR_TPS)
    api.upload(make_photo(page_script(P2, review={"IV.1": ["low_confidence"]})), who="kpps_far", kode=FAR_TPS)
    api.wait_jobs()
    assert _next(api, "v1").status_code == 204
    assert _next(api, "v_far").json()["kode_tps"] == FAR_TPS
    stats = api.client.get("/api/v1/review/stats", headers=api.auth("admin")).json()
    assert stats["states"] == {"open": 1} and stats["open_reasons"] == {"low_confidence": 1}


def test_service_threshold_sends_low_confidence_accepted_fields_to_review(api) -> None:  # noqa: ANN001
    r = api.client.patch("/api/v1/admin/config", json={"review_below_confidence": 0.999}, headers=api.auth("admin"))
    assert r.status_code == 200 and r.json()["review_below_confidence"] == 0.999
    _upload_with_review(api, {})  # every field accepted at 0.995
    with api.svc.sessions() as db:
        items = db.query(ReviewItem).all()
        assert sorted(i.field_id for i in items) == ["IV.1", "IV.2", "IV.3"]
        assert all(i.reasons == ["below_service_threshold"] for i in items)
