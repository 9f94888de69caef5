"""Capture: slots, idempotent durable uploads with supersede history, and storing readings.

A slot is (TPS, form set, page). The current photo of a slot is the one not superseded; older photos stay with
`superseded_at`/`superseded_by_id` set. Idempotency: the same Idempotency-Key from the same token, or the same bytes
for the same slot, returns the existing submission; the same bytes for another slot or TPS are refused
(`duplicate_photo`), as KawalPemilu's hash check does.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from api import audit
from api.auth import Principal
from api.jobs import ReadTask
from api.models import ReviewItem, Submission
from api.problems import ApiProblem
from api.storage import PhotoStore, StoredPhoto
from api.tally import broken_rules  # the tally checks the same rules before a TPS counts
from ocr.errors import UnknownTemplate
from ocr.templates import get_form_set, get_template
from ocr.templates.schema import Template

log = logging.getLogger("c1ocr.capture")

ACTIVE_ITEM_STATES = ("open", "second_entry", "arbitration")


def slot_template(form_set: str, page: int) -> Template:
    try:
        fs = get_form_set(form_set)
    except UnknownTemplate:
        raise ApiProblem(422, "unknown_slot", f"unknown form set {form_set[:64]!r}") from None
    for ref in fs.pages:
        if ref.page == page:
            return get_template(ref.template)
    raise ApiProblem(
        422, "unknown_slot", f"form set {form_set!r} has pages {', '.join(str(p.page) for p in fs.pages)}; not {page}"
    )


def find_replay(
    db: Session, principal: Principal, kode: str, form_set: str, page: int, sha256: str, key: str | None
) -> Submission | None:
    """An earlier submission this upload repeats, or a problem when it conflicts with one."""
    if key and principal.token_id is not None:
        prior = db.scalar(
            select(Submission).where(Submission.uploaded_by == principal.token_id, Submission.idempotency_key == key)
        )
        if prior is not None:
            if prior.sha256 != sha256:
                raise ApiProblem(
                    409, "idempotency_key_reused", "this Idempotency-Key was already used for a different photo"
                )
            return prior
    same_bytes = db.scalars(select(Submission).where(Submission.sha256 == sha256).order_by(Submission.created_at)).all()
    for prior in same_bytes:
        if (prior.tps_kode, prior.form_set, prior.page) == (kode, form_set, page):
            return prior
    if same_bytes:
        raise ApiProblem(
            409,
            "duplicate_photo",
            "this exact photo was already uploaded for another TPS or page; photograph the right page",
        )
    return None


def insert_submission(
    db: Session,
    *,
    principal: Principal,
    kode: str,
    template: Template,
    stored: StoredPhoto,
    content_type: str,
    key: str | None,
    check: dict[str, Any] | None,
    now: datetime,
) -> tuple[Submission, str | None]:
    """Insert a new current submission for the slot, superseding the previous one. Returns (row, superseded id)."""
    new_id = str(uuid.uuid4())
    current = db.scalar(
        select(Submission).where(
            Submission.tps_kode == kode,
            Submission.form_set == template.form_set,
            Submission.page == template.page,
            Submission.superseded_at.is_(None),
        )
    )
    superseded_id = None
    if current is not None:
        superseded_id = current.id
        current.superseded_at = now
        current.superseded_by_id = new_id
        db.execute(
            update(ReviewItem)
            .where(ReviewItem.submission_id == current.id, ReviewItem.state.in_(ACTIVE_ITEM_STATES))
            .values(state="superseded", lease_holder=None, lease_expires_at=None)
        )
        db.flush()
    unreadable = check is not None and check.get("status") == "unreadable"
    row = Submission(
        id=new_id,
        tps_kode=kode,
        form_set=template.form_set,
        page=template.page,
        template_id=template.id,
        sha256=stored.sha256,
        storage_name=stored.storage_name,
        size_bytes=stored.size_bytes,
        content_type=content_type,
        idempotency_key=key,
        uploaded_by=principal.token_id,
        created_at=now,
        status="unreadable" if unreadable else "received",
        attempts=0,
        check=check,
        # An unreadable gate answer is the reading: there is nothing more to read in this photo.
        reading=check if unreadable else None,
        page_status="unreadable" if unreadable else None,
        read_at=now if unreadable else None,
    )
    db.add(row)
    db.flush()
    audit.append(
        db,
        actor=principal.actor,
        action="upload",
        subject=f"submission:{new_id}",
        payload={
            "tps": kode,
            "form_set": template.form_set,
            "page": template.page,
            "sha256": stored.sha256,
            "size_bytes": stored.size_bytes,
            "supersedes": superseded_id,
            "gate": None if check is None else check.get("status"),
            "reason": None if check is None else check.get("reason"),
        },
        now=now,
    )
    return row, superseded_id


@dataclass
class ReviewPolicy:
    review_below_confidence: float


def _review_item(sub: Submission, field_id: str, f: dict[str, Any], reasons: list[str], now: datetime) -> ReviewItem:
    kind = next((spec.kind for spec in get_template(sub.template_id).fields if spec.id == field_id), None)
    return ReviewItem(
        submission_id=sub.id,
        tps_kode=sub.tps_kode,
        form_set=sub.form_set,
        page=sub.page,
        field_id=field_id,
        machine_value=f.get("value"),
        machine_text=str(f.get("text") or "")[:16],
        confidence=float(f.get("confidence") or 0.0),
        reasons=reasons,
        # A correction of a vote count changes a total: it needs two independent entries.
        double_entry=kind == "count",
        state="open",
        created_at=now,
    )


def review_items_for(sub: Submission, reading: dict[str, Any], policy: ReviewPolicy, now: datetime) -> list[ReviewItem]:
    """One item per field that is not accepted (or accepted below the service's own threshold)."""
    items = []
    for field_id, f in (reading.get("fields") or {}).items():
        reasons = list(f.get("reasons") or [])
        needs = f.get("status") != "accepted"
        if not needs and float(f.get("confidence") or 0.0) < policy.review_below_confidence:
            needs = True
            reasons.append("below_service_threshold")
        if not needs:
            continue
        if not reasons:
            reasons = [f.get("status") or "needs_review"]
        items.append(_review_item(sub, field_id, f, reasons, now))
    return items


def tps_review_items(db: Session, tps_kode: str, form_set: str, now: datetime) -> list[ReviewItem]:
    """Once every page of a TPS's form set is read: an item for each field of a hard rule that the machine's accepted
    values break. The pages were decoded one by one, so only the rules across pages (PPWP 2024: the paslon votes on
    page 2 against V.A on page 3) can break here with every field accepted. A rule with a field already in review is
    left to the tally, which checks it again on the verifier's value."""
    try:
        pages = {ref.page for ref in get_form_set(form_set).pages}
    except UnknownTemplate:
        return []
    current = {
        s.page: s
        for s in db.scalars(
            select(Submission).where(
                Submission.tps_kode == tps_kode, Submission.form_set == form_set, Submission.superseded_at.is_(None)
            )
        )
    }
    if set(current) != pages or any(s.status != "read" or not s.reading for s in current.values()):
        return []
    values = {
        f"{page}:{fid}": f.get("value") for page, s in current.items() for fid, f in (s.reading.get("fields") or {}).items()
    }
    have = set(
        db.execute(
            select(ReviewItem.submission_id, ReviewItem.field_id).where(
                ReviewItem.submission_id.in_([s.id for s in current.values()])
            )
        ).all()
    )
    items: dict[tuple[str, str], ReviewItem] = {}
    for rule in broken_rules(form_set, values):
        slots = [(current[int(page)], fid) for page, _, fid in (q.partition(":") for q in rule.fields)]
        if any((s.id, fid) in have for s, fid in slots):
            continue  # a field of it is in review already: the tally checks the rule again on the verifier's value
        for s, fid in slots:
            if (s.id, fid) in items:
                items[(s.id, fid)].reasons.append(f"rule_failed:{rule.name}")
            else:
                items[(s.id, fid)] = _review_item(s, fid, s.reading["fields"][fid], [f"rule_failed:{rule.name}"], now)
    return list(items.values())


class DbJobStore:
    """The job runner's view of the database (see api.jobs.JobStore)."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: PhotoStore,
        clock: Callable[[], datetime],
        policy: Callable[[Session], ReviewPolicy],
    ):
        self.sessions = sessions
        self.store = store
        self.clock = clock
        self.policy = policy

    def pending(self) -> list[str]:
        with self.sessions() as db:
            return list(
                db.scalars(
                    select(Submission.id)
                    .where(Submission.status.in_(("received", "reading")))
                    .order_by(Submission.created_at)
                )
            )

    def start_attempt(self, submission_id: str) -> ReadTask | None:
        with self.sessions() as db, db.begin():
            sub = db.get(Submission, submission_id)
            if sub is None or sub.status not in ("received", "reading"):
                return None
            sub.status = "reading"
            sub.attempts += 1
            return ReadTask(
                submission_id=sub.id,
                photo_path=str(self.store.path(sub.storage_name)),
                image_name=f"{sub.id}.{sub.storage_name.rsplit('.', 1)[-1]}",
                expected_template=sub.template_id,
            )

    def finish(self, submission_id: str, result: dict[str, Any]) -> None:
        if "error" in result:
            err = result["error"]
            self.fail(submission_id, f"{err.get('code')}: {err.get('message')}")
            return
        reading = result["reading"]
        now = self.clock()
        with self.sessions() as db, db.begin():
            sub = db.get(Submission, submission_id)
            if sub is None or sub.reading is not None:
                return  # written once; a late duplicate result is ignored
            sub.reading = reading
            sub.status = "unreadable" if reading.get("status") == "unreadable" else "read"
            sub.page_status = reading.get("page_status") or ("unreadable" if sub.status == "unreadable" else None)
            sub.read_at = now
            sub.error = None
            completes = sub.status == "read" and sub.superseded_at is None
            if completes:
                for item in review_items_for(sub, reading, self.policy(db), now):
                    db.add(item)
            tps = (sub.tps_kode, sub.form_set)
        if completes:
            self._open_tps_items(*tps, now)

    def _open_tps_items(self, tps_kode: str, form_set: str, now: datetime) -> None:
        """The TPS-level review items once its last page is read, in a transaction of their own: the page's reading
        is already stored, whatever happens here."""
        try:
            with self.sessions() as db, db.begin():
                for item in tps_review_items(db, tps_kode, form_set, now):
                    db.add(item)
        except IntegrityError:
            # Two pages of the TPS finished at the same moment and the other worker opened the same items.
            log.info("TPS %s %s: cross-page review items already opened", tps_kode, form_set)

    def fail(self, submission_id: str, reason: str) -> None:
        with self.sessions() as db, db.begin():
            sub = db.get(Submission, submission_id)
            if sub is None or sub.reading is not None:
                return
            sub.status = "failed"
            sub.error = reason
