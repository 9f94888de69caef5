"""Run-time configuration an admin can change without a restart; every change is an audit event."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit
from api.auth import Principal
from api.models import ConfigEntry
from api.settings import ServiceSettings


class RuntimeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_read: bool = Field(description="anyone may read provisional tallies and exports without a token")
    review_below_confidence: float = Field(ge=0.0, le=1.0, description="fields accepted below this go to review")
    lease_seconds: int = Field(ge=10, le=3600, description="how long a verifier holds a review item")


class RuntimeConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_read: bool | None = None
    review_below_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    lease_seconds: int | None = Field(default=None, ge=10, le=3600)


def current(db: Session, settings: ServiceSettings) -> RuntimeConfig:
    values = {
        "public_read": settings.public_read,
        "review_below_confidence": settings.review_below_confidence,
        "lease_seconds": settings.lease_seconds,
    }
    for entry in db.scalars(select(ConfigEntry)):
        if entry.key in values:
            values[entry.key] = entry.value["v"]
    return RuntimeConfig(**values)


def change(
    db: Session, settings: ServiceSettings, patch: RuntimeConfigPatch, principal: Principal, now: datetime
) -> RuntimeConfig:
    before = current(db, settings)
    changes = {k: v for k, v in patch.model_dump(exclude_none=True).items() if getattr(before, k) != v}
    for key, value in changes.items():
        entry = db.get(ConfigEntry, key)
        if entry is None:
            db.add(ConfigEntry(key=key, value={"v": value}, updated_at=now))
        else:
            entry.value = {"v": value}
            entry.updated_at = now
        audit.append(
            db,
            actor=principal.actor,
            action="config_change",
            subject=f"config:{key}",
            payload={"key": key, "old": getattr(before, key), "new": value},
            now=now,
        )
    db.flush()
    return current(db, settings)
