"""SQLAlchemy 2 models. The schema itself is owned by the Alembic migrations in api/migrations/.

Machine readings are never overwritten: a submission's `reading` is written once by its job; review decisions are
append-only rows; a review item's `state`/`final_*` columns are a projection of its decisions, kept so the queue and
the tallies do not replay history on every request.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (SQLite has no time zones), always returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Region(Base):
    """An administrative region or a TPS, keyed by its code (2/4/6/10 digits, 13 for a TPS)."""

    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(13), primary_key=True)
    level: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    parent_code: Mapped[str | None] = mapped_column(String(13), nullable=True)


class Token(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; not enough to authenticate
    role: Mapped[str] = mapped_column(String(16))
    tps_kode: Mapped[str | None] = mapped_column(String(13), nullable=True)  # kpps: the one TPS it may upload for
    region_scope: Mapped[str | None] = mapped_column(String(10), nullable=True)  # verifier: region code prefix
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Submission(Base):
    """One uploaded page photo for one slot (TPS, form set, page)."""

    __tablename__ = "submissions"
    __table_args__ = (
        UniqueConstraint("uploaded_by", "idempotency_key", name="uq_submissions_idempotency"),
        # At most one current photo per slot; older ones stay, marked superseded.
        Index(
            "uq_submissions_current_slot",
            "tps_kode",
            "form_set",
            "page",
            unique=True,
            sqlite_where=text("superseded_at IS NULL"),
            postgresql_where=text("superseded_at IS NULL"),
        ),
        Index("ix_submissions_tps_sha", "tps_kode", "sha256"),
        Index("ix_submissions_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tps_kode: Mapped[str] = mapped_column(String(13), index=True)
    form_set: Mapped[str] = mapped_column(String(64))
    page: Mapped[int] = mapped_column(Integer)
    template_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    storage_name: Mapped[str] = mapped_column(String(200))
    size_bytes: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(40))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    uploaded_by: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    created_at: Mapped[datetime]
    # received -> reading -> read | unreadable | failed
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    check: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)  # the quick gate answer
    reading: Mapped[dict[str, Any] | None] = mapped_column(nullable=True)  # PageReading JSON, written once
    page_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(nullable=True)
    superseded_at: Mapped[datetime | None] = mapped_column(nullable=True)
    superseded_by_id: Mapped[str | None] = mapped_column(String(36), nullable=True)


class ReviewItem(Base):
    """One field of one submission that a person must look at."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("submission_id", "field_id", name="uq_review_items_field"),
        Index("ix_review_items_queue", "state", "tps_kode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submissions.id"))
    tps_kode: Mapped[str] = mapped_column(String(13))
    form_set: Mapped[str] = mapped_column(String(64))
    page: Mapped[int] = mapped_column(Integer)
    field_id: Mapped[str] = mapped_column(String(64))
    machine_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    machine_text: Mapped[str] = mapped_column(String(16), default="")
    confidence: Mapped[float] = mapped_column(default=0.0)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    double_entry: Mapped[bool] = mapped_column(Boolean, default=False)
    # open -> (second_entry -> (arbitration)) -> resolved; superseded when a new photo replaces the page
    state: Mapped[str] = mapped_column(String(16), default="open")
    lease_holder: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    final_action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    final_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime]

    decisions: Mapped[list["Decision"]] = relationship(order_by="Decision.id", lazy="selectin")


class Decision(Base):
    """An append-only review decision: who, when, old, new, why."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id"), index=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id"))
    stage: Mapped[str] = mapped_column(String(16))  # first, second, arbitration
    action: Mapped[str] = mapped_column(String(16))  # approve, correct, unreadable, skip
    old_value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime]


class AuditEvent(Base):
    """Hash-chained log: hash = sha256(prev_hash + canonical JSON of this event)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))  # ISO text, hashed exactly as stored
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)  # canonical JSON text
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain head, one row: appending updates it first, which serialises writers on SQLite and PostgreSQL."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ConfigEntry(Base):
    """Run-time service configuration changed by admins (public read, review threshold); every change is audited."""

    __tablename__ = "service_config"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime]
