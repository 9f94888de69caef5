"""The review queue: leases, blind double entry, arbitration; decisions are append-only.

Item states: open -> resolved, or (a correction of a count) open -> second_entry -> resolved | arbitration ->
resolved. The second verifier sees only the machine's reading, never the first entry (blind); if both entries agree
the item is resolved, otherwise a third verifier arbitrates (as Mexico's PREP does). Nobody decides an item twice.
A lease (UPDATE ... WHERE free) makes sure two verifiers never hold the same item; it expires after lease_seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import String, and_, case, cast, exists, or_, select, update
from sqlalchemy.orm import Session

from api import audit
from api.auth import Principal
from api.models import Decision, ReviewItem
from api.problems import ApiProblem

STAGE_OF_STATE = {"open": "first", "second_entry": "second", "arbitration": "arbitration"}
Action = Literal["approve", "correct", "unreadable", "skip"]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Action
    value: int | None = Field(default=None, ge=0, le=9999, description="the value read by the verifier (correct)")
    note: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _value_only_for_correct(self) -> "DecisionIn":
        if self.action == "correct" and self.value is None:
            raise ValueError("action 'correct' needs a value")
        if self.action != "correct" and self.value is not None:
            raise ValueError("only action 'correct' takes a value")
        return self


def _eligible(principal: Principal, now: datetime, reason: str | None, region: str | None):  # noqa: ANN202
    conds = [
        ReviewItem.state.in_(tuple(STAGE_OF_STATE)),
        or_(
            ReviewItem.lease_holder.is_(None),
            ReviewItem.lease_holder == principal.token_id,
            ReviewItem.lease_expires_at < now,
        ),
        # Blind and independent: nobody sees an item again after deciding (or skipping) it.
        ~exists().where(and_(Decision.item_id == ReviewItem.id, Decision.token_id == principal.token_id)),
    ]
    if principal.role != "admin" and principal.region_scope:
        conds.append(ReviewItem.tps_kode.startswith(principal.region_scope))
    if region:
        conds.append(ReviewItem.tps_kode.startswith(region))
    if reason:
        conds.append(cast(ReviewItem.reasons, String).like(f'%"{reason}"%'))
    return and_(*conds)


def lease_next(
    db: Session, principal: Principal, now: datetime, lease_seconds: int, reason: str | None, region: str | None
) -> ReviewItem | None:
    """Lease the next item for this verifier: the one it holds, if any (so a reload is harmless), else a new one."""
    expires = now + timedelta(seconds=lease_seconds)
    candidates = db.scalars(
        select(ReviewItem.id)
        .where(_eligible(principal, now, reason, region))
        .order_by(
            # The item this verifier already holds (a page reload), then finish started items first:
            # arbitration, then second entries, then new ones.
            case((ReviewItem.lease_holder == principal.token_id, 0), else_=1),
            (ReviewItem.state == "open").asc(),
            (ReviewItem.state == "second_entry").asc(),
            ReviewItem.id,
        )
        .limit(25)
    ).all()
    for item_id in candidates:
        claimed = db.execute(
            update(ReviewItem)
            .where(
                ReviewItem.id == item_id,
                ReviewItem.state.in_(tuple(STAGE_OF_STATE)),
                or_(
                    ReviewItem.lease_holder.is_(None),
                    ReviewItem.lease_holder == principal.token_id,
                    ReviewItem.lease_expires_at < now,
                ),
            )
            .values(lease_holder=principal.token_id, lease_expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            _release_others(db, principal, keep=item_id)
            db.commit()
            item = db.get(ReviewItem, item_id)
            db.refresh(item)
            return item
    return None


def _release_others(db: Session, principal: Principal, keep: int | None) -> None:
    q = update(ReviewItem).where(ReviewItem.lease_holder == principal.token_id)
    if keep is not None:
        q = q.where(ReviewItem.id != keep)
    db.execute(q.values(lease_holder=None, lease_expires_at=None).execution_options(synchronize_session=False))


def release(db: Session, principal: Principal, item: ReviewItem) -> None:
    if item.lease_holder == principal.token_id:
        item.lease_holder = None
        item.lease_expires_at = None


def check_scope(principal: Principal, item: ReviewItem) -> None:
    if principal.role == "admin":
        return
    if principal.role != "verifier" or not item.tps_kode.startswith(principal.region_scope or ""):
        raise ApiProblem(404, "review_item_not_found", "no such review item in your region")


def decide(
    db: Session, principal: Principal, item: ReviewItem, decision: DecisionIn, now: datetime, max_value: int
) -> ReviewItem:
    check_scope(principal, item)
    if item.state not in STAGE_OF_STATE:
        raise ApiProblem(409, "item_closed", f"this item is {item.state}; it takes no more decisions")
    if item.lease_holder != principal.token_id:
        raise ApiProblem(409, "not_leased", "lease this item first (GET /api/v1/review/next)")
    if item.lease_expires_at is None or item.lease_expires_at <= now:
        raise ApiProblem(409, "lease_expired", "your lease on this item expired; get the next item again")
    if any(d.token_id == principal.token_id for d in item.decisions):
        raise ApiProblem(409, "already_decided", "you already decided this item")
    action, value = decision.action, decision.value
    if action == "correct" and value is not None and value > max_value:
        raise ApiProblem(422, "value_out_of_range", f"this field holds at most {max_value}")
    if action == "correct" and value == item.machine_value:
        action = "approve"  # typing the machine's own value confirms it
        value = None
    if action == "approve" and item.machine_value is None:
        raise ApiProblem(422, "nothing_to_approve", "the machine has no value for this field: correct it or mark it unreadable")
    stage = STAGE_OF_STATE[item.state]
    db.add(
        Decision(
            item_id=item.id,
            token_id=principal.token_id,
            stage=stage,
            action=action,
            old_value=item.machine_value,
            value=item.machine_value if action == "approve" else value,
            note=decision.note,
            created_at=now,
        )
    )
    db.flush()
    db.refresh(item, attribute_names=["decisions"])
    if action != "skip":
        _advance(item, stage, now)
    item.lease_holder = None
    item.lease_expires_at = None
    audit.append(
        db,
        actor=principal.actor,
        action="review_decision",
        subject=f"review_item:{item.id}",
        payload={
            "submission": item.submission_id,
            "tps": item.tps_kode,
            "field": f"{item.page}:{item.field_id}",
            "stage": stage,
            "action": action,
            "old": item.machine_value,
            "new": value if action == "correct" else None,
            "note": decision.note,
            "state_after": item.state,
        },
        now=now,
    )
    return item


def _entries(item: ReviewItem) -> list[Decision]:
    return [d for d in item.decisions if d.action != "skip"]


def _resolve(item: ReviewItem, d: Decision, now: datetime) -> None:
    item.state = "resolved"
    item.final_action = d.action
    item.final_value = None if d.action == "unreadable" else d.value
    item.resolved_at = now


def _advance(item: ReviewItem, stage: str, now: datetime) -> None:
    entries = _entries(item)
    last = entries[-1]
    if stage == "first":
        if last.action == "correct" and item.double_entry:
            item.state = "second_entry"  # a total would change: a second, blind entry must agree
        else:
            _resolve(item, last, now)
    elif stage == "second":
        first = next(d for d in entries if d.stage == "first")
        if (first.action, first.value) == (last.action, last.value):
            _resolve(item, last, now)
        else:
            item.state = "arbitration"
    else:
        _resolve(item, last, now)
