"""Hash-chained audit log of uploads, decisions, token and configuration changes.

Each event's hash is sha256(prev_hash || canonical JSON of {seq, at, actor, action, subject, payload}). Appending
first updates the single `audit_head` row, which takes the write lock (SQLite) or a row lock (PostgreSQL), so two
writers can never fork the chain. Events are written in the same transaction as the change they record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.models import AuditEvent, AuditHead

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, subject: str, payload: str) -> str:
    body = canonical({"seq": seq, "at": at, "actor": actor, "action": action, "subject": subject, "payload": payload})
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def append(db: Session, *, actor: str, action: str, subject: str, payload: dict[str, Any], now: datetime) -> AuditEvent:
    """Add one event to the chain inside the caller's transaction."""
    # Lock the head first (an UPDATE), then read it: the lock is held until the caller commits.
    db.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
    head = db.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    seq, prev = head.seq, head.hash
    at = now.isoformat()
    text = canonical(payload)
    h = event_hash(prev, seq, at, actor, action, subject, text)
    ev = AuditEvent(seq=seq, at=at, actor=actor, action=action, subject=subject, payload=text, prev_hash=prev, hash=h)
    db.add(ev)
    db.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=h))
    return ev


@dataclass
class VerifyResult:
    ok: bool
    events: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str = ""


def verify(db: Session) -> VerifyResult:
    """Recompute the chain from the genesis hash; report the first event that does not match."""
    prev = GENESIS
    expected_seq = 1
    n = 0
    for ev in db.scalars(select(AuditEvent).order_by(AuditEvent.seq)).yield_per(1000):
        n += 1
        if ev.seq != expected_seq:
            return VerifyResult(False, n, prev, ev.seq, f"sequence gap: expected {expected_seq}, found {ev.seq}")
        if ev.prev_hash != prev:
            return VerifyResult(False, n, prev, ev.seq, "prev_hash does not match the previous event's hash")
        h = event_hash(prev, ev.seq, ev.at, ev.actor, ev.action, ev.subject, ev.payload)
        if h != ev.hash:
            return VerifyResult(False, n, prev, ev.seq, "event content does not match its hash (altered)")
        prev = h
        expected_seq += 1
    head = db.execute(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)).one()
    if head.seq != expected_seq - 1 or head.hash != prev:
        return VerifyResult(False, n, prev, head.seq, "chain head does not match the last event (events removed?)")
    return VerifyResult(True, n, prev)
