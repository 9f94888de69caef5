"""Admin endpoints: tokens, regions, run-time configuration, failed jobs, audit verification."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from api import audit, auth, runtime_config
from api.auth import Principal
from api.deps import Services, db_session, require, services
from api.models import Region, Submission, Token
from api.problems import ApiProblem
from api.regions import parent_of, parse_region_csv

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str = Field(pattern="^(kpps|verifier|admin)$")
    tps_kode: str | None = Field(default=None, max_length=13)
    region_scope: str | None = Field(default=None, max_length=10)
    label: str = Field(default="", max_length=200)


def token_json(t: Token) -> dict[str, Any]:
    return {
        "id": t.id,
        "prefix": t.prefix,
        "role": t.role,
        "tps_kode": t.tps_kode,
        "region_scope": t.region_scope,
        "label": t.label,
        "created_at": t.created_at.isoformat(),
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
    }


def create_token_audited(db: Session, actor: str, body: TokenIn, now) -> tuple[Token, str]:  # noqa: ANN001
    row, secret = auth.create_token(
        db, body.role, tps_kode=body.tps_kode, region_scope=body.region_scope, label=body.label, now=now
    )
    audit.append(db, actor=actor, action="token_create", subject=f"token:{row.id}", payload=token_json(row), now=now)
    return row, secret


def revoke_token_audited(db: Session, actor: str, token_id: int, now) -> Token:  # noqa: ANN001
    row = db.get(Token, token_id)
    if row is None:
        raise ApiProblem(404, "token_not_found", "no such token")
    if row.revoked_at is None:
        row.revoked_at = now
        audit.append(db, actor=actor, action="token_revoke", subject=f"token:{row.id}", payload={"id": row.id}, now=now)
    return row


def load_regions_audited(db: Session, actor: str, text: str, now) -> int:  # noqa: ANN001
    rows = parse_region_csv(text)
    for code, level, name in rows:
        existing = db.get(Region, code)
        if existing is None:
            db.add(Region(code=code, level=level, name=name, parent_code=parent_of(code)))
        else:
            existing.name = name or existing.name
    audit.append(db, actor=actor, action="regions_load", subject="regions", payload={"rows": len(rows)}, now=now)
    return len(rows)


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenIn,
    p: Principal = Depends(require("admin")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    with db.begin():
        row, secret = create_token_audited(db, p.actor, body, svc.now())
        return {**token_json(row), "token": secret}


@router.get("/tokens")
def list_tokens(p: Principal = Depends(require("admin")), db: Session = Depends(db_session)) -> list[dict[str, Any]]:
    return [token_json(t) for t in db.scalars(select(Token).order_by(Token.id))]


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**62)],
    p: Principal = Depends(require("admin")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> Response:
    with db.begin():
        revoke_token_audited(db, p.actor, token_id, svc.now())
    return Response(status_code=204)


@router.post(
    "/regions",
    summary="Load regions and TPS from CSV (kode,nama); 13-digit codes make up the TPS list",
    openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def load_regions(
    text: Annotated[str, Body(media_type="text/csv", max_length=20_000_000)] = "",
    p: Principal = Depends(require("admin")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    with db.begin():
        n = load_regions_audited(db, p.actor, text, svc.now())
    return {"loaded": n}


@router.get("/config", response_model=runtime_config.RuntimeConfig)
def get_config(
    p: Principal = Depends(require("admin")), db: Session = Depends(db_session), svc: Services = Depends(services)
) -> runtime_config.RuntimeConfig:
    return runtime_config.current(db, svc.settings)


@router.patch("/config", response_model=runtime_config.RuntimeConfig)
def patch_config(
    body: runtime_config.RuntimeConfigPatch,
    p: Principal = Depends(require("admin")),
    db: Session = Depends(db_session),
    svc: Services = Depends(services),
) -> runtime_config.RuntimeConfig:
    with db.begin():
        return runtime_config.change(db, svc.settings, body, p, svc.now())


@router.get("/jobs/failed", summary="Submissions whose reading failed after all retries")
def failed_jobs(p: Principal = Depends(require("admin")), db: Session = Depends(db_session)) -> list[dict[str, Any]]:
    rows = db.scalars(select(Submission).where(Submission.status == "failed").order_by(Submission.created_at))
    return [
        {"submission_id": s.id, "kode_tps": s.tps_kode, "form_set": s.form_set, "page": s.page, "attempts": s.attempts,
         "error": s.error}
        for s in rows
    ]


@router.get("/audit/verify")
def verify_audit(p: Principal = Depends(require("admin")), db: Session = Depends(db_session)) -> dict[str, Any]:
    r = audit.verify(db)
    return {"ok": r.ok, "events": r.events, "head_hash": r.head_hash, "first_bad_seq": r.first_bad_seq, "problem": r.problem}
