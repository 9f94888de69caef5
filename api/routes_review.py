"""Review endpoints for verifiers: lease the next field, see its crop and candidates, decide."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import images, review, runtime_config
from api.auth import Principal
from api.deps import Services, db_session, require, services
from api.models import ReviewItem, Submission
from api.problems import ApiProblem
from ocr.templates import get_template

router = APIRouter(prefix="/api/v1/review", tags=["review"])
ItemId = Annotated[int, Path(ge=1, le=2**62)]


def _item(db: Session, p: Principal, item_id: int) -> ReviewItem:
    item = db.get(ReviewItem, item_id)
    if item is None:
        raise ApiProblem(404, "review_item_not_found", "no such review item")
    review.check_scope(p, item)
    return item


def _item_photo(db: Session, p: Principal, item_id: int):
    """The submission behind a review item, the item's field spec, and the page corners the reader found (or None)."""
    item = _item(db, p, item_id)
    sub = db.get(Submission, item.submission_id)
    corners = ((sub.reading or {}).get("location") or {}).get("page_corners_px")
    return sub, get_template(sub.template_id).field(item.field_id), corners


def _failing_rules(reading: dict[str, Any], field_id: str) -> list[dict[str, Any]]:
    return [r for r in reading.get("rules") or [] if r.get("status") == "fail" and field_id in (r.get("fields") or [])]


def _misread_rules(reading: dict[str, Any], field_id: str, reasons: list[str]) -> list[dict[str, Any]]:
    """For a reading the decode took as misread (`misread_suspected`, given the value the sums ask for): the rules
    between it and other fields that hold with that value (not its own caps); their messages say what was read."""
    if "misread_suspected" not in reasons or "corrected_by_rules" not in reasons:
        return []
    return [
        r for r in reading.get("rules") or []
        if r.get("status") == "pass" and field_id in (r.get("fields") or []) and len(r.get("fields") or []) > 1
    ]  # fmt: skip


def item_payload(db: Session, p: Principal, item: ReviewItem) -> dict[str, Any]:
    sub = db.get(Submission, item.submission_id)
    reading = sub.reading or {}
    f = (reading.get("fields") or {}).get(item.field_id, {})
    template = get_template(sub.template_id)
    spec = template.field(item.field_id)
    corners = ((reading.get("location") or {}).get("page_corners_px")) or None
    highlight = None
    if corners:
        highlight = images.field_polygon_px(template, spec, corners)
    mine = [d for d in item.decisions if d.token_id == p.token_id]
    payload: dict[str, Any] = {
        "item_id": item.id,
        "state": item.state,
        "stage": review.STAGE_OF_STATE.get(item.state),
        "lease_expires_at": item.lease_expires_at.isoformat() if item.lease_expires_at else None,
        "leased_by_you": item.lease_holder == p.token_id and p.token_id is not None,
        "kode_tps": item.tps_kode,
        "form_set": item.form_set,
        "page": item.page,
        "submission_id": item.submission_id,
        "field_id": item.field_id,
        "label": spec.label,
        "max": spec.max,
        "machine": {
            "value": item.machine_value,
            "text": item.machine_text,
            "confidence": item.confidence,
            "alternatives": [{"value": a.get("char"), "p": a.get("p")} for a in f.get("alternatives") or []],
            "boxes": [{"char": b.get("char"), "topk": b.get("topk")} for b in f.get("boxes") or []],
            "omr": f.get("omr"),
        },
        "reasons": item.reasons,
        "failing_rules": _failing_rules(reading, item.field_id),
        "misread_rules": _misread_rules(reading, item.field_id, list(item.reasons or [])),
        "crop_url": f"/api/v1/review/items/{item.id}/crop.png" if corners else None,
        "page_url": f"/api/v1/review/items/{item.id}/page.jpg",
        "highlight_px": highlight,  # polygon in the original photo's pixels
        "your_decision": (
            {"action": mine[-1].action, "value": mine[-1].value, "at": mine[-1].created_at.isoformat()} if mine else None
        ),
    }
    if item.state == "arbitration":
        # The arbitrator sees the two entries it has to settle; entrants never see each other's (blind).
        payload["entries"] = [{"action": d.action, "value": d.value} for d in item.decisions if d.action != "skip"]
    if item.state == "resolved":
        payload["final"] = {"action": item.final_action, "value": item.final_value}
    return payload


@router.get("/next", summary="Lease the next field to review")
def next_item(
    response: Response,
    reason: Annotated[str | None, Query(max_length=64, description="only items with this reason")] = None,
    region: Annotated[str | None, Query(max_length=13, pattern=r"^\d{2,13}$", description="kode prefix")] = None,
    p: Principal = Depends(require("verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    cfg = runtime_config.current(db, svc.settings)
    item = review.lease_next(db, p, svc.now(), cfg.lease_seconds, reason, region)
    if item is None:
        response.status_code = 204
        return Response(status_code=204)  # type: ignore[return-value]
    return item_payload(db, p, item)


@router.get("/items/{item_id}")
def get_item(
    item_id: ItemId, p: Principal = Depends(require("verifier")), db: Session = Depends(db_session)
) -> dict[str, Any]:
    return item_payload(db, p, _item(db, p, item_id))


@router.post("/items/{item_id}/decision")
def post_decision(
    item_id: ItemId,
    body: review.DecisionIn,
    p: Principal = Depends(require("verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    with db.begin():
        item = _item(db, p, item_id)
        sub = db.get(Submission, item.submission_id)
        spec = get_template(sub.template_id).field(item.field_id)
        item = review.decide(db, p, item, body, svc.now(), spec.max)
        out = {"item_id": item.id, "state": item.state, "final": None}
        if item.state == "resolved":
            out["final"] = {"action": item.final_action, "value": item.final_value}
    return out


@router.post("/items/{item_id}/release", status_code=204)
def release_item(
    item_id: ItemId, p: Principal = Depends(require("verifier")), db: Session = Depends(db_session)
) -> Response:
    with db.begin():
        review.release(db, p, _item(db, p, item_id))
    return Response(status_code=204)


@router.get("/items/{item_id}/crop.png", response_class=Response)
def item_crop(
    item_id: ItemId,
    p: Principal = Depends(require("verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> Response:
    sub, field, corners = _item_photo(db, p, item_id)
    if not corners:
        raise ApiProblem(404, "no_crop", "the page was not located in this photo, so there is no field crop")
    img = images.decode_photo(str(svc.store.path(sub.storage_name)))
    png = images.crop_png(img, get_template(sub.template_id), field, corners)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})


@router.get("/items/{item_id}/page.jpg", response_class=Response)
def item_page(
    item_id: ItemId,
    p: Principal = Depends(require("verifier")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> Response:
    sub, field, corners = _item_photo(db, p, item_id)
    polygon = images.field_polygon_px(get_template(sub.template_id), field, corners) if corners else None
    img = images.decode_photo(str(svc.store.path(sub.storage_name)))
    jpg, _ = images.page_jpeg(img, polygon)
    return Response(jpg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})


@router.get("/stats")
def queue_stats(p: Principal = Depends(require("verifier")), db: Session = Depends(db_session)) -> dict[str, Any]:
    q = select(ReviewItem.state, ReviewItem.reasons)
    if p.role != "admin" and p.region_scope:
        q = q.where(ReviewItem.tps_kode.startswith(p.region_scope))
    states: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for state, rs in db.execute(q):
        states[state] += 1
        if state in review.STAGE_OF_STATE:
            reasons.update(rs or [])
    return {"states": dict(states), "open_reasons": dict(reasons)}
